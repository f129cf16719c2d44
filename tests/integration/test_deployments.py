"""Deployments over their life, with the official SDK served by two hypercorn processes (A, B)
running the same service: an invocation stays on the deployment it started on while new ones
go to the newer deployment; ``PATCH /deployments/{id}`` moves a deployment (and the invocations
pinned to it) to another address; a forced ``DELETE`` hands a service back to the older one.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.durable import NodeHttp, Response, request, running_node
from tests.support.sdk_server import AsgiServers, asgi_servers  # noqa: F401
from tests.support.wait import wait_until

APP = "tests.sdk_services.versions:app"
JSON = {"content-type": "application/json"}


def admin(http: NodeHttp, method: str, path: str, document: object = None) -> Response:
    body = None if document is None else json.dumps(document).encode()
    return request(http.admin, method, path, body, JSON if body is not None else None)


def resolve(http: NodeHttp, awakeable_file: Path, value: str) -> None:
    awakeable = wait_until(lambda: awakeable_file.exists() and awakeable_file.read_text(), 30, "the awakeable id")
    r = request(http.ingress, "POST", f"/restate/awakeables/{awakeable}/resolve", json.dumps(value).encode(), JSON)
    assert r.status == 202, r


def attach(http: NodeHttp, invocation: str) -> Response:
    return request(http.ingress, "GET", f"/restate/invocation/{invocation}/attach")


def test_invocations_stay_on_their_deployment_until_it_is_moved(
    tmp_path: Path,
    asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    a = asgi_servers.start(APP)
    b = asgi_servers.start(APP)
    assert a.proc is not None and b.proc is not None
    pid_a, pid_b = a.proc.pid, b.proc.pid
    with running_node(tmp_path / "node") as node:
        http = node.http
        dp_a = http.register(a.url)["id"]
        first, second = tmp_path / "first", tmp_path / "second"
        inv_first = http.call("Versioned/wait/send", str(first)).json()["invocationId"]
        inv_second = http.call("Versioned/wait/send", str(second)).json()["invocationId"]
        wait_until(lambda: first.exists() and second.exists(), 30, "both to wait on their awakeables")

        # A new deployment of the service takes new invocations; the waiting ones stay on A.
        dp_b = http.register(b.url)["id"]
        assert http.call("Versioned/pid").json() == pid_b
        resolve(http, first, "one")
        r = attach(http, inv_first)
        assert (r.status, r.json()) == (200, f"one from {pid_a}")

        # Move deployment A to B's address and stop A: the invocation pinned to A goes on at B.
        r = admin(http, "PATCH", f"/deployments/{dp_a}", {"uri": b.url})
        assert (r.status, r.json()["id"], r.json()["uri"]) == (200, dp_a, b.url + "/")
        a.stop()
        resolve(http, second, "two")
        r = attach(http, inv_second)
        assert (r.status, r.json()) == (200, f"two from {pid_b}")

        # Without force a removal is refused; with it, the service falls back to deployment A.
        assert admin(http, "DELETE", f"/deployments/{dp_b}").status == 501
        assert admin(http, "DELETE", f"/deployments/{dp_b}?force=true").status == 202
        services = admin(http, "GET", "/services/Versioned").json()
        assert services["deployment_id"] == dp_a
        assert http.call("Versioned/pid").json() == pid_b  # A's address is B's now
        assert [d["id"] for d in admin(http, "GET", "/deployments").json()["deployments"]] == [dp_a]


def test_a_request_response_deployment_suspends_and_resumes(
    tmp_path: Path,
    asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    """Over HTTP/1.1 every wait ends the attempt with a suspension; the resolved awakeable
    resumes it with the whole journal, and the ``ctx.run`` that published the id is replayed,
    not run again (the file is written once)."""
    sdk = asgi_servers.start(APP)
    assert sdk.proc is not None
    with running_node(tmp_path / "node") as node:
        http = node.http
        r = admin(http, "POST", "/deployments", {"uri": sdk.url, "use_http_11": True})
        assert r.status == 201 and r.json()["services"][0]["name"] == "Versioned"
        deployment = admin(http, "GET", f"/deployments/{r.json()['id']}").json()
        assert (deployment["protocol_type"], deployment["http_version"]) == ("RequestResponse", "HTTP/1.1")
        awakeable_file = tmp_path / "awakeable"
        invocation = http.call("Versioned/wait/send", str(awakeable_file)).json()["invocationId"]
        first_id = wait_until(lambda: awakeable_file.exists() and awakeable_file.read_text(), 30, "the id")
        resolve(http, awakeable_file, "late")
        r = attach(http, invocation)
        assert (r.status, r.json()) == (200, f"late from {sdk.proc.pid}")
        assert awakeable_file.read_text() == first_id

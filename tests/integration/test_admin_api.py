"""The admin API against real deployments: official-SDK services (restate-sdk 1.3.0) served by
hypercorn, registered over h2c and over HTTP/1.1; re-registration; deployments that are down, that
answer garbage, that speak only HTTP/1.1, that never answer, that fail twice and then answer. Every
refused registration leaves the stored schema untouched. Last, the real node process serves both
APIs on its own ports (node/http.py's mounting).
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from node.discovery import DiscoveryClient
from node.ports import free_ports
from tests.support.node_http import Apis, run_apis
from tests.support.procs import DURASTATE, Procs, clean_env
from tests.support.sdk_server import REPO, AsgiServer, AsgiServers, module_asgi_servers  # noqa: F401
from tests.support.wait import wait_until

CATALOG = "tests.sdk_services.catalog:app"
GARBAGE = "tests.sdk_services.garbage:app"
SERVICES = ["Counter", "Formats", "Greeter", "Internal", "Signup"]


@pytest.fixture(scope="module")
def catalog(module_asgi_servers: AsgiServers) -> AsgiServer:  # noqa: F811
    return module_asgi_servers.start(CATALOG)


@pytest.fixture(scope="module")
def garbage(module_asgi_servers: AsgiServers) -> AsgiServer:  # noqa: F811
    return module_asgi_servers.start(GARBAGE)


async def register(apis: Apis, document: dict, prefix: str = "/v4") -> tuple[int, dict]:
    status, headers, body = await apis.request("POST", f"{apis.admin}{prefix}/deployments", document)
    reply = json.loads(body)
    if status in (200, 201):
        assert headers["location"] == f"deployments/{reply['id']}"
    return status, reply


async def stored(apis: Apis) -> bytes | None:
    current = await apis.store.get("schema")
    return None if current is None else current.value


def test_register_the_official_sdk_over_h2c_then_http11(tmp_path: Path, catalog: AsgiServer):
    async def body(apis: Apis) -> None:
        status, created = await register(apis, {"uri": catalog.url})
        assert status == 201
        assert (created["min_protocol_version"], created["max_protocol_version"]) == (5, 7)
        assert created["sdk_version"] == "restate-sdk-python/1.3.0"
        deployment_id = created["id"]

        status, _, listed = await apis.request("GET", f"{apis.admin}/v4/deployments")
        (deployment,) = json.loads(listed)["deployments"]
        assert (deployment["protocol_type"], deployment["http_version"]) == ("BidiStream", "HTTP/2.0")

        # The same address again: 200 and the same id, nothing rewritten.
        before = await stored(apis)
        status, again = await register(apis, {"uri": catalog.url + "/"})
        assert (status, again["id"]) == (200, deployment_id)
        assert await stored(apis) == before

        # Forced over HTTP/1.1: the SDK now reports request/response mode, same deployment id.
        status, forced = await register(apis, {"uri": catalog.url, "use_http_11": True, "force": True})
        assert (status, forced["id"]) == (200, deployment_id)
        status, _, detail = await apis.request("GET", f"{apis.admin}/v4/deployments/{deployment_id}")
        detail_json = json.loads(detail)
        assert (detail_json["protocol_type"], detail_json["http_version"]) == ("RequestResponse", "HTTP/1.1")
        # Request/response deployments have no inactivity timeout (Restate prints 0s).
        assert {s["inactivity_timeout"] for s in detail_json["services"]} == {"0s"}

        status, _, services = await apis.request("GET", f"{apis.admin}/v4/services")
        assert [s["name"] for s in json.loads(services)["services"]] == SERVICES
        status, _, signup = await apis.request("GET", f"{apis.admin}/v4/services/Signup")
        signup_json = json.loads(signup)
        assert signup_json["ty"] == "Workflow" and signup_json["revision"] == 2
        assert signup_json["workflow_completion_retention"] == "1d"
        assert [(h["name"], h["ty"]) for h in signup_json["handlers"]] == [
            ("run", "Workflow"),
            ("confirm", "Shared"),
        ]

        # The ingress sees what the admin registered, at once.
        status, _, health = await apis.request("GET", f"{apis.ingress}/restate/health")
        assert (status, json.loads(health)) == (200, {"services": SERVICES})

    run_apis(tmp_path, body)


def test_a_path_prefix_reaches_the_sdk(tmp_path: Path, catalog: AsgiServer):
    async def body(apis: Apis) -> None:
        status, created = await register(apis, {"uri": f"{catalog.url}/mounted/here/", "use_http_11": True})
        assert status == 201 and len(created["services"]) == 5

    run_apis(tmp_path, body)


def test_deployments_that_fail_discovery_register_nothing(tmp_path: Path, garbage: AsgiServer):
    (down_port,) = free_ports(1)
    slow = DiscoveryClient(retry_delays_s=(0.01,), attempt_timeout_s=0.5)

    async def body(apis: Apis) -> None:
        cases = [
            (f"http://127.0.0.1:{down_port}/", False, "META0003", "unable to reach the remote endpoint"),
            (
                f"{garbage.url}/badjson/",
                False,
                None,
                "received a bad response from the SDK that cannot be decoded",
            ),
            (
                f"{garbage.url}/badjson/",
                True,
                None,
                "received a bad response from the SDK that cannot be decoded",
            ),
            (f"{garbage.url}/badtype/", False, "META0013", "Bad content type header: 'application/json'"),
            (f"{garbage.url}/oldsdk/", False, "META0012", "unsupported service protocol versions: [1, 2]"),
            (f"{garbage.url}/nowhere/", False, "META0003", "got status code '404'"),
            (f"{garbage.url}/silent/", False, "META0003", "no answer within 0.5s"),
        ]
        for uri, http11, code, fragment in cases:
            status, refused = await register(apis, {"uri": uri, "use_http_11": http11})
            assert status == 500, uri
            assert refused["restate_code"] == code, refused
            assert fragment in refused["message"], refused
            if code is not None:
                assert refused["message"].startswith(f"[{code}] ")
        assert await stored(apis) is None
        status, _, listed = await apis.request("GET", f"{apis.admin}/v4/deployments")
        assert json.loads(listed) == {"deployments": []}

    run_apis(tmp_path, body, discovery=slow)


def test_h2c_to_an_http11_only_deployment_says_so(tmp_path: Path):
    async def body(apis: Apis) -> None:
        async def http11_only(request: web.Request) -> web.Response:
            return web.Response(text="HTTP/1.1 only")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", http11_only)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        (port,) = free_ports(1)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            status, refused = await register(apis, {"uri": f"http://127.0.0.1:{port}/"})
            assert (status, refused["restate_code"]) == (500, "META0014")
            assert "consider discovery with --use-http1.1" in refused["message"]
        finally:
            await runner.cleanup()
        assert await stored(apis) is None

    run_apis(tmp_path, body)


def test_transient_failures_are_retried(tmp_path: Path, catalog: AsgiServer):
    """A deployment that answers 503 twice, then proxies to the real SDK: registered."""
    seen: list[int] = []

    async def body(apis: Apis) -> None:
        async def flaky(request: web.Request) -> web.Response:
            seen.append(len(seen))
            if len(seen) <= 2:
                return web.Response(status=503, text="warming up")
            upstream = f"{catalog.url}/discover"
            async with apis.session.get(upstream, headers={"accept": request.headers["accept"]}) as reply:
                return web.Response(
                    status=reply.status,
                    body=await reply.read(),
                    headers={
                        "content-type": reply.headers["content-type"],
                        "x-restate-server": reply.headers["x-restate-server"],
                    },
                )

        app = web.Application()
        app.router.add_get("/discover", flaky)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        (port,) = free_ports(1)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            status, created = await register(apis, {"uri": f"http://127.0.0.1:{port}", "use_http_11": True})
        finally:
            await runner.cleanup()
        assert status == 201 and len(created["services"]) == 5
        assert len(seen) == 3

    run_apis(tmp_path, body)


# --- the node process ------------------------------------------------------------------------------


def http(method: str, url: str, document: object = None) -> tuple[int, bytes]:
    data = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_node_serves_both_apis(procs: Procs, tmp_path: Path, catalog: AsgiServer):
    ingress, admin, node, data = free_ports(4)
    env = clean_env(
        DURASTATE_PORTS_INGRESS=str(ingress),
        DURASTATE_PORTS_ADMIN=str(admin),
        DURASTATE_PORTS_NODE=str(node),
        DURASTATE_PORTS_DATA=str(data),
        # This checkout's code, not whichever one the environment has installed.
        PYTHONPATH=str(REPO),
    )
    proc = procs.spawn([*DURASTATE, "server"], tmp_path / "node.log", cwd=tmp_path, env=env)
    admin_url, ingress_url = f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{ingress}"
    wait_until(lambda: http("GET", f"{admin_url}/health")[0] == 200, 60, "the node's admin health")

    status, version = http("GET", f"{admin_url}/version")
    assert status == 200 and json.loads(version)["ingress_endpoint"] == f"{ingress_url}/"
    assert http("GET", f"{admin_url}/v4/health")[0] == 200
    status, created = http("POST", f"{admin_url}/v4/deployments", {"uri": catalog.url})
    assert status == 201, created
    status, health = http("GET", f"{ingress_url}/restate/health")
    assert (status, json.loads(health)) == (200, {"services": SERVICES})
    status, missing = http("GET", f"{ingress_url}/Nope/x")
    assert status == 404 and json.loads(missing)["source"] == "ingress"
    # The node's partition processors run the call on the registered deployment.
    status, greeting = http("POST", f"{ingress_url}/Greeter/greet", "World")
    assert (status, json.loads(greeting)) == (200, "Hello, World!")

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_metadata_store_reads_stay_off_the_ingress_path(tmp_path: Path, catalog: AsgiServer):
    """Once registered, calls are served from the ingress's cached schema, with no store read each."""

    async def body(apis: Apis) -> None:
        await register(apis, {"uri": catalog.url})
        await apis.request("POST", f"{apis.ingress}/Greeter/greet", "x")
        reads = 0
        original = apis.store.get

        async def counting_get(key: str):  # type: ignore[no-untyped-def]
            nonlocal reads
            reads += 1
            return await original(key)

        apis.store.get = counting_get  # type: ignore[method-assign]
        for _ in range(20):
            status, _, _ = await apis.request("POST", f"{apis.ingress}/Greeter/greet", "x")
            assert status == 200
        assert reads == 0

    run_apis(tmp_path, body)

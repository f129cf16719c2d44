"""The ingress against a schema registered from a real deployment: the official SDK's services
(tests/sdk_services/catalog.py under hypercorn) are registered through the admin API, then

* the official Python ingress client (``restate.client``) calls, sends (with its integer-ms
  delay) and calls workflows through our ingress, and gets back what the partition answered;
* every 4xx of restate-protocol.md §6.3 comes back with the real server's status and body;
* invocations are pinned to the deployment that was latest when they were made.

The partition side is a recording submitter (the lead's submitter replaces it in the node).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from restate.client import create_client
from restate.client_types import HttpError

from processor.core._model import Failure, HandlerType, Result, ServiceInvocation, ServiceType
from processor.ids import AwakeableId, InvocationId
from tests.sdk_services.counter import add, get
from tests.sdk_services.greeter import greet
from tests.sdk_services.signup import run
from tests.support.node_http import Apis, RecordingSubmitter, run_apis
from tests.support.sdk_server import AsgiServer, AsgiServers, module_asgi_servers  # noqa: F401

CATALOG = "tests.sdk_services.catalog:app"


@pytest.fixture(scope="module")
def catalog(module_asgi_servers: AsgiServers) -> AsgiServer:  # noqa: F811
    return module_asgi_servers.start(CATALOG)


class ScriptedSubmitter(RecordingSubmitter):
    """Answers like the SDK handlers would, per target."""

    answers = {
        "Greeter/greet": Result(b'"Hello, Ada!"'),
        "Counter/add": Result(b"5"),
        "Counter/get": Result(b"5"),
        "Signup/run": Result(failure=Failure(409, "the workflow method was already invoked")),
    }

    async def call(self, invocation: ServiceInvocation):  # type: ignore[no-untyped-def]
        self.result = self.answers[f"{invocation.target.service}/{invocation.target.handler}"]
        return await super().call(invocation)


async def register(apis: Apis, uri: str) -> str:
    status, _, body = await apis.request("POST", f"{apis.admin}/v4/deployments", {"uri": uri})
    assert status in (200, 201), body
    return json.loads(body)["id"]


def test_the_official_python_client(tmp_path: Path, catalog: AsgiServer):
    async def body(apis: Apis) -> None:
        deployment_id = await register(apis, catalog.url)
        submitter = apis.submitter
        async with create_client(apis.ingress) as client:
            assert await client.service_call(greet, "Ada") == "Hello, Ada!"
            assert await client.object_call(add, "counter-1", 5, idempotency_key="ik-1") == 5
            assert await client.object_call(get, "counter-1", None) == 5
            before = time.time_ns() // 1_000_000
            handle = await client.object_send(add, "counter-1", 2, send_delay=timedelta(seconds=5))
            after = time.time_ns() // 1_000_000
            with pytest.raises(HttpError) as refused:
                await client.workflow_call(run, "me", "me@example.com")

        greeted, added, got, workflow = submitter.calls
        assert greeted.target.service_type is ServiceType.SERVICE and greeted.argument == b'"Ada"'
        assert added.target.key == "counter-1" and added.target.handler_type is HandlerType.EXCLUSIVE
        assert added.idempotency_key == "ik-1" and added.argument == b"5"
        assert got.target.handler_type is HandlerType.SHARED and got.argument == b""
        assert workflow.target.handler_type is HandlerType.WORKFLOW
        assert {c.deployment_id for c in submitter.calls} == {deployment_id}
        # The client's ?delay=5000 (integer milliseconds) is accepted as 5 s.
        (sent,) = submitter.sends
        assert handle.invocation_id == str(InvocationId.from_bytes(sent.invocation_id))
        assert before + 5000 <= sent.execution_time_ms <= after + 5000
        assert refused.value.status_code == 409
        assert json.loads(refused.value.body or "") == {
            "code": 409,
            "message": "the workflow method was already invoked",
            "source": "invocation",
        }

    run_apis(tmp_path, body, submitter=ScriptedSubmitter())


NOT_FOUND_SERVICE = "service 'Nope' not found, make sure to register the service before calling it."
BAD_PATH = "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
AWAKEABLE = AwakeableId(InvocationId(7, 8), 17)


@pytest.mark.parametrize(
    ("method", "path", "headers", "data", "status", "message"),
    [
        ("POST", "/Nope/greet", {}, b"", 404, NOT_FOUND_SERVICE),
        (
            "POST",
            "/Greeter/nope",
            {},
            b"",
            404,
            "the service 'Greeter' exists, but the handler 'nope' was not found, check that the handler exists in "
            "the latest registered service version.",
        ),
        ("POST", "/Counter/add", {}, b"", 400, BAD_PATH),
        ("POST", "/Greeter/greet/extra/more", {}, b"", 400, BAD_PATH),
        (
            "GET",
            "/restate/invocation/garbage/output",
            {},
            b"",
            400,
            "bad invocation id 'garbage': bad format",
        ),
        (
            "POST",
            "/restate/awakeables/garbage/resolve",
            {},
            b"",
            400,
            "bad awakeable id 'garbage': bad format",
        ),
        (
            "POST",
            "/restate/a/sign_1garbage/reject",
            {},
            b"",
            400,
            "bad awakeable id 'sign_1garbage': id doesn't match the expected type",
        ),
        ("POST", "/Internal/ping", {}, b"", 400, "the invoked service is not public"),
        (
            "POST",
            "/Signup/me/run",
            {"idempotency-key": "k", "content-type": "application/json"},
            b'"x"',
            400,
            "cannot use the idempotency key with workflow handlers. The handler invocation will already be idempotent "
            "by the workflow key itself.",
        ),
        ("PUT", "/Greeter/greet", {}, b"", 405, "method not allowed"),
        ("DELETE", "/Counter/k/get", {}, b"", 405, "method not allowed"),
        (
            "POST",
            "/Greeter/greet",
            {"content-type": "text/plain"},
            b"Ada",
            400,
            "input validation error: Content-type 'text/plain' does not match 'application/json'",
        ),
        (
            "POST",
            "/Counter/k/get",
            {"content-type": "application/json"},
            b"1",
            400,
            "input validation error: Expected body and content-type to be empty, but wasn't with content-type "
            "'Some(\"application/json\")'",
        ),
        (
            "POST",
            "/Greeter/greet?delay=1s",
            {"content-type": "application/json"},
            b'"x"',
            400,
            "cannot use the delay query parameter with calls. The delay is supported only with sends",
        ),
        ("GET", f"/restate/a/{AWAKEABLE}/resolve", {}, b"", 405, "method not allowed"),
        ("GET", "/", {}, b"", 400, "bad path: /"),
    ],
)
def test_refusals_match_the_real_server(
    tmp_path: Path, catalog: AsgiServer, method, path, headers, data, status, message
):
    async def body(apis: Apis) -> None:
        await register(apis, catalog.url)
        got, reply_headers, reply = await apis.request(
            method, apis.ingress + path, headers=headers, data=data or None
        )
        assert got == status
        assert reply_headers["x-restate-error-source"] == "ingress"
        assert reply_headers["content-type"] == "application/json"
        assert json.loads(reply) == {"code": status, "message": message, "source": "ingress"}
        assert apis.submitter.calls == [] and apis.submitter.sends == []

    run_apis(tmp_path, body)


def test_requests_that_pass_reach_the_partition(tmp_path: Path, catalog: AsgiServer):
    async def body(apis: Apis) -> None:
        await register(apis, catalog.url)
        for method, path, headers, data in [
            ("GET", "/Greeter/greet", {}, None),  # no body and no content type: accepted
            ("GET", "/Counter/a%20b/reset", {}, None),
            ("POST", "/Formats/shout", {"content-type": "text/markdown"}, b"hi"),
            (
                "POST",
                "/Signup/me/confirm",
                {"idempotency-key": "c1", "content-type": "application/json"},
                b'"1"',
            ),
        ]:
            status, reply_headers, _ = await apis.request(
                method, apis.ingress + path, headers=headers, data=data
            )
            assert status == 200, path
            assert "x-restate-id" in reply_headers
        status, reply_headers, reply = await apis.request(
            "GET", f"{apis.ingress}/Greeter/greet/send?delay=250"
        )
        assert status == 202 and json.loads(reply)["status"] == "Accepted"
        assert json.loads(reply)["invocationId"] == reply_headers["x-restate-id"]
        assert [c.target.key for c in apis.submitter.calls] == [None, "a b", None, "me"]

    run_apis(tmp_path, body)


def test_new_invocations_go_to_the_latest_deployment(tmp_path: Path, catalog: AsgiServer):
    async def body(apis: Apis) -> None:
        first = await register(apis, catalog.url)
        await apis.request("GET", f"{apis.ingress}/Greeter/greet")
        # The same SDK under another path is another deployment: it serves revision 2 from now on.
        second = await register(apis, f"{catalog.url}/v2/")
        assert second != first
        await apis.request("GET", f"{apis.ingress}/Greeter/greet")
        assert [c.deployment_id for c in apis.submitter.calls] == [first, second]

    run_apis(tmp_path, body)

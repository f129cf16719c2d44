"""The ingress shell (``node.ingress.Ingress``) over HTTP with a fake submitter: what reaches the
submitter, what the client gets back, the schema cache (a service registered a moment ago is
found, the watch follows changes), body limits, 503s, and the issue-10 routes' 501s.

A real aiohttp server on a loopback port and a real metadata store (RocksDB in tmp_path); the
submitter is the only fake.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from multidict import CIMultiDict

from metadata import LocalMetadataStore
from metadata.records import encode
from metadata.schema import SCHEMA_KEY, Schema
from node.ingress import (
    CallOutcome,
    Ingress,
    Rejection,
    SendOutcome,
    SubmitUnavailable,
    add_ingress_routes,
)
from node.schema_cache import SchemaCache
from processor.core._model import Failure, InvocationSignal, Result, ServiceInvocation
from processor.ids import AwakeableId, InvocationId, idempotent_uuid, partition_key_of, workflow_uuid
from tests.support.node_http import served

from .sdk_schema import DEPLOYMENT_ID, catalog_schema

NOW_MS = 1_795_317_414_503
DEADLINE_S = 20.0


class FakeSubmitter:
    """Records what it is given; answers with ``call_outcome``/``send_outcome`` (or raises ``error``)."""

    def __init__(self) -> None:
        self.calls: list[ServiceInvocation] = []
        self.sends: list[ServiceInvocation] = []
        self.result = Result(b'"Hello"')
        self.rejection: Rejection | None = None
        self.expires_at_ms = 0
        self.previously_accepted = False
        self.error: Exception | None = None
        self.asked: list[tuple[str, bytes]] = []
        self.signals: list[InvocationSignal] = []

    async def call(self, invocation: ServiceInvocation) -> CallOutcome:
        self.calls.append(invocation)
        if self.error is not None:
            raise self.error
        if self.rejection is not None:
            return CallOutcome(invocation.invocation_id, rejection=self.rejection)
        return CallOutcome(invocation.invocation_id, self.result, expires_at_ms=self.expires_at_ms)

    async def send(self, invocation: ServiceInvocation) -> SendOutcome:
        self.sends.append(invocation)
        if self.error is not None:
            raise self.error
        return SendOutcome(invocation.invocation_id, self.previously_accepted, invocation.execution_time_ms)

    async def attach(self, invocation_id: bytes) -> CallOutcome:
        self.asked.append(("attach", invocation_id))
        return self._answer(invocation_id)

    async def output(self, invocation_id: bytes) -> CallOutcome:
        self.asked.append(("output", invocation_id))
        return self._answer(invocation_id)

    def _answer(self, invocation_id: bytes) -> CallOutcome:
        if self.rejection is not None:
            return CallOutcome(invocation_id, rejection=self.rejection)
        return CallOutcome(invocation_id, self.result, expires_at_ms=self.expires_at_ms)

    async def signal(self, signal: InvocationSignal) -> None:
        self.signals.append(signal)


Body = Callable[[aiohttp.ClientSession, str, FakeSubmitter, LocalMetadataStore], Awaitable[None]]


def serve(tmp_path: Path, body: Body, *, schema: Schema | None = None, **options: object) -> None:
    """Run ``body(session, base_url, submitter, store)`` against an ingress app on a free port."""

    async def main() -> None:
        store = LocalMetadataStore.open(tmp_path / "metadata")
        if schema is not None:
            await store.put(SCHEMA_KEY, encode(schema))
        submitter = FakeSubmitter()
        app = web.Application()
        add_ingress_routes(app, store, submitter, rng=random.Random(7), clock=lambda: NOW_MS, **options)
        try:
            async with served(app) as base, aiohttp.ClientSession() as session, asyncio.timeout(DEADLINE_S):
                await body(session, base, submitter, store)
        finally:
            await store.close()

    asyncio.run(main())


SCHEMA = catalog_schema()


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: object
) -> tuple[int, CIMultiDict[str], bytes]:
    async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, CIMultiDict(response.headers), await response.read()


def test_call_reaches_the_submitter_and_its_result_the_client(tmp_path: Path):
    async def body(session, base, submitter, store):
        status, headers, reply = await fetch(
            session,
            "POST",
            f"{base}/Greeter/greet?x=1",
            data=b'"Ada"',
            headers={"content-type": "application/json", "x-custom": "v", "idempotency-key": "ik"},
        )
        assert (status, reply) == (200, b'"Hello"')
        assert headers["content-type"] == "application/json"
        (invocation,) = submitter.calls
        assert headers["x-restate-id"] == str(InvocationId.from_bytes(invocation.invocation_id))
        assert "idempotency-expires" not in headers
        assert invocation.target.service == "Greeter" and invocation.argument == b'"Ada"'
        assert invocation.idempotency_key == "ik"
        names = [name for name, _ in invocation.headers]
        assert names[0] == "x-restate-ingress-path" and invocation.headers[0][1] == "/Greeter/greet?x=1"
        assert "x-custom" in names and "host" not in names and "idempotency-key" not in names

        submitter.result = Result(b"")
        submitter.expires_at_ms = NOW_MS
        status, headers, reply = await fetch(session, "GET", f"{base}/Counter/k/get")
        assert (status, reply) == (200, b"")
        assert "content-type" not in headers
        assert headers["idempotency-expires"] == "2026-11-22T03:16:54.503+00:00"

    serve(tmp_path, body, schema=SCHEMA)


def test_failures_rejections_and_sends(tmp_path: Path):
    async def body(session, base, submitter, store):
        submitter.result = Result(failure=Failure(418, "teapot"))
        status, headers, reply = await fetch(session, "GET", f"{base}/Greeter/greet")
        assert status == 418
        assert headers["x-restate-error-source"] == "invocation"
        assert json.loads(reply) == {"code": 418, "message": "teapot", "source": "invocation"}

        submitter.rejection = Rejection(409, "the workflow method was already invoked")
        status, headers, reply = await fetch(session, "GET", f"{base}/Signup/me/run")
        assert status == 409 and "x-restate-id" in headers
        assert (
            reply == b'{"code":409,"message":"the workflow method was already invoked","source":"invocation"}'
        )

        status, headers, reply = await fetch(
            session,
            "POST",
            f"{base}/Counter/k/add/send?delay=1m",
            data=b"1",
            headers={"content-type": "application/json"},
        )
        (sent,) = submitter.sends
        invocation_id = str(InvocationId.from_bytes(sent.invocation_id))
        assert (status, headers["x-restate-id"]) == (202, invocation_id)
        assert json.loads(reply) == {
            "invocationId": invocation_id,
            "executionTime": "2026-11-22T03:17:54.503000000Z",
            "status": "Accepted",
        }
        submitter.previously_accepted = True
        status, _, reply = await fetch(session, "GET", f"{base}/Greeter/greet/send")
        assert status == 202 and json.loads(reply)["status"] == "PreviouslyAccepted"

    serve(tmp_path, body, schema=SCHEMA)


def test_refusals(tmp_path: Path):
    async def body(session, base, submitter, store):
        cases = [
            ("PUT", "/Greeter/greet", 405, "method not allowed"),
            (
                "DELETE",
                "/Nope/greet",
                404,
                "service 'Nope' not found, make sure to register the service before calling it.",
            ),
            (
                "POST",
                "/Counter/add",
                400,
                "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler",
            ),
            ("POST", "/Internal/ping", 400, "the invoked service is not public"),
            (
                "GET",
                "/Greeter/greet/send?delay=-1s",
                400,
                "bad delay query parameter, must be a ISO8601 "
                "duration: negative signed durations cannot be converted to an unsigned duration",
            ),
            ("POST", "/restate/health", 405, "method not allowed"),
        ]
        for method, path, status, message in cases:
            got, headers, reply = await fetch(session, method, base + path)
            assert got == status, path
            assert headers["x-restate-error-source"] == "ingress"
            assert "x-restate-id" not in headers
            document = json.loads(reply)
            assert (document["code"], document["source"]) == (status, "ingress")
            if message is not None:
                assert document["message"] == message
        text, _, reply = await fetch(
            session, "POST", f"{base}/Greeter/greet", data=b"x", headers={"content-type": "text/plain"}
        )
        assert text == 400
        assert (
            json.loads(reply)["message"]
            == "input validation error: Content-type 'text/plain' does not match 'application/json'"
        )
        assert submitter.calls == [] and submitter.sends == []

        status, _, reply = await fetch(session, "GET", f"{base}/restate/health")
        assert (status, json.loads(reply)) == (
            200,
            {"services": ["Counter", "Formats", "Greeter", "Internal", "Signup"]},
        )

    serve(tmp_path, body, schema=SCHEMA)


def test_body_limit_and_unreachable_partitions(tmp_path: Path):
    async def body(session, base, submitter, store):
        status, _, reply = await fetch(
            session, "POST", f"{base}/Formats/shout", data=b"x" * 65, headers={"content-type": "text/plain"}
        )
        assert (status, json.loads(reply)["message"]) == (413, "cannot read body: length limit exceeded")

        async def chunks():
            for _ in range(10):
                yield b"y" * 10

        status, _, _ = await fetch(
            session, "POST", f"{base}/Formats/shout", data=chunks(), headers={"content-type": "text/plain"}
        )
        assert status == 413  # chunked, no content-length: counted while read
        assert submitter.calls == []

        submitter.error = SubmitUnavailable("partition 3 has no leader")
        status, headers, reply = await fetch(session, "GET", f"{base}/Greeter/greet")
        assert (status, headers["x-restate-error-source"]) == (503, "ingress")
        assert json.loads(reply)["message"].startswith("internal routing error: partition 3 has no leader. ")

    serve(tmp_path, body, schema=SCHEMA, max_body_bytes=64)


def test_attach_output_and_awakeable_routes(tmp_path: Path):
    invocation = InvocationId(1, 2)
    awakeable = AwakeableId(invocation, 17)
    run_of_k = InvocationId(partition_key_of("k"), workflow_uuid("Signup", "k")).to_bytes()
    by_key = InvocationId(partition_key_of("ik"), idempotent_uuid("Greeter", "greet", "ik")).to_bytes()

    async def body(session, base, submitter, store):
        for method, path, status in [
            ("POST", f"/restate/invocation/{invocation}/attach", 405),
            ("GET", "/restate/invocation/nope/attach", 400),
            ("GET", f"/restate/a/{awakeable}/reject", 405),
            ("POST", "/restate/awakeables/sign_1bad/resolve", 400),
            ("POST", "/restate/lookup", 501),
        ]:
            got, headers, reply = await fetch(session, method, base + path)
            assert got == status, path
            assert json.loads(reply)["source"] == "ingress"
        assert submitter.asked == [] and submitter.signals == []

        status, headers, reply = await fetch(session, "GET", f"{base}/restate/invocation/{invocation}/attach")
        assert (status, reply, headers["x-restate-id"]) == (200, b'"Hello"', str(invocation))
        assert (await fetch(session, "GET", f"{base}/restate/workflow/Signup/k/output"))[0] == 200
        assert (await fetch(session, "GET", f"{base}/restate/invocation/Greeter/greet/ik/output"))[0] == 200
        assert submitter.asked == [
            ("attach", invocation.to_bytes()),
            ("output", run_of_k),
            ("output", by_key),
        ]

        submitter.rejection = Rejection(470, "the invocation exists but has not completed yet")
        status, headers, reply = await fetch(session, "GET", f"{base}/restate/invocation/{invocation}/output")
        assert status == 470 and headers["x-restate-error-source"] == "ingress"
        assert json.loads(reply) == {
            "code": 470,
            "message": "the invocation exists but has not completed yet",
            "source": "ingress",
        }

        status, _, reply = await fetch(
            session, "POST", f"{base}/restate/awakeables/{awakeable}/resolve", data=b"42"
        )
        assert (status, reply) == (202, b"")
        status, _, _ = await fetch(session, "POST", f"{base}/restate/a/{awakeable}/reject", data=b"no way")
        assert status == 202
        assert submitter.signals == [
            InvocationSignal(invocation.to_bytes(), index=17, result=Result(b"42")),
            InvocationSignal(invocation.to_bytes(), index=17, result=Result(failure=Failure(500, "no way"))),
        ]

    serve(tmp_path, body, schema=SCHEMA)


def test_a_service_registered_a_moment_ago_is_found(tmp_path: Path):
    """The ingress's cache is not following the store here (no watch): a miss reads the store."""

    async def main() -> None:
        store = LocalMetadataStore.open(tmp_path / "metadata")
        try:
            cache = SchemaCache(store)
            submitter = FakeSubmitter()
            ingress = Ingress(cache, submitter, rng=random.Random(1), clock=lambda: NOW_MS)
            app = web.Application()
            app.add_routes(ingress.routes())
            deployment = SCHEMA.deployments[DEPLOYMENT_ID]
            counter = deployment.service("Counter")
            assert counter is not None and [h.name for h in counter.handlers] == ["add", "get", "reset"]
            only_add = msgspec.structs.replace(counter, handlers=counter.handlers[:1])
            older = msgspec.structs.replace(
                deployment,
                services=tuple(only_add if s.name == "Counter" else s for s in deployment.services),
            )
            older_schema = msgspec.structs.replace(SCHEMA, deployments={DEPLOYMENT_ID: older})
            async with served(app) as base, aiohttp.ClientSession() as session, asyncio.timeout(DEADLINE_S):
                status, _, _ = await fetch(session, "GET", f"{base}/Greeter/greet")
                assert status == 404
                await store.put(SCHEMA_KEY, encode(older_schema))
                status, _, _ = await fetch(session, "GET", f"{base}/Greeter/greet")
                assert status == 200  # an unknown service: the store was read again
                status, _, _ = await fetch(session, "GET", f"{base}/Counter/k/get")
                assert status == 404  # read again, still not there
                await store.put(SCHEMA_KEY, encode(SCHEMA))
                status, _, _ = await fetch(session, "GET", f"{base}/Counter/k/get")
                assert status == 200  # an unknown handler of a known service: read again too
                assert [c.target.handler for c in submitter.calls] == ["greet", "get"]
        finally:
            await store.close()

    asyncio.run(main())


def test_the_cache_follows_the_store(tmp_path: Path):
    async def main() -> None:
        store = LocalMetadataStore.open(tmp_path / "metadata")
        cache = SchemaCache(store)
        try:
            await cache.start()
            assert cache.current == Schema() and cache.version == 0
            version = await store.put(SCHEMA_KEY, encode(SCHEMA))
            async with asyncio.timeout(DEADLINE_S):
                assert await cache.wait_for(version) == SCHEMA
            # An older version offered late (a slow read) never replaces a newer one.
            cache.offer(encode(Schema()), version - 1)
            assert cache.current == SCHEMA and cache.version == version
        finally:
            await cache.stop()
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_both_methods_invoke(tmp_path: Path, method: str):
    async def body(session, base, submitter, store):
        json_body = {"data": b'"x"', "headers": {"content-type": "application/json"}}
        status, _, _ = await fetch(session, method, f"{base}/Greeter/greet", **json_body)
        assert status == 200 and submitter.calls[0].argument == b'"x"'

    serve(tmp_path, body, schema=SCHEMA)


def test_browsers_may_call_from_any_origin(tmp_path: Path):
    """CORS as Restate's ingress answers it: preflights allowed as asked, the origin mirrored."""

    async def body(session, base, submitter, store):
        preflight = {
            "origin": "http://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,idempotency-key",
        }
        status, headers, reply = await fetch(session, "OPTIONS", f"{base}/Greeter/greet", headers=preflight)
        assert (status, reply) == (200, b"")
        assert headers["access-control-allow-origin"] == "http://app.example"
        assert headers["access-control-allow-methods"] == "POST"
        assert headers["access-control-allow-headers"] == "content-type,idempotency-key"
        assert headers["access-control-allow-credentials"] == "true"
        assert submitter.calls == []

        status, headers, _ = await fetch(
            session, "GET", f"{base}/Greeter/greet", headers={"origin": "http://a.b"}
        )
        assert status == 200 and headers["access-control-allow-origin"] == "http://a.b"
        assert headers["vary"] == "origin, access-control-request-method, access-control-request-headers"
        status, headers, _ = await fetch(session, "GET", f"{base}/Nope/x")
        assert status == 404 and "access-control-allow-origin" not in headers
        assert headers["access-control-allow-credentials"] == "true"
        status, _, _ = await fetch(session, "OPTIONS", f"{base}/Greeter/greet")
        assert status == 405  # not a preflight: an ordinary request with a method the ingress refuses

    serve(tmp_path, body, schema=SCHEMA)

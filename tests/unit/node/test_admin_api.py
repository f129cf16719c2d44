"""The admin API over HTTP with a fake discovery (the official SDK's real manifest, or a failure):
versioning, registration rules and status codes per API version, the JSON views, bad bodies, and
the issue-10 stubs. Discovery against real deployments is in tests/integration/test_admin_api.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from metadata import LocalMetadataStore
from metadata.schema import ServiceType, load_schema
from node.admin_api import SERVER_VERSION, add_admin_routes
from node.discovery import Discovered, DiscoveryError
from node.ingress import ControlRefused
from processor.core import AdminOutcome
from processor.ids import DeploymentId, InvocationId
from processor.protocol.manifest import parse_manifest
from tests.support.node_http import served

from .sdk_schema import catalog_manifest

NOW_MS = 1_795_317_414_503
DEADLINE_S = 20.0
URI = "http://127.0.0.1:9080/"
JSON = {"content-type": "application/json"}
MANIFEST, SDK_VERSION = catalog_manifest()  # before any event loop runs: it runs one


class FakeDiscovery:
    def __init__(self) -> None:
        self.discovered = Discovered(
            parse_manifest(MANIFEST, sdk_version=SDK_VERSION), "HTTP/2.0", SDK_VERSION
        )
        self.error: Exception | None = None
        self.requests: list[tuple[str, bool, dict[str, str]]] = []

    async def discover(
        self, uri: str, *, use_http_11: bool = False, headers: Mapping[str, str] | None = None
    ) -> Discovered:
        self.requests.append((uri, use_http_11, dict(headers or {})))
        if self.error is not None:
            raise self.error
        return self.discovered


Body = Callable[[aiohttp.ClientSession, str, FakeDiscovery, LocalMetadataStore], Awaitable[None]]


class RecordingControl:
    """Records the cancels (signals), kills and purges the admin API appends."""

    def __init__(self) -> None:
        self.done: list[tuple[str, bytes, int]] = []

    async def cancel(self, invocation_id: bytes) -> bytes | None:
        return self._record("cancel", invocation_id)

    async def kill(self, invocation_id: bytes) -> bytes | None:
        return self._record("kill", invocation_id)

    async def purge(self, invocation_id: bytes) -> bytes | None:
        return self._record("purge", invocation_id)

    async def pause(self, invocation_id: bytes) -> bytes | None:
        return self._record("pause", invocation_id)

    async def resume(self, invocation_id: bytes, deployment_id: str | None) -> bytes | None:
        return self._record("resume", invocation_id, deployment_id or 0)

    def _record(self, action: str, invocation_id: bytes, extra: object = 0) -> bytes | None:
        """Answers as the partition would, by the id's first byte: 1 unknown, 2 completed, 3
        done at once / paused already, anything else the usual outcome (or none in time)."""
        self.done.append((action, invocation_id, extra))
        match invocation_id[0]:
            case 1:
                raise ControlRefused(404, "invocation not found")
            case 2:
                raise ControlRefused(409, "the invocation was already completed")
            case 3:
                return AdminOutcome.ALREADY if action == "pause" else AdminOutcome.DONE
        return None


def serve(tmp_path: Path, body: Body, control: RecordingControl | None = None) -> None:
    async def main() -> None:
        store = LocalMetadataStore.open(tmp_path / "metadata")
        discovery = FakeDiscovery()
        app = web.Application()
        add_admin_routes(
            app,
            store,
            ingress_url="http://127.0.0.1:8080/",
            discovery=discovery,
            rng=random.Random(3),
            clock=lambda: NOW_MS,
            invocations=control,
        )
        try:
            async with served(app) as base, aiohttp.ClientSession() as session, asyncio.timeout(DEADLINE_S):
                await body(session, base, discovery, store)
        finally:
            await store.close()

    asyncio.run(main())


async def call(
    session: aiohttp.ClientSession, method: str, url: str, document: object = None, **kwargs: object
) -> tuple[int, Mapping[str, str], bytes]:
    if document is not None:
        kwargs["data"] = json.dumps(document).encode()
        kwargs.setdefault("headers", JSON)
    async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, response.headers.copy(), await response.read()


def test_version_health_and_api_prefixes(tmp_path: Path):
    async def body(session, base, discovery, store):
        for prefix in ("", "/v2", "/v3", "/v4"):
            status, headers, reply = await call(session, "GET", f"{base}{prefix}/version")
            assert (status, headers["content-type"]) == (200, "application/json")
            assert json.loads(reply) == {
                "version": SERVER_VERSION,
                "min_admin_api_version": 2,
                "max_admin_api_version": 4,
                "ingress_endpoint": "http://127.0.0.1:8080/",
                "features": {"protocol_v7": False, "vqueues": False},
            }
            status, _, reply = await call(session, "GET", f"{base}{prefix}/health")
            assert (status, reply) == (200, b"")
        for path in ("/v1/version", "/v1/deployments", "/v1"):
            status, _, reply = await call(session, "GET", base + path)
            assert (status, reply) == (
                400,
                b"Unsupported Admin API version V1. This server supports versions between V2 and V4.",
            )
        assert SERVER_VERSION.startswith("1.7.12+durastate.")

    serve(tmp_path, body)


def test_register_list_and_describe(tmp_path: Path):
    async def body(session, base, discovery, store):
        request = {"uri": URI, "additional_headers": {"x-token": "t"}, "use_http_11": False, "dry_run": False}
        status, headers, reply = await call(session, "POST", f"{base}/v4/deployments", request)
        assert status == 201
        created = json.loads(reply)
        deployment_id = created["id"]
        DeploymentId.parse(deployment_id)
        assert headers["location"] == f"deployments/{deployment_id}"
        assert discovery.requests == [(URI, False, {"x-token": "t"})]
        assert [s["name"] for s in created["services"]] == [
            "Greeter",
            "Counter",
            "Signup",
            "Internal",
            "Formats",
        ]
        assert (created["min_protocol_version"], created["max_protocol_version"]) == (5, 7)
        assert created["sdk_version"] == "restate-sdk-python/1.3.0"
        assert all(s["deployment_id"] == deployment_id and s["revision"] == 1 for s in created["services"])

        stored = await load_schema(store)
        deployment = stored.deployment(deployment_id)
        assert deployment is not None and deployment.created_at_ms == NOW_MS
        assert deployment.additional_headers == {"x-token": "t"} and deployment.http_version == "HTTP/2.0"

        status, _, reply = await call(session, "GET", f"{base}/v4/deployments")
        (listed,) = json.loads(reply)["deployments"]
        assert status == 200 and listed["id"] == deployment_id and listed["uri"] == URI
        assert listed["protocol_type"] == "BidiStream" and listed["http_version"] == "HTTP/2.0"
        assert listed["created_at"] == "2026-11-22T03:16:54.503Z"
        assert {"name": "Counter", "revision": 1} in listed["services"]

        status, _, reply = await call(session, "GET", f"{base}/v4/deployments/{deployment_id}")
        assert status == 200 and json.loads(reply)["services"] == created["services"]

        status, _, reply = await call(session, "GET", f"{base}/v4/services")
        services = json.loads(reply)["services"]
        assert status == 200 and [s["name"] for s in services] == [
            "Counter",
            "Formats",
            "Greeter",
            "Internal",
            "Signup",
        ]

        status, _, reply = await call(session, "GET", f"{base}/v4/services/Counter")
        counter = json.loads(reply)
        assert (status, counter["ty"], counter["public"]) == (200, "VirtualObject", True)
        status, _, reply = await call(session, "GET", f"{base}/v4/services/Internal")
        assert json.loads(reply)["public"] is False

        status, _, reply = await call(session, "GET", f"{base}/v4/services/Counter/handlers")
        handlers = json.loads(reply)["handlers"]
        assert status == 200 and [h["name"] for h in handlers] == ["add", "get", "reset"]
        assert handlers == counter["handlers"]
        status, _, reply = await call(session, "GET", f"{base}/v4/services/Counter/handlers/get")
        assert (status, json.loads(reply)["ty"]) == (200, "Shared")

        missing = [
            ("/v4/services/Nope", "The requested service 'Nope' does not exist"),
            ("/v4/services/Nope/handlers", "The requested service 'Nope' does not exist"),
            (
                "/v4/services/Counter/handlers/nope",
                "The requested handler 'nope' on service 'Counter' does not exist",
            ),
            (
                "/v4/deployments/dp_10000000000000000000001",
                "The requested deployment 'dp_10000000000000000000001' does not exist",
            ),
        ]
        for path, message in missing:
            status, _, reply = await call(session, "GET", base + path)
            assert (status, json.loads(reply)) == (404, {"message": message, "restate_code": None}), path
        status, _, reply = await call(session, "GET", f"{base}/v4/deployments/garbage")
        assert (status, reply) == (
            400,
            b"Invalid URL: Cannot parse `deployment` with value `garbage`: bad format",
        )

    serve(tmp_path, body)


def test_reregistration_and_force_by_api_version(tmp_path: Path):
    async def body(session, base, discovery, store):
        status, _, reply = await call(session, "POST", f"{base}/deployments", {"uri": URI})
        first = json.loads(reply)["id"]
        assert status == 201 and len(discovery.requests) == 1

        # Same address, no force: unchanged, and discovery is not even called (as Restate).
        for prefix in ("", "/v3", "/v4"):
            status, headers, reply = await call(
                session, "POST", f"{base}{prefix}/deployments", {"uri": URI.rstrip("/")}
            )
            assert (status, json.loads(reply)["id"], headers["location"]) == (
                200,
                first,
                f"deployments/{first}",
            )
        assert len(discovery.requests) == 1
        status, _, reply = await call(session, "POST", f"{base}/v2/deployments", {"uri": URI, "force": False})
        assert (status, json.loads(reply)) == (
            409,
            {"message": f"Conflict: deployment {first} already exists", "restate_code": None},
        )

        # force: discovered again and overwritten in place; on /v2 force is the default and answers 201.
        discovery.discovered = dataclasses.replace(discovery.discovered, http_version="HTTP/1.1")
        status, _, reply = await call(session, "POST", f"{base}/v4/deployments", {"uri": URI, "force": True})
        assert (status, json.loads(reply)["id"]) == (200, first)
        status, _, reply = await call(session, "POST", f"{base}/v2/deployments", {"uri": URI})
        assert (status, json.loads(reply)["id"]) == (201, first)
        assert len(discovery.requests) == 3
        schema = await load_schema(store)
        assert list(schema.deployments) == [first]
        assert schema.deployments[first].http_version == "HTTP/1.1"
        assert schema.service("Counter").revision == 3  # type: ignore[union-attr]

        # Another address serving the same services: a new deployment, the newer revision.
        status, _, reply = await call(
            session, "POST", f"{base}/v4/deployments", {"uri": "http://127.0.0.1:9081/"}
        )
        second = json.loads(reply)["id"]
        assert status == 201 and second != first
        assert (await load_schema(store)).deployment_for_service("Greeter").id == second  # type: ignore[union-attr]

    serve(tmp_path, body)


def test_dry_run_and_refusals_register_nothing(tmp_path: Path):
    async def body(session, base, discovery, store):
        status, _, reply = await call(
            session, "POST", f"{base}/v4/deployments", {"uri": URI, "dry_run": True}
        )
        assert status == 201 and json.loads(reply)["services"]
        assert (await store.get("schema")) is None

        discovery.error = DiscoveryError(
            "error when calling 'http://127.0.0.1:9080/discover': unable to reach the remote endpoint."
        )
        status, _, reply = await call(session, "POST", f"{base}/v4/deployments", {"uri": URI})
        assert status == 500
        assert json.loads(reply) == {
            "message": "[META0003] error when calling 'http://127.0.0.1:9080/discover': unable to reach the remote "
            "endpoint.. For more details, look at the docs with https://restate.dev/doc/errors/META0003",
            "restate_code": "META0003",
        }
        assert (await store.get("schema")) is None

        # A service may not change its type without force or breaking (409, META0006).
        discovery.error = None
        await call(session, "POST", f"{base}/v4/deployments", {"uri": URI})
        endpoint = discovery.discovered.manifest
        as_object = tuple(
            msgspec.structs.replace(s, ty=ServiceType.VIRTUAL_OBJECT) if s.name == "Greeter" else s
            for s in endpoint.services
        )
        changed = dataclasses.replace(endpoint, services=as_object)
        discovery.discovered = dataclasses.replace(discovery.discovered, manifest=changed)
        before = await store.get("schema")
        status, _, reply = await call(
            session, "POST", f"{base}/v4/deployments", {"uri": "http://127.0.0.1:9081/"}
        )
        refused = json.loads(reply)
        assert (status, refused["restate_code"]) == (409, "META0006")
        assert refused["message"].startswith("[META0006] detected a new service revision for 'Greeter'")
        assert await store.get("schema") == before
        status, _, _ = await call(
            session, "POST", f"{base}/v4/deployments", {"uri": "http://127.0.0.1:9081/", "breaking": True}
        )
        assert status == 201

    serve(tmp_path, body)


def test_bad_bodies(tmp_path: Path):
    async def body(session, base, discovery, store):
        url = f"{base}/v4/deployments"
        cases = [
            ({"data": b"{nope", "headers": JSON}, 400, "Failed to parse the request body as JSON: "),
            ({"data": b'{"uri": "http://x"}'}, 415, "Expected request with `Content-Type: application/json`"),
            (
                {"data": b"[1]", "headers": JSON},
                422,
                "Failed to deserialize the JSON body into the target type: ",
            ),
            (
                {"data": b"{}", "headers": JSON},
                422,
                "Failed to deserialize the JSON body into the target type: missing field `uri`",
            ),
            ({"data": b'{"uri": "http://x", "force": "yes"}', "headers": JSON}, 422, None),
            (
                {"data": b'{"uri": "http://x", "additional_headers": {"a b": "c"}}', "headers": JSON},
                422,
                None,
            ),
            ({"data": b'{"uri": "http://x", "additional_headers": {"a": 1}}', "headers": JSON}, 422, None),
        ]
        for kwargs, status, prefix in cases:
            got, _, reply = await call(session, "POST", url, **kwargs)
            assert got == status, kwargs
            if prefix is not None:
                assert reply.decode().startswith(prefix), reply
        for uri, reason in [
            (
                "localhost:9080",
                "The provided uri localhost:9080 is not absolute, only absolute URIs can be used.",
            ),
            ("/relative", "The provided uri /relative is not absolute, only absolute URIs can be used."),
            (
                "https://svc.example.com",
                "durastate reaches deployments over http:// (h2c or HTTP/1.1) only, not https://",
            ),
        ]:
            got, _, reply = await call(session, "POST", url, {"uri": uri})
            assert (got, json.loads(reply)["message"]) == (
                400,
                f"The request field 'uri' is invalid. Reason: {reason}",
            )
        got, _, reply = await call(session, "POST", url, {"arn": "arn:aws:lambda:eu-central-1:1:function:f"})
        assert got == 400 and "Lambda deployments are not supported" in json.loads(reply)["message"]
        assert discovery.requests == [] and (await store.get("schema")) is None

    serve(tmp_path, body)


def test_later_routes_answer_501(tmp_path: Path):
    invocation = InvocationId(1, 2)

    async def body(session, base, discovery, store):
        for method, path in [
            ("PATCH", "/v4/services/Greeter"),
            ("PATCH", f"/v4/invocations/{invocation}/restart-as-new"),
            ("POST", "/v4/query"),
        ]:
            status, _, reply = await call(session, method, base + path)
            assert status == 501, path
            assert json.loads(reply)["message"].endswith("is not implemented yet by durastate")
        status, _, reply = await call(session, "PATCH", f"{base}/v4/invocations/garbage/kill")
        assert (status, json.loads(reply)["message"]) == (
            400,
            "The request field 'invocation_id' is invalid. Reason: bad format",
        )
        status, _, reply = await call(session, "PUT", f"{base}/v4/deployments/dp_10000000000000000000001")
        assert (status, json.loads(reply)["message"]) == (
            405,
            "PUT deployment is deprecated, use PATCH instead",
        )

    serve(tmp_path, body)


def test_cancel_kill_and_purge_are_appended_for_the_invocation(tmp_path: Path):
    invocation = InvocationId(1, 2)
    raw = invocation.to_bytes()
    control = RecordingControl()
    registered: list[str] = []

    async def body(session, base, discovery, store):
        for method, path, status in [
            ("PATCH", f"/v4/invocations/{invocation}/cancel", 202),
            ("PATCH", f"/v4/invocations/{invocation}/kill", 200),
            ("PATCH", f"/invocations/{invocation}/purge", 200),
            ("DELETE", f"/v3/invocations/{invocation}?mode=kill", 202),
            ("DELETE", f"/v3/invocations/{invocation}", 202),
            ("PATCH", f"/v4/invocations/{invocation}/pause", 202),
            ("PATCH", f"/v4/invocations/{invocation}/resume", 200),
            ("PATCH", f"/v4/invocations/{invocation}/resume?deployment=keep", 200),
        ]:
            got, _, _ = await call(session, method, base + path)
            assert got == status, path
        # A deployment to resume on must exist; "latest" is not served.
        status, _, reply = await call(session, "POST", f"{base}/v4/deployments", {"uri": URI})
        registered.append(json.loads(reply)["id"])
        got, _, _ = await call(session, "PATCH", f"{base}/invocations/{invocation}/resume?deployment={registered[0]}")
        assert got == 200
        missing = "dp_10000000000000000000001"
        got, _, reply = await call(session, "PATCH", f"{base}/invocations/{invocation}/resume?deployment={missing}")
        assert (got, json.loads(reply)["message"]) == (404, f"The requested deployment '{missing}' does not exist")
        got, _, _ = await call(session, "PATCH", f"{base}/invocations/{invocation}/resume?deployment=latest")
        assert got == 501
        got, _, _ = await call(session, "PATCH", f"{base}/invocations/{invocation}/resume?deployment=dp_bad")
        assert got == 400
        status, _, reply = await call(session, "DELETE", f"{base}/invocations/{invocation}?mode=nope")
        assert status == 400 and "unknown mode" in json.loads(reply)["message"]
        status, _, _ = await call(session, "PATCH", f"{base}/v4/invocations/garbage/cancel")
        assert status == 400

    serve(tmp_path, body, control)
    assert control.done == [
        ("cancel", raw, 0),
        ("kill", raw, 0),
        ("purge", raw, 0),
        ("kill", raw, 0),
        ("cancel", raw, 0),
        ("pause", raw, 0),
        ("resume", raw, 0),
        ("resume", raw, 0),
        ("resume", raw, registered[0]),
    ]


def test_a_deployment_is_updated_in_place_when_sufficiently_similar(tmp_path: Path):
    async def body(session, base, discovery, store):
        status, _, reply = await call(session, "POST", f"{base}/v4/deployments", {"uri": URI})
        deployment_id = json.loads(reply)["id"]
        before = await load_schema(store)
        moved = "http://127.0.0.1:9081/"
        url = f"{base}/v4/deployments/{deployment_id}"
        # A dry run changes nothing; a real one moves it, same id, services and revisions.
        status, _, reply = await call(session, "PATCH", url, {"uri": moved, "dry_run": True})
        assert (status, json.loads(reply)["uri"]) == (200, moved)
        assert await load_schema(store) == before
        status, _, reply = await call(session, "PATCH", url, {"uri": moved, "additional_headers": {"x-a": "b"}})
        detail = json.loads(reply)
        assert (status, detail["id"], detail["uri"], detail["additional_headers"]) == (
            200,
            deployment_id,
            moved,
            {"x-a": "b"},
        )
        after = await load_schema(store)
        assert list(after.deployments) == [deployment_id]
        assert after.deployments[deployment_id].services == before.deployments[deployment_id].services
        assert discovery.requests[-1] == (moved, False, {"x-a": "b"})
        # Without a body field, the current value stays.
        status, _, _ = await call(session, "PATCH", url, {})
        assert status == 200 and discovery.requests[-1] == (moved, False, {"x-a": "b"})
        # A manifest that lost a service, or speaks other protocol versions: refused, unchanged.
        manifest = discovery.discovered.manifest
        for changed in (
            dataclasses.replace(manifest, services=manifest.services[1:]),
            dataclasses.replace(manifest, max_protocol_version=manifest.max_protocol_version + 1),
        ):
            discovery.discovered = dataclasses.replace(discovery.discovered, manifest=changed)
            status, _, reply = await call(session, "PATCH", url, {"uri": URI})
            assert status == 400 and json.loads(reply)["restate_code"] == "META0016", reply
            assert (await load_schema(store)) == after
        missing = "dp_10000000000000000000001"
        status, _, _ = await call(session, "PATCH", f"{base}/v4/deployments/{missing}", {"uri": URI})
        assert status == 404
        status, _, _ = await call(session, "PATCH", url, {"uri": "ftp://x/"})
        assert status == 400

    serve(tmp_path, body)


def test_invocation_actions_answer_with_the_partitions_outcome(tmp_path: Path):
    unknown, completed, early = (InvocationId(first << 56, 2) for first in (1, 2, 3))

    async def body(session, base, discovery, store):
        for action in ("cancel", "kill", "purge", "pause", "resume"):
            status, _, reply = await call(session, "PATCH", f"{base}/v4/invocations/{unknown}/{action}")
            assert (status, json.loads(reply)["message"]) == (404, "invocation not found"), action
            status, _, reply = await call(session, "PATCH", f"{base}/v4/invocations/{completed}/{action}")
            assert status == 409 and "already completed" in json.loads(reply)["message"], action
        # A cancel that ended an invocation before it started is 200; a pause of a paused one too.
        for action, expected in (("cancel", 200), ("pause", 200), ("kill", 200), ("resume", 200)):
            status, _, _ = await call(session, "PATCH", f"{base}/v4/invocations/{early}/{action}")
            assert status == expected, action
        status, _, _ = await call(session, "DELETE", f"{base}/invocations/{unknown}?mode=kill")
        assert status == 404

    serve(tmp_path, body, RecordingControl())


def test_invocation_actions_need_partition_processors(tmp_path: Path):
    async def body(session, base, discovery, store):
        status, _, reply = await call(session, "PATCH", f"{base}/v4/invocations/{InvocationId(1, 2)}/kill")
        assert status == 503 and "no partition processors" in json.loads(reply)["message"]

    serve(tmp_path, body)


def test_a_deployment_is_removed_by_force_only(tmp_path: Path):
    async def body(session, base, discovery, store):
        status, _, reply = await call(session, "POST", f"{base}/v4/deployments", {"uri": URI})
        deployment_id = json.loads(reply)["id"]
        status, _, reply = await call(session, "DELETE", f"{base}/v4/deployments/{deployment_id}")
        assert status == 501 and "force=true" in json.loads(reply)["message"]
        assert (await call(session, "GET", f"{base}/v4/deployments/{deployment_id}"))[0] == 200
        status, _, _ = await call(session, "DELETE", f"{base}/v4/deployments/{deployment_id}?force=true")
        assert status == 202
        assert (await call(session, "GET", f"{base}/v4/deployments/{deployment_id}"))[0] == 404
        status, _, reply = await call(session, "GET", f"{base}/v4/services")
        assert json.loads(reply)["services"] == []
        status, _, _ = await call(session, "DELETE", f"{base}/v4/deployments/{deployment_id}?force=true")
        assert status == 404

    serve(tmp_path, body)

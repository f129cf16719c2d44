"""A schema registry as the admin API builds it, from the official SDK's own manifest.

The manifest comes from the real ``restate-sdk`` discovery endpoint of
``tests.sdk_services.catalog`` (Greeter, Counter, Signup, the private Internal, Formats), called
in-process through its ASGI app, so unit tests check the ingress against what the SDK declares.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from metadata.schema import Deployment, Schema, register
from processor.protocol.manifest import DISCOVERY_PATH, discovery_request_headers, parse_manifest
from tests.sdk_services.catalog import app as catalog_app

DEPLOYMENT_ID = "dp_14Xqyw8usZusyoXOSF1gRy1"


async def _discover(app: Any) -> tuple[bytes, str | None]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "2",
        "method": "GET",
        "scheme": "http",
        "path": DISCOVERY_PATH,
        "raw_path": DISCOVERY_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"accept", discovery_request_headers()["accept"].encode())],
        "server": ("127.0.0.1", 9080),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    body = b"".join(m.get("body", b"") for m in sent[1:])
    server = headers.get(b"x-restate-server")
    return body, None if server is None else server.decode()


@functools.cache
def catalog_manifest() -> tuple[bytes, str | None]:
    return asyncio.run(_discover(catalog_app))


def catalog_schema(deployment_id: str = DEPLOYMENT_ID) -> Schema:
    body, sdk_version = catalog_manifest()
    endpoint = parse_manifest(body, sdk_version=sdk_version)
    deployment = Deployment(
        id=deployment_id,
        uri="http://127.0.0.1:9080/",
        protocol_type=endpoint.protocol_mode,
        http_version="HTTP/2.0",
        created_at_ms=1_700_000_000_000,
        min_protocol_version=endpoint.min_protocol_version,
        max_protocol_version=endpoint.max_protocol_version,
        sdk_version=sdk_version,
        services=endpoint.services,
    )
    return register(Schema(), deployment).schema

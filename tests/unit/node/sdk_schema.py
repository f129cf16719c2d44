"""A schema registry as the admin API builds it, from the official SDK's own manifest.

The manifest comes from the real ``restate-sdk`` discovery endpoint of
``tests.sdk_services.catalog`` (Greeter, Counter, Signup, the private Internal, Formats), called
in-process through its ASGI app, so unit tests check the ingress against what the SDK declares.
"""

from __future__ import annotations

import functools

from metadata.schema import Deployment, Schema, register
from processor.protocol.manifest import discovery_request_headers, parse_manifest
from tests.sdk_services.catalog import app as catalog_app
from tests.unit.processor.test_manifest import discover

DEPLOYMENT_ID = "dp_14Xqyw8usZusyoXOSF1gRy1"


@functools.cache
def catalog_manifest() -> tuple[bytes, str | None]:
    """The catalog's manifest body and its ``x-restate-server``; call it outside an event loop."""
    status, headers, body = discover(catalog_app, discovery_request_headers()["accept"])
    assert status == 200, body
    return body, headers.get("x-restate-server")


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

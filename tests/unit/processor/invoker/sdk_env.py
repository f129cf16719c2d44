"""Registering an official-SDK deployment for the invoker's tests and benchmark, without an admin
API: discovery over the transport, the manifest parsed, one deployment put in a fresh schema."""

from __future__ import annotations

from metadata.schema import Deployment, Schema, register
from processor.invoker.transport import Endpoint, HttpVersion, Transport
from processor.protocol.manifest import discovery_request_headers, manifest_version, parse_manifest

DEPLOYMENT_ID = "dp_1invokertest"


async def discover(transport: Transport, host: str, port: int, http11: bool) -> Schema:
    """A schema holding the deployment at ``host:port``, discovered over h2c or HTTP/1.1 (the SDK
    reports BIDI_STREAM or REQUEST_RESPONSE accordingly)."""
    version = HttpVersion.HTTP11 if http11 else HttpVersion.H2C
    response = await transport.request(
        Endpoint(host, port, version), "GET", "/discover", list(discovery_request_headers().items())
    )
    if response.status != 200:
        raise RuntimeError(f"discovery at {host}:{port} answered {response.status}: {response.body[:200]!r}")
    manifest_version(response.get("content-type"))
    manifest = parse_manifest(response.body, sdk_version=response.get("x-restate-server"))
    deployment = Deployment(
        id=DEPLOYMENT_ID,
        uri=f"http://{host}:{port}",
        protocol_type=manifest.protocol_mode,
        http_version="HTTP/1.1" if http11 else "HTTP/2.0",
        created_at_ms=0,
        min_protocol_version=manifest.min_protocol_version,
        max_protocol_version=manifest.max_protocol_version,
        sdk_version=response.get("x-restate-server"),
        services=manifest.services,
    )
    return register(Schema(), deployment).schema

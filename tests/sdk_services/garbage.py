"""A deployment that answers discovery wrongly, for the admin's refusal tests (no SDK).

* ``/badjson/discover``: 200 with the manifest content type and a body that is not JSON;
* ``/badtype/discover``: 200 with a manifest-looking body but ``application/json``;
* ``/oldsdk/discover``: a well-formed manifest of protocol versions 1-2 only;
* ``/silent/discover``: never answers;
* anything else: 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from tests.sdk_services.echo import _lifespan as lifespan

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

V4 = b"application/vnd.restate.endpointmanifest.v4+json"
OLD_MANIFEST = json.dumps(
    {"protocolMode": "BIDI_STREAM", "minProtocolVersion": 1, "maxProtocolVersion": 2, "services": []}
).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    path: str = scope["path"]
    if path == "/badjson/discover":
        await _respond(send, 200, V4, b"\x00garbage{")
    elif path == "/badtype/discover":
        await _respond(send, 200, b"application/json", OLD_MANIFEST)
    elif path == "/oldsdk/discover":
        await _respond(send, 200, V4, OLD_MANIFEST)
    elif path == "/silent/discover":
        await asyncio.Event().wait()
    else:
        await _respond(send, 404, b"text/plain", b"no such path")


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})

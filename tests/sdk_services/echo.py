"""A plain ASGI app for transport tests and benchmarks (no SDK).

* ``POST /echo``: response headers at once, then every request body chunk echoed as it
  arrives; the response ends when the request does.
* ``GET|POST /status/{code}``: that status with the body ``status {code}``.
* ``GET|POST /source/{n}``: 200 and ``n`` bytes of response body, without reading the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNK = 64 * 1024


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path: str = scope["path"]
    if path == "/echo":
        await _echo(receive, send)
    elif path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        await _respond(send, code, f"status {code}".encode())
    elif path.startswith("/source/"):
        await _source(send, int(path.rsplit("/", 1)[1]))
    else:
        await _respond(send, 404, b"no such path")


async def _echo(receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if message.get("body"):
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _source(send: Send, size: int) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    block = bytes(range(256)) * (CHUNK // 256)
    while True:
        piece = block[: min(CHUNK, size)]
        size -= len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": size > 0})
        if size <= 0:
            return


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

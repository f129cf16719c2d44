"""Limits on the HTTP listeners (ingress, admin) that aiohttp does not give.

aiohttp bounds neither how many connections a listener holds nor how long a client may take to
send its request head, so a few hundred slow clients can hold sockets (and file descriptors)
for as long as they like. ``GuardedSite`` listens like ``web.TCPSite`` but wraps each of
aiohttp's connection protocols in ``_Guard``:

- at most ``max_connections`` connections per listener; one more is closed at once;
- the first request head (through its blank line) must arrive within ``header_timeout_s`` of
  the connection opening, else the connection is closed. Later requests on a kept-alive
  connection are bounded by aiohttp's ``keepalive_timeout``, which ``start_http_servers`` sets
  to the same value.

Both refusals are counted in ``node.metrics.EDGE`` under the listener's name.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web

HEADER_TIMEOUT_S = 10.0
_HEAD_END = b"\r\n\r\n"


def default_max_connections() -> int:
    """Per listener: a quarter of the process's file descriptors, within [64, 1024]."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    fds = soft if soft != resource.RLIM_INFINITY else 1 << 16
    return max(64, min(1024, fds // 4))


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int
    header_timeout_s: float = HEADER_TIMEOUT_S


class _Listener:
    def __init__(self, limits: HttpLimits, on_refused: Callable[[str], None]) -> None:
        self.limits = limits
        self.on_refused = on_refused
        self.open = 0


class _Guard(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the connection cap and the head timeout."""

    def __init__(self, inner: asyncio.Protocol, listener: _Listener) -> None:
        self._inner = inner
        self._listener = listener
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._passed = False  # admitted under the cap, and handed to aiohttp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        listener = self._listener
        if listener.open >= listener.limits.max_connections:
            listener.on_refused("too-many-connections")
            self._transport.abort()
            return
        listener.open += 1
        self._passed = True
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(listener.limits.header_timeout_s, self._head_expired)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._passed:
            return
        if self._timer is not None:
            seen = self._tail + data
            if _HEAD_END in seen:
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = seen[-(len(_HEAD_END) - 1) :]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._passed else None

    def pause_writing(self) -> None:
        if self._passed:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._passed:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._passed:
            self._passed = False
            self._listener.open -= 1
            self._inner.connection_lost(exc)

    def _head_expired(self) -> None:
        self._timer = None
        self._listener.on_refused("header-timeout")
        if self._transport is not None:
            self._transport.abort()


class GuardedSite(web.BaseSite):
    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: HttpLimits,
        on_refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        super().__init__(runner)
        self._guard_host = host
        self._guard_port = port
        self._listener = _Listener(limits, on_refused)

    @property
    def name(self) -> str:
        return f"http://{self._guard_host}:{self._guard_port}"

    @property
    def open_connections(self) -> int:
        return self._listener.open

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Guard(server(), self._listener),
            self._guard_host,
            self._guard_port,
            reuse_address=True,
        )
        if self._guard_port == 0 and self._server.sockets:
            self._guard_port = self._server.sockets[0].getsockname()[1]

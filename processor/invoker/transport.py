"""HTTP transport from the invoker to user deployments: h2c (prior knowledge) and HTTP/1.1.

Layout: the sans-I/O sessions ``_h2_session`` (over ``h2``, with ``_goaway_filter``) and
``_h1_session`` (over ``h11``) hold the protocol rules and report ``_transport_events``; the
asyncio shells ``_h2_connection`` and ``_h1_connection`` (on ``_conn_base``) own sockets,
waiting and pooling; ``_stream`` is the exchange object the caller holds; this module is the
public face.

* ``Transport.open_stream(endpoint, path, headers)`` opens one invocation attempt: a POST whose
  request body the caller writes with ``send``/``end`` while it reads the response with
  ``response``/``receive`` (full duplex on h2c; on HTTP/1.1 the invoker sends everything, ends,
  then reads). ``Transport.request(...)`` is a one-shot exchange for discovery.
* h2c: one connection per endpoint carrying many streams, never more at once than the
  server's MAX_CONCURRENT_STREAMS (extra openers queue in order). After a GOAWAY the connection
  finishes its remaining streams while new ones go to a new connection.
* HTTP/1.1: a pool per endpoint, one request per connection at a time, kept alive and reused,
  at most ``h1_max_connections`` connections (extra openers queue).
* Bounded: ``send`` waits for the HTTP/2 send window and for the socket buffer to drain; a
  stream's unread response data is bounded by its receive window (h2c), which is handed back
  only as ``receive`` consumes it, or by pausing the socket (HTTP/1.1).
* Failures are the typed exceptions of ``_transport_errors`` (re-exported here). The only
  timer is the connect timeout; every other wait may be cancelled by the caller, leaving the
  stream consistent (a ``send`` cancelled after part of its data went out resets the stream,
  since the peer would see a truncated message).

Use a stream as an async context manager (or call ``reset()``): leaving it unfinished resets
it, which frees its HTTP/2 slot or HTTP/1.1 connection.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from processor.invoker._conn_base import Registry
from processor.invoker._h1_connection import H1Pool
from processor.invoker._h2_connection import H2Pool
from processor.invoker._stream import ResponseHead, Stream, find_header
from processor.invoker._transport_errors import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    NotProcessed,
    ProtocolViolation,
    ResponseTooLarge,
    StreamReset,
    StreamStateError,
    TransportClosed,
    TransportError,
    UnexpectedStatus,
)
from processor.invoker._transport_events import Headers

__all__ = [
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionLost",
    "Endpoint",
    "Headers",
    "HttpVersion",
    "NotProcessed",
    "ProtocolViolation",
    "Response",
    "ResponseHead",
    "ResponseTooLarge",
    "Stream",
    "StreamReset",
    "StreamStateError",
    "Transport",
    "TransportClosed",
    "TransportConfig",
    "TransportError",
    "UnexpectedStatus",
]


class HttpVersion(enum.Enum):
    H2C = "h2c"  # HTTP/2 cleartext with prior knowledge: bidirectional streaming
    HTTP11 = "http/1.1"  # request/response only


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a deployment listens; one connection (h2c) or pool (HTTP/1.1) per distinct value."""

    host: str
    port: int
    http_version: HttpVersion = HttpVersion.H2C

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"http://{self.authority} ({self.http_version.value})"

    @classmethod
    def from_url(cls, url: str, http_version: HttpVersion = HttpVersion.H2C) -> tuple[Endpoint, str]:
        """``http://host:port/prefix`` -> (endpoint, path prefix without a trailing slash)."""
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"deployment URL {url!r}: only http:// is supported (got {parts.scheme!r})")
        if not parts.hostname:
            raise ValueError(f"deployment URL {url!r} has no host")
        return cls(parts.hostname, parts.port or 80, http_version), parts.path.rstrip("/")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes

    def get(self, name: str) -> str | None:
        return find_header(self.headers, name)


@dataclass(frozen=True, slots=True)
class TransportConfig:
    connect_timeout_s: float = 10.0
    # Per-stream receive window: the most response data one stream buffers unread.
    h2_stream_window: int = 1 << 20
    # Connection receive window; handed back on arrival, so it only needs to cover bandwidth-delay.
    h2_connection_window: int = 16 << 20
    # Our own cap on concurrent streams per connection (the server's limit applies as well).
    h2_max_streams: int = 1000
    h1_max_connections: int = 32
    # Unread response bytes per HTTP/1.1 stream before the socket stops being read.
    h1_receive_buffer: int = 1 << 20
    # Largest body ``request`` accepts (discovery manifests are small).
    max_response_bytes: int = 32 << 20
    # How much of a non-200 response body an ``UnexpectedStatus`` carries.
    error_body_bytes: int = 4096


# The transport sets framing and connection headers itself; these would contradict it.
_RESERVED_HEADERS = frozenset(
    {
        b"connection",
        b"content-length",
        b"host",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
    }
)
_METHOD = re.compile(r"[A-Z]+")
_PATH = re.compile(r"/[!-~]*")  # visible ASCII, no spaces or controls
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Lowercase, latin-1, checked once here for both HTTP versions (h2's own per-request
    validation is off: it costs more than building the frames)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        try:
            raw_name, raw_value = name.lower().encode("latin-1"), value.encode("latin-1")
        except UnicodeEncodeError as e:
            raise ValueError(f"HTTP header {name!r}: names and values must be latin-1") from e
        if not _HEADER_NAME.fullmatch(raw_name) or _BAD_VALUE.search(raw_value):
            raise ValueError(f"HTTP header {name!r}: invalid name or a CR, LF or NUL in its value")
        if raw_name in _RESERVED_HEADERS:
            raise ValueError(f"HTTP header {name!r} is set by the transport itself")
        out.append((raw_name, raw_value))
    return out


class Transport:
    """HTTP client for invocation streams and discovery; ``close()`` it (or use ``async with``)."""

    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config or TransportConfig()
        self._registry = Registry(self.config)
        self._h2_pools: dict[Endpoint, H2Pool] = {}
        self._h1_pools: dict[Endpoint, H1Pool] = {}

    @property
    def connections_opened(self) -> int:
        return self._registry.connections_opened

    @property
    def open_connections(self) -> int:
        return len(self._registry.connections)

    @property
    def open_streams(self) -> int:
        """Streams holding an HTTP/2 slot or an HTTP/1.1 connection right now."""
        return sum(conn.live_streams for conn in self._registry.connections)

    @property
    def waiting_openers(self) -> int:
        """Openers queued at a server's stream limit or the HTTP/1.1 pool cap."""
        return sum(pool.waiting for pool in [*self._h2_pools.values(), *self._h1_pools.values()])

    async def open_stream(
        self,
        endpoint: Endpoint,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        method: str = "POST",
        expect_status: int | None = 200,
    ) -> Stream:
        """Open a streaming exchange; the request body stays open until ``Stream.end()``.

        Waits for a connection and, at the server's stream limit or the HTTP/1.1 pool cap, for
        a turn (first come, first served)."""
        return await self._open(endpoint, method, path, headers, None, expect_status)

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        """One whole exchange with a buffered body; any status is returned, not raised."""
        stream = await self._open(endpoint, method, path, headers, len(body), None)
        async with stream:
            if body:
                await stream.send(body)
            await stream.end()
            head = await stream.response()
            body_out = bytearray()
            while (chunk := await stream.receive()) is not None:
                body_out += chunk
                if len(body_out) > self.config.max_response_bytes:
                    raise ResponseTooLarge(
                        f"{method} {path} at {endpoint}: body over {self.config.max_response_bytes} bytes"
                    )
        return Response(head.status, head.headers, bytes(body_out))

    async def close(self) -> None:
        """Fail every open stream with ``TransportClosed`` and close every connection."""
        if self._registry.closed:
            return
        self._registry.closed = True
        error = TransportClosed("transport closed")
        for pool in [*self._h2_pools.values(), *self._h1_pools.values()]:
            pool.close()
        conns = list(self._registry.connections)
        for conn in conns:
            conn.close(error)
        if conns:
            await asyncio.gather(*(asyncio.shield(c.closed) for c in conns))

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _open(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        body_length: int | None,
        expect_status: int | None,
    ) -> Stream:
        self._registry.check_open()
        if not _METHOD.fullmatch(method) or not _PATH.fullmatch(path):
            raise ValueError(f"invalid request line {method!r} {path!r}: a token method and an absolute path")
        raw = _encode_headers(headers)
        if endpoint.http_version is HttpVersion.H2C:
            h2_pool = self._h2_pools.get(endpoint)
            if h2_pool is None:
                h2_pool = self._h2_pools[endpoint] = H2Pool(self._registry, endpoint)
            return await h2_pool.open_stream(method, path, raw, body_length == 0, expect_status)
        h1_pool = self._h1_pools.get(endpoint)
        if h1_pool is None:
            h1_pool = self._h1_pools[endpoint] = H1Pool(self._registry, endpoint)
        conn = await h1_pool.acquire()
        try:
            return conn.open_stream(method, path, raw, body_length, expect_status)
        except BaseException:
            conn.close(ConnectionLost("the request could not be started"))  # h11 is in ERROR now
            raise

"""HTTP transport from the invoker to user deployments: h2c (prior knowledge) and HTTP/1.1.

An asyncio shell around two sans-I/O sessions (``_h2_session`` over ``h2``, ``_h1_session``
over ``h11``); the protocol rules live there, the sockets, waiting and pooling here.

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
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from processor.invoker._h1_session import H1ClientSession
from processor.invoker._h2_session import H2ClientSession
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
from processor.invoker._transport_events import (
    DataReceived,
    GoingAway,
    Headers,
    HeadReceived,
    SendWindowOpened,
    SessionEvent,
    StreamEnded,
    StreamFailed,
)

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
class ResponseHead:
    status: int
    headers: Headers

    def get(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes

    def get(self, name: str) -> str | None:
        return _header(self.headers, name)


def _header(headers: Headers, name: str) -> str | None:
    name = name.lower()
    for key, value in headers:
        if key == name:
            return value
    return None


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


class _Channel(Protocol):
    """What a stream needs from its connection."""

    async def send(self, stream: Stream, data: bytes) -> None: ...

    def end(self, stream: Stream) -> None: ...

    def reset(self, stream: Stream) -> None: ...

    def consumed(self, stream: Stream, size: int) -> None: ...


class Stream:
    """One request/response exchange (one invocation attempt).

    ``send``/``end`` write the request body; ``response()`` waits for the status and headers
    (raising ``UnexpectedStatus`` when the status is not the expected one); ``receive()``
    returns the next response body chunk, or None at the end. One task may read while another
    writes. Data received before a failure is still returned before the failure is raised.
    """

    def __init__(
        self, channel: _Channel, stream_id: int, expect_status: int | None, error_body_bytes: int
    ) -> None:
        self._channel = channel
        self.stream_id = stream_id
        self._expect_status = expect_status
        self._error_body_bytes = error_body_bytes
        self._head: ResponseHead | None = None
        self._status_error: UnexpectedStatus | None = None
        self._chunks: deque[bytes] = deque()
        self.buffered = 0
        self._ended = False  # response complete
        self._error: TransportError | None = None
        self._local_done = False  # request ended, or stream reset by us
        self._cancelled = False
        self._reader: asyncio.Future[None] | None = None
        self._sender: asyncio.Future[None] | None = None

    # -- reading -------------------------------------------------------------------------------

    @property
    def head(self) -> ResponseHead | None:
        """The response status and headers, once they arrived."""
        return self._head

    @property
    def finished(self) -> bool:
        """Nothing more can happen on this stream in either direction."""
        return self._cancelled or (self._local_done and self._ended) or self._error is not None

    async def response(self) -> ResponseHead:
        if self._status_error is not None:
            raise self._status_error
        while self._head is None:
            self._check_cancelled()
            if self._error is not None:
                raise self._error
            if self._ended:
                raise ProtocolViolation(f"stream {self.stream_id} ended without a response")
            await self._wait_readable()
        head = self._head
        if self._expect_status is not None and head.status != self._expect_status:
            body = await self._error_body()
            self._status_error = UnexpectedStatus(head.status, head.headers, body)
            self.reset()
            raise self._status_error
        return head

    async def receive(self) -> bytes | None:
        """The next chunk of the response body as it arrived; None once the response ended."""
        if self._head is None or self._status_error is not None or self._expect_status is not None:
            await self.response()
        return await self._next_chunk()

    async def _next_chunk(self) -> bytes | None:
        while True:
            self._check_cancelled()
            if self._chunks:
                data = self._chunks.popleft()
                self.buffered -= len(data)
                self._channel.consumed(self, len(data))
                return data
            if self._ended:
                return None
            if self._error is not None:
                raise self._error
            await self._wait_readable()

    async def _error_body(self) -> bytes:
        body = bytearray()
        try:
            while len(body) < self._error_body_bytes and (chunk := await self._next_chunk()) is not None:
                body += chunk
        except TransportError:
            pass
        return bytes(body[: self._error_body_bytes])

    async def _wait_readable(self) -> None:
        if self._reader is not None:
            raise StreamStateError(f"stream {self.stream_id} already has a reader")
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await self._reader
        finally:
            self._reader = None

    # -- writing -------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write request body bytes; waits for flow-control window and socket buffer room."""
        self.check_can_send()
        if data:
            await self._channel.send(self, data)

    async def end(self) -> None:
        """Half-close: the request body is complete. A no-op once the stream can send no more."""
        if not self._local_done and self._error is None:
            self._local_done = True
            self._channel.end(self)

    def reset(self) -> None:
        """Cancel the exchange (RST_STREAM CANCEL on h2c, closing the connection on HTTP/1.1)."""
        if self._cancelled:
            return
        self._cancelled = True
        self._local_done = True
        self._chunks.clear()
        self.buffered = 0
        self._channel.reset(self)
        self._wake()

    def check_can_send(self) -> None:
        self._check_cancelled()
        if self._error is not None:
            raise self._error
        if self._local_done:
            raise StreamStateError(f"stream {self.stream_id}: the request body was already ended")

    def _check_cancelled(self) -> None:
        if self._cancelled:
            raise StreamStateError(f"stream {self.stream_id} was reset by the caller")

    async def wait_send_window(self) -> None:
        self._sender = asyncio.get_running_loop().create_future()
        try:
            await self._sender
        finally:
            self._sender = None

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not (self._local_done and self._ended):
            self.reset()

    # -- from the connection -------------------------------------------------------------------

    def on_head(self, status: int, headers: Headers) -> None:
        self._head = ResponseHead(status, headers)
        self._wake_reader()

    def on_data(self, data: bytes) -> None:
        if not self._cancelled:
            self._chunks.append(data)
            self.buffered += len(data)
            self._wake_reader()

    def on_end(self) -> None:
        self._ended = True
        self._wake_reader()

    def on_fail(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def wake_sender(self) -> None:
        if self._sender is not None and not self._sender.done():
            self._sender.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _wake(self) -> None:
        self._wake_reader()
        self.wake_sender()


class _Waiters:
    """A FIFO of tasks waiting for a slot; a woken task that cannot use its turn goes back to the front."""

    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[None]] = deque()

    def __bool__(self) -> bool:
        return bool(self._queue)

    async def wait(self, front: bool) -> None:
        fut = asyncio.get_running_loop().create_future()
        if front:
            self._queue.appendleft(fut)
        else:
            self._queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                self._queue.remove(fut)
            else:  # woken, then cancelled before using the turn: pass it on
                self.wake(1)
            raise

    def wake(self, count: int) -> None:
        while count > 0 and self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
                count -= 1

    def wake_all(self) -> None:
        self.wake(len(self._queue))


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    try:
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    except UnicodeEncodeError as e:
        raise ValueError(f"HTTP header names and values must be latin-1: {e}") from e


# -- HTTP/2 ------------------------------------------------------------------------------------


class _H2Connection(asyncio.Protocol):
    def __init__(self, owner: Transport, pool: _H2Pool) -> None:
        config = owner.config
        self._owner = owner
        self._pool = pool
        self._session = H2ClientSession(
            pool.endpoint.authority,
            stream_window=config.h2_stream_window,
            connection_window=config.h2_connection_window,
            max_streams=config.h2_max_streams,
        )
        self._error_body_bytes = config.error_body_bytes
        self._streams: dict[int, Stream] = {}
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def usable(self) -> bool:
        return self._session.usable and self._transport is not None and not self._transport.is_closing()

    @property
    def can_open(self) -> bool:
        return self.usable and self._session.can_open

    def open_stream(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool,
        expect_status: int | None,
    ) -> Stream:
        sid = self._session.open(method, path, headers, end_stream)
        stream = Stream(self, sid, expect_status, self._error_body_bytes)
        if end_stream:
            stream._local_done = True
        self._streams[sid] = stream
        self._flush()
        return stream

    async def wait_ready(self) -> None:
        await self._ready

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._owner._connection_made(self)
        self._session.initiate()
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._dispatch(self._session.receive_data(data))
        self._flush()
        if not self._ready.done():
            if self._session.failure is not None:
                self._ready.set_exception(
                    ConnectFailed(
                        f"{self._pool.endpoint} did not answer as an HTTP/2 server "
                        f"({self._session.failure}); register it with HTTP/1.1 if it is not h2c"
                    )
                )
                self._ready.exception()  # read by the connector if it still waits
            elif self._session.ready:
                self._ready.set_result(None)
        self._close_if_finished()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        endpoint = self._pool.endpoint
        reason = f"connection to {endpoint} lost: {exc}" if exc else f"{endpoint} closed the connection"
        self._dispatch(self._session.connection_lost(reason))
        if not self._ready.done():
            self._ready.set_exception(ConnectFailed(f"{reason} before its HTTP/2 SETTINGS (is it h2c?)"))
            self._ready.exception()  # the connector may have given up already; nobody else reads it
        self._writable.set()
        self._pool.forget(self)
        self._owner._connection_gone(self)
        self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # stream channel

    async def send(self, stream: Stream, data: bytes) -> None:
        view = memoryview(data)
        total = len(view)
        sent = 0
        try:
            while sent < total:
                stream.check_can_send()
                window = self._session.send_window(stream.stream_id)
                if window <= 0:
                    await stream.wait_send_window()
                    continue
                size = min(window, total - sent)
                self._session.send_data(stream.stream_id, view[sent : sent + size])
                sent += size
                self._flush()
                if not self._writable.is_set():
                    await self._writable.wait()
        except asyncio.CancelledError:
            if 0 < sent < total:
                stream.reset()
            raise

    def end(self, stream: Stream) -> None:
        self._session.end(stream.stream_id)
        self._flush()
        self._retire(stream.stream_id)

    def reset(self, stream: Stream) -> None:
        self._session.reset(stream.stream_id)
        self._flush()
        self._retire(stream.stream_id)

    def consumed(self, stream: Stream, size: int) -> None:
        self._session.consumed(stream.stream_id, size)
        self._flush()

    def abort(self, error: TransportError) -> None:
        """Give up on the connection: fail its streams and drop the socket."""
        self._dispatch(self._session.fail(error))
        if self._transport is not None:
            self._transport.abort()

    def close(self, error: TransportError) -> None:
        """Client shutdown: fail the streams, say GOAWAY, close the socket."""
        self._session.close()
        self._flush()
        self._dispatch(self._session.fail(error))
        if self._transport is not None:
            if self._transport.get_write_buffer_size():
                self._transport.abort()
            else:
                self._transport.close()

    # internals

    def _flush(self) -> None:
        data = self._session.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _dispatch(self, events: list[SessionEvent]) -> None:
        for event in events:
            if isinstance(event, DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.on_data(event.data)
            elif isinstance(event, HeadReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.on_head(event.status, event.headers)
            elif isinstance(event, StreamEnded):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.on_end()
                    self._retire(event.stream_id)
            elif isinstance(event, StreamFailed):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.on_fail(event.error)
                    self._retire(event.stream_id)
            elif isinstance(event, SendWindowOpened):
                if event.stream_id is None:
                    for stream in self._streams.values():
                        stream.wake_sender()
                elif (stream := self._streams.get(event.stream_id)) is not None:
                    stream.wake_sender()
            elif isinstance(event, GoingAway):
                self._pool.forget(self)
        if self._session.can_open:
            self._pool.slots_available()

    def _retire(self, stream_id: int) -> None:
        if not self._session.is_live(stream_id) and self._streams.pop(stream_id, None) is not None:
            self._pool.slots_available()
            self._close_if_finished()

    def _close_if_finished(self) -> None:
        if self._session.finished and self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.close()


class _H2Pool:
    """The one h2c connection of an endpoint (plus the ones still finishing after a GOAWAY)."""

    def __init__(self, owner: Transport, endpoint: Endpoint) -> None:
        self._owner = owner
        self.endpoint = endpoint
        self._active: _H2Connection | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiters = _Waiters()

    async def open_stream(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool,
        expect_status: int | None,
    ) -> Stream:
        woken = False
        while True:
            self._owner._check_open()
            conn = self._active
            if conn is not None and conn.usable:
                if conn.can_open and (woken or not self._waiters):
                    return conn.open_stream(method, path, headers, end_stream, expect_status)
                await self._waiters.wait(front=woken)
                woken = True
            else:
                await self._connect()
                woken = False

    async def _connect(self) -> None:
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            return
        fut = asyncio.get_running_loop().create_future()
        self._connecting = fut
        try:
            conn = await self._owner._connect(self.endpoint, lambda: _H2Connection(self._owner, self))
        except TransportError as e:
            fut.set_exception(e)
            fut.exception()
            raise
        except BaseException:
            fut.set_result(None)  # cancelled: a waiting opener connects instead
            raise
        finally:
            self._connecting = None
        self._active = conn
        fut.set_result(None)

    def forget(self, conn: _H2Connection) -> None:
        """The connection takes no new streams (GOAWAY, lost): openers move to a new one."""
        if self._active is conn:
            self._active = None
            self._waiters.wake_all()

    def slots_available(self) -> None:
        if self._waiters:
            self._waiters.wake(1)

    def close(self) -> None:
        self._waiters.wake_all()


# -- HTTP/1.1 ----------------------------------------------------------------------------------


class _H1Connection(asyncio.Protocol):
    def __init__(self, owner: Transport, pool: _H1Pool) -> None:
        self._owner = owner
        self._pool = pool
        self._session = H1ClientSession(pool.endpoint.authority)
        self._buffer_limit = owner.config.h1_receive_buffer
        self._error_body_bytes = owner.config.error_body_bytes
        self._stream: Stream | None = None
        self._transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def alive(self) -> bool:
        return not self._session.closed and self._transport is not None and not self._transport.is_closing()

    def open_stream(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body_length: int | None,
        expect_status: int | None,
    ) -> Stream:
        sid = self._session.start(method, path, headers, body_length)
        self._stream = Stream(self, sid, expect_status, self._error_body_bytes)
        self._flush()
        return self._stream

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._owner._connection_made(self)

    def data_received(self, data: bytes) -> None:
        self._dispatch(self._session.receive_data(data))
        stream = self._stream
        if stream is not None and stream.buffered > self._buffer_limit and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        self._dispatch(self._session.receive_data(b""))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        endpoint = self._pool.endpoint
        reason = f"connection to {endpoint} lost: {exc}" if exc else f"{endpoint} closed the connection"
        self._dispatch(self._session.connection_lost(reason))
        self._writable.set()
        self._pool.discard(self)
        self._owner._connection_gone(self)
        self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # stream channel

    async def send(self, stream: Stream, data: bytes) -> None:
        self._session.send_data(data)
        self._flush()
        if not self._writable.is_set():
            await self._writable.wait()
            stream.check_can_send()

    def end(self, stream: Stream) -> None:
        self._session.end()
        self._flush()
        self._release_if_done()

    def reset(self, stream: Stream) -> None:
        if self._stream is stream:
            self._stream = None
            if self._transport is not None:
                self._transport.abort()

    def consumed(self, stream: Stream, size: int) -> None:
        if self._reading_paused and stream.buffered <= self._buffer_limit // 2:
            self._reading_paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    def close(self, error: TransportError) -> None:
        if self._stream is not None:
            self._stream.on_fail(error)
            self._stream = None
        if self._transport is not None:
            self._transport.abort()

    abort = close

    # internals

    def _flush(self) -> None:
        data = self._session.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _dispatch(self, events: list[SessionEvent]) -> None:
        stream = self._stream
        for event in events:
            if stream is None:
                break
            if isinstance(event, DataReceived):
                stream.on_data(event.data)
            elif isinstance(event, HeadReceived):
                stream.on_head(event.status, event.headers)
            elif isinstance(event, StreamEnded):
                stream.on_end()
            elif isinstance(event, StreamFailed):
                stream.on_fail(event.error)
        self._release_if_done()
        if self._session.closed and self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _release_if_done(self) -> None:
        if self._stream is None or not self._session.cycle_done:
            return
        self._stream = None
        if self._reading_paused:  # the stream keeps its chunks; the socket is free again
            self._reading_paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
        if self._session.reusable and self.alive:
            self._session.next_cycle()
            self._pool.release(self)
        elif self._transport is not None:
            self._transport.close()


class _H1Pool:
    def __init__(self, owner: Transport, endpoint: Endpoint) -> None:
        self._owner = owner
        self.endpoint = endpoint
        self._idle: list[_H1Connection] = []
        self._members: set[_H1Connection] = set()
        self._connecting = 0
        self._waiters = _Waiters()

    async def acquire(self) -> _H1Connection:
        woken = False
        while True:
            self._owner._check_open()
            while self._idle:
                conn = self._idle.pop()
                if conn.alive:
                    return conn
            total = len(self._members) + self._connecting
            if total < self._owner.config.h1_max_connections and (woken or not self._waiters):
                return await self._connect()
            await self._waiters.wait(front=woken)
            woken = True

    async def _connect(self) -> _H1Connection:
        self._connecting += 1
        try:
            conn = await self._owner._connect(self.endpoint, lambda: _H1Connection(self._owner, self))
        finally:
            self._connecting -= 1
            self._waiters.wake(1)  # on failure a waiter may try; on success it finds the pool as before
        self._members.add(conn)
        return conn

    def release(self, conn: _H1Connection) -> None:
        if conn in self._members:
            self._idle.append(conn)
            self._waiters.wake(1)

    def discard(self, conn: _H1Connection) -> None:
        if conn in self._members:
            self._members.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._waiters.wake(1)

    def close(self) -> None:
        self._waiters.wake_all()


_Conn = TypeVar("_Conn", _H2Connection, _H1Connection)


# -- the client --------------------------------------------------------------------------------


class Transport:
    """HTTP client for invocation streams and discovery; ``close()`` it (or use ``async with``)."""

    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config or TransportConfig()
        self._h2_pools: dict[Endpoint, _H2Pool] = {}
        self._h1_pools: dict[Endpoint, _H1Pool] = {}
        self._connections: set[_H2Connection | _H1Connection] = set()
        self._closed = False
        self.connections_opened = 0

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def open_stream(
        self,
        endpoint: Endpoint,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        method: str = "POST",
        expect_status: int | None = 200,
    ) -> Stream:
        """Open a streaming exchange; the request body stays open until ``Stream.end()``."""
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
        if self._closed:
            return
        self._closed = True
        error = TransportClosed("transport closed")
        for pool in [*self._h2_pools.values(), *self._h1_pools.values()]:
            pool.close()
        conns = list(self._connections)
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

    # internals

    async def _open(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        body_length: int | None,
        expect_status: int | None,
    ) -> Stream:
        self._check_open()
        raw = _encode_headers(headers)
        if endpoint.http_version is HttpVersion.H2C:
            h2_pool = self._h2_pools.get(endpoint)
            if h2_pool is None:
                h2_pool = self._h2_pools[endpoint] = _H2Pool(self, endpoint)
            return await h2_pool.open_stream(method, path, raw, body_length == 0, expect_status)
        h1_pool = self._h1_pools.get(endpoint)
        if h1_pool is None:
            h1_pool = self._h1_pools[endpoint] = _H1Pool(self, endpoint)
        conn = await h1_pool.acquire()
        try:
            return conn.open_stream(method, path, raw, body_length, expect_status)
        except BaseException:
            h1_pool.release(conn)
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("transport closed")

    async def _connect(self, endpoint: Endpoint, factory: Callable[[], _Conn]) -> _Conn:
        """TCP connect, then (h2c) wait for the server's SETTINGS, all within the connect timeout."""
        loop = asyncio.get_running_loop()
        conn: _Conn | None = None
        timeout = self.config.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                try:
                    _, conn = await loop.create_connection(factory, endpoint.host, endpoint.port)
                except OSError as e:
                    raise ConnectFailed(f"cannot connect to {endpoint}: {e}") from e
                if isinstance(conn, _H2Connection):
                    await conn.wait_ready()
        except TimeoutError as e:
            if conn is not None:
                conn.abort(ConnectTimeout(f"connecting to {endpoint} took over {timeout}s"))
            raise ConnectTimeout(f"connecting to {endpoint} took over {timeout}s") from e
        except BaseException:
            if conn is not None:
                conn.abort(ConnectFailed(f"connecting to {endpoint} was abandoned"))
            raise
        return conn

    def _connection_made(self, conn: _H2Connection | _H1Connection) -> None:
        self._connections.add(conn)
        self.connections_opened += 1

    def _connection_gone(self, conn: _H2Connection | _H1Connection) -> None:
        self._connections.discard(conn)

"""HTTP/1.1: the asyncio shell around ``H1ClientSession``, and the capped keep-alive pool of an endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.invoker._conn_base import Connection, Registry, Waiters, connect
from processor.invoker._h1_session import H1ClientSession
from processor.invoker._stream import Stream
from processor.invoker._transport_errors import TransportError
from processor.invoker._transport_events import STREAM_EVENTS, SessionEvent

if TYPE_CHECKING:
    from processor.invoker.transport import Endpoint

RawHeaders = list[tuple[bytes, bytes]]


class H1Connection(Connection):
    """One request at a time; unread response data beyond ``h1_receive_buffer`` pauses the socket."""

    def __init__(self, registry: Registry, pool: H1Pool) -> None:
        super().__init__(registry, pool.endpoint)
        self._pool = pool
        self._session = H1ClientSession(pool.endpoint.authority)
        self._buffer_limit = registry.config.h1_receive_buffer
        self._error_body_bytes = registry.config.error_body_bytes
        self._stream: Stream | None = None
        self._reading_paused = False

    @property
    def live_streams(self) -> int:
        return 0 if self._stream is None else 1

    @property
    def alive(self) -> bool:
        return not self._session.closed and self.open

    def data_to_send(self) -> bytes:
        return self._session.data_to_send()

    def open_stream(
        self, method: str, path: str, headers: RawHeaders, body_length: int | None, expect_status: int | None
    ) -> Stream:
        sid = self._session.start(method, path, headers, body_length)
        self._stream = Stream(self, sid, expect_status, self._error_body_bytes)
        self.write_soon()
        return self._stream

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._dispatch(self._session.receive_data(data))
        stream = self._stream
        if stream is not None and stream.buffered > self._buffer_limit and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._dispatch(self._session.receive_data(b""))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._dispatch(self._session.connection_lost(self.lost_reason(exc)))
        self._pool.discard(self)
        super().connection_lost(exc)

    # stream channel

    async def send(self, stream: Stream, data: bytes) -> None:
        if self.write_blocked:
            self.flush()
            await self.drained()
            stream.check_can_send()
        self._session.send_data(data)
        self.write_soon()

    def end(self, stream: Stream) -> None:
        self._session.end()
        self.write_soon()
        self._release_if_done()

    def reset(self, stream: Stream) -> None:
        if self._stream is stream:  # an HTTP/1.1 exchange can only be cancelled with its connection
            self._stream = None
            if self.transport is not None:
                self.transport.abort()

    def consumed(self, stream: Stream, size: int) -> None:
        if self._reading_paused and stream.buffered <= self._buffer_limit // 2:
            self._resume_reading()

    def close(self, error: TransportError) -> None:
        if self._stream is not None:
            self._stream.on_fail(error)
            self._stream = None
        if self.transport is not None:
            self.transport.abort()

    # internals

    def _dispatch(self, events: list[SessionEvent]) -> None:
        stream = self._stream
        if stream is not None:
            for event in events:
                if isinstance(event, STREAM_EVENTS):
                    stream.on_event(event)
            self._release_if_done()
        if self._session.closed and self.open:
            self.close_socket()

    def _release_if_done(self) -> None:
        if self._stream is None or not self._session.cycle_done:
            return
        self._stream = None  # it keeps its unread chunks; the connection is free again
        if self._reading_paused:
            self._resume_reading()
        if self._session.reusable and self.alive:
            self._session.next_cycle()
            self._pool.release(self)
        else:
            self.close_socket()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self.open:
            assert self.transport is not None
            self.transport.resume_reading()


class H1Pool:
    def __init__(self, registry: Registry, endpoint: Endpoint) -> None:
        self._registry = registry
        self.endpoint = endpoint
        self._idle: list[H1Connection] = []
        self._members: set[H1Connection] = set()
        self._connecting = 0
        self._waiters = Waiters()

    async def acquire(self) -> H1Connection:
        """An idle kept-alive connection, a new one under the cap, or a turn in the queue."""
        woken = False
        while True:
            self._registry.check_open()
            while self._idle:
                conn = self._idle.pop()
                if conn.alive:
                    return conn
            total = len(self._members) + self._connecting
            if total < self._registry.config.h1_max_connections and (woken or not self._waiters):
                return await self._connect()
            await self._waiters.wait(front=woken)
            woken = True

    async def _connect(self) -> H1Connection:
        self._connecting += 1
        try:
            conn = await connect(
                self.endpoint,
                lambda: H1Connection(self._registry, self),
                self._registry.config.connect_timeout_s,
            )
        except BaseException:
            self._waiters.wake(1)  # the slot this attempt held is free again
            raise
        finally:
            self._connecting -= 1
        self._members.add(conn)
        return conn

    def release(self, conn: H1Connection) -> None:
        if conn in self._members:
            self._idle.append(conn)
            self._waiters.wake(1)

    def discard(self, conn: H1Connection) -> None:
        if conn in self._members:
            self._members.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._waiters.wake(1)

    @property
    def waiting(self) -> int:
        """Openers queued for a stream slot or a connection."""
        return len(self._waiters)

    def close(self) -> None:
        self._waiters.wake_all()

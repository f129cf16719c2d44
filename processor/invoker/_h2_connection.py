"""h2c: the asyncio shell around ``H2ClientSession``, and the one-connection pool of an endpoint."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from processor.invoker._conn_base import Connection, Registry, Waiters, connect
from processor.invoker._h2_session import H2ClientSession
from processor.invoker._stream import Stream
from processor.invoker._transport_errors import ConnectFailed, TransportError
from processor.invoker._transport_events import STREAM_EVENTS, GoingAway, SendWindowOpened, SessionEvent

if TYPE_CHECKING:
    from processor.invoker.transport import Endpoint

RawHeaders = list[tuple[bytes, bytes]]


class H2Connection(Connection):
    def __init__(self, registry: Registry, pool: H2Pool) -> None:
        super().__init__(registry, pool.endpoint)
        config = registry.config
        self._pool = pool
        self._session = H2ClientSession(
            pool.endpoint.authority,
            stream_window=config.h2_stream_window,
            connection_window=config.h2_connection_window,
            max_streams=config.h2_max_streams,
        )
        self._error_body_bytes = config.error_body_bytes
        self._streams: dict[int, Stream] = {}
        self.ready: asyncio.Future[None] = self._loop.create_future()

    @property
    def live_streams(self) -> int:
        return self._session.live_streams

    @property
    def usable(self) -> bool:
        return self._session.usable and self.open

    @property
    def can_open(self) -> bool:
        return self.open and self._session.can_open

    def data_to_send(self) -> bytes:
        return self._session.data_to_send()

    def open_stream(
        self, method: str, path: str, headers: RawHeaders, end_stream: bool, expect_status: int | None
    ) -> Stream:
        sid = self._session.open(method, path, headers, end_stream)
        stream = Stream(self, sid, expect_status, self._error_body_bytes, request_ended=end_stream)
        self._streams[sid] = stream
        self.write_soon()
        return stream

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._session.initiate()
        self.flush()

    def data_received(self, data: bytes) -> None:
        self._dispatch(self._session.receive_data(data))
        self.flush()
        if not self.ready.done():
            if self._session.failure is not None:
                self.ready.set_exception(
                    ConnectFailed(
                        f"{self.endpoint} did not answer as an HTTP/2 server ({self._session.failure}); "
                        "register it with HTTP/1.1 if it is not h2c"
                    )
                )
                self.ready.exception()  # read by the connector if it still waits
            elif self._session.ready:
                self.ready.set_result(None)
        self._close_if_finished()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.lost_reason(exc)
        self._dispatch(self._session.connection_lost(reason))
        if not self.ready.done():
            self.ready.set_exception(
                ConnectFailed(
                    f"{reason} before its HTTP/2 SETTINGS: it does not seem to speak h2c with prior "
                    "knowledge (register it with HTTP/1.1 if it is HTTP/1.1-only)"
                )
            )
            self.ready.exception()
        self._pool.forget(self)
        super().connection_lost(exc)

    # stream channel

    async def send(self, stream: Stream, data: bytes) -> None:
        view = memoryview(data)
        total = len(view)
        sent = 0
        try:
            while sent < total:
                stream.check_can_send()
                if self.write_blocked:
                    await self.drained()
                    continue
                window = self._session.send_window(stream.stream_id)
                if window <= 0:
                    self.flush()
                    await stream.wait_send_window()
                    continue
                size = min(window, total - sent)
                self._session.send_data(stream.stream_id, view[sent : sent + size])
                sent += size
                if sent < total:  # a large body goes out frame by frame, at the socket's pace
                    self.flush()
                else:
                    self.write_soon()
        except asyncio.CancelledError:
            if 0 < sent < total:
                stream.reset()
            raise

    def end(self, stream: Stream) -> None:
        self._session.end(stream.stream_id)
        self.write_soon()
        self._retire(stream.stream_id)

    def reset(self, stream: Stream) -> None:
        self._session.reset(stream.stream_id)
        self.write_soon()
        self._retire(stream.stream_id)

    def consumed(self, stream: Stream, size: int) -> None:
        self._session.consumed(stream.stream_id, size)
        self.write_soon()

    def close(self, error: TransportError) -> None:
        """Client shutdown or a failed connect: GOAWAY, fail the streams, close the socket."""
        self._session.close()
        self._dispatch(self._session.fail(error))
        self._pool.forget(self)
        self.close_socket()

    # internals

    def _dispatch(self, events: list[SessionEvent]) -> None:
        streams = self._streams
        for event in events:
            if isinstance(event, STREAM_EVENTS):
                if (stream := streams.get(event.stream_id)) is not None and stream.on_event(event):
                    self._retire(event.stream_id)
            elif isinstance(event, SendWindowOpened):
                if event.stream_id is None:
                    for stream in streams.values():
                        stream.wake_sender()
                elif (stream := streams.get(event.stream_id)) is not None:
                    stream.wake_sender()
            elif isinstance(event, GoingAway):
                self._pool.forget(self)
        if self._pool.waiting and self._session.can_open:  # e.g. the server raised its stream limit
            self._pool.slots_available()

    def _retire(self, stream_id: int) -> None:
        if not self._session.is_live(stream_id) and self._streams.pop(stream_id, None) is not None:
            self._pool.slots_available()
            self._close_if_finished()

    def _close_if_finished(self) -> None:
        if self._session.finished and self.open:
            self.close_socket()


class H2Pool:
    """The one h2c connection of an endpoint (plus any still finishing streams after a GOAWAY)."""

    def __init__(self, registry: Registry, endpoint: Endpoint) -> None:
        self._registry = registry
        self.endpoint = endpoint
        self._active: H2Connection | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiters = Waiters()

    async def open_stream(
        self, method: str, path: str, headers: RawHeaders, end_stream: bool, expect_status: int | None
    ) -> Stream:
        woken = False
        while True:
            self._registry.check_open()
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
        """Connect, or wait for the opener already connecting; its failure is ours too."""
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            return
        fut = asyncio.get_running_loop().create_future()
        self._connecting = fut
        try:
            conn = await connect(
                self.endpoint,
                lambda: H2Connection(self._registry, self),
                self._registry.config.connect_timeout_s,
                ready=lambda c: c.ready,
            )
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
        self._waiters.wake_all()  # openers queued on a connection this one replaces

    def forget(self, conn: H2Connection) -> None:
        """The connection takes no new streams (GOAWAY, lost, closed): openers move to a new one."""
        if self._active is conn:
            self._active = None
            self._waiters.wake_all()

    def slots_available(self) -> None:
        if self._waiters:
            self._waiters.wake(1)

    @property
    def waiting(self) -> int:
        """Openers queued for a stream slot or a connection."""
        return len(self._waiters)

    def close(self) -> None:
        self._waiters.wake_all()

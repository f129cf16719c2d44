"""The client side of one HTTP/2 cleartext connection, sans I/O: ``h2`` plus the rules the invoker needs.

Inputs are method calls (``open``, ``send_data``, ``end``, ``reset``, ``consumed``,
``receive_data``, ``connection_lost``); outputs are ``SessionEvent``s and the bytes from
``data_to_send()``. What it adds to ``h2``:

* GOAWAY handled here (see ``_goaway_filter``): streams above the last stream id fail as
  ``NotProcessed``, the rest may finish; no new streams; then a PING, because a server that can
  no longer speak on the connection (hypercorn: every frame after its GOAWAY is a protocol
  error to it) then closes it at once instead of after its idle timeout.
* Receive windows: a stream's window is handed back only as the consumer reads
  (``consumed``), so each stream buffers at most ``stream_window`` bytes; the connection window
  is handed back on arrival, so one slow reader never stalls the other streams.
* The count of live streams, so the shell opens no more than the server's
  MAX_CONCURRENT_STREAMS (hypercorn treats one more as a connection error).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from processor.invoker._goaway_filter import GoAwayFilter, GoAwayFrame
from processor.invoker._transport_errors import (
    ConnectionLost,
    NotProcessed,
    ProtocolViolation,
    StreamReset,
    StreamStateError,
    TransportError,
)
from processor.invoker._transport_events import (
    DataReceived,
    GoingAway,
    HeadReceived,
    SendWindowOpened,
    SessionEvent,
    StreamEnded,
    StreamFailed,
)

CANCEL = int(h2.errors.ErrorCodes.CANCEL)
REFUSED_STREAM = int(h2.errors.ErrorCodes.REFUSED_STREAM)
NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
DEFAULT_WINDOW = 65_535
# Stream ids are 31-bit and odd for the client; leave room so an id is never refused for exhaustion.
LAST_USABLE_STREAM_ID = 2**31 - 1 - 2 * 1024
GOAWAY_PROBE = b"goaway?!"


def error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


class _StreamState:
    __slots__ = ("local_done", "remote_done", "unacked")

    def __init__(self) -> None:
        self.local_done = False
        self.remote_done = False
        self.unacked = 0  # bytes read by the consumer (or padding) not yet handed back


class H2ClientSession:
    def __init__(
        self, authority: str, *, stream_window: int, connection_window: int, max_streams: int
    ) -> None:
        if stream_window < DEFAULT_WINDOW or connection_window < DEFAULT_WINDOW:
            raise ValueError(f"HTTP/2 windows must be at least {DEFAULT_WINDOW} bytes")
        self._h2 = h2.connection.H2Connection(
            # Request headers are checked once by the transport; h2's per-request validation
            # and normalisation of them cost more than the rest of building the frames.
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self._authority = authority.encode("ascii")
        self._stream_window = stream_window
        self._connection_window = connection_window
        self._max_streams = max_streams
        self._filter = GoAwayFilter()
        self._streams: dict[int, _StreamState] = {}
        self._connection_unacked = 0
        self._settings_received = False
        self._going_away = False
        self._failure: TransportError | None = None

    # -- connection ------------------------------------------------------------------------

    def initiate(self) -> None:
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self._stream_window,
            },
        )
        self._h2.initiate_connection()
        if self._connection_window > DEFAULT_WINDOW:
            self._h2.increment_flow_control_window(self._connection_window - DEFAULT_WINDOW)

    def data_to_send(self) -> bytes:
        return self._h2.data_to_send()

    @property
    def ready(self) -> bool:
        """The server's SETTINGS arrived: its stream limit is known."""
        return self._settings_received

    @property
    def usable(self) -> bool:
        """New streams may go on this connection (now or once a slot frees)."""
        return (
            self._failure is None
            and not self._going_away
            and self._h2.highest_outbound_stream_id < LAST_USABLE_STREAM_ID
        )

    @property
    def can_open(self) -> bool:
        limit = min(self._max_streams, self._h2.remote_settings.max_concurrent_streams)
        return self.ready and self.usable and len(self._streams) < limit

    @property
    def live_streams(self) -> int:
        return len(self._streams)

    def is_live(self, stream_id: int) -> bool:
        """The stream still holds a slot (either direction still open, not reset)."""
        return stream_id in self._streams

    @property
    def finished(self) -> bool:
        """Nothing more will happen on this connection: the shell should close it."""
        return self._failure is not None or (not self.usable and not self._streams)

    @property
    def failure(self) -> TransportError | None:
        return self._failure

    def close(self) -> None:
        """Graceful local close: GOAWAY to the server (its streams are the shell's to fail)."""
        if self._failure is None:
            self._h2.close_connection()

    # -- streams -----------------------------------------------------------------------------

    def open(self, method: str, path: str, headers: list[tuple[bytes, bytes]], end_stream: bool) -> int:
        if not self.can_open:
            raise StreamStateError("no stream slot on this connection (check can_open first)")
        stream_id = self._h2.get_next_available_stream_id()
        request = [
            (b":method", method.encode("ascii")),
            (b":scheme", b"http"),
            (b":authority", self._authority),
            (b":path", path.encode("ascii")),
            *headers,
        ]
        try:
            self._h2.send_headers(stream_id, request, end_stream=end_stream)
        except h2.exceptions.ProtocolError as e:
            raise ValueError(f"request headers rejected by HTTP/2 rules: {e}") from e
        state = _StreamState()
        state.local_done = end_stream
        self._streams[stream_id] = state
        return stream_id

    def send_window(self, stream_id: int) -> int:
        """Bytes that may go out now in one DATA frame on this stream."""
        if stream_id not in self._streams:
            return 0
        return min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)

    def send_data(self, stream_id: int, data: bytes | memoryview) -> None:
        """Send at most ``send_window(stream_id)`` bytes."""
        self._live(stream_id)
        self._h2.send_data(stream_id, data)

    def end(self, stream_id: int) -> None:
        state = self._live(stream_id)
        self._h2.end_stream(stream_id)
        state.local_done = True
        self._retire_if_done(stream_id, state)

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """RST_STREAM; a no-op for a stream that is already over."""
        if self._streams.pop(stream_id, None) is not None and self._failure is None:
            try:
                self._h2.reset_stream(stream_id, error_code)
            except h2.exceptions.StreamClosedError:
                pass  # h2 already closed it (the server's reset crossed ours)

    def consumed(self, stream_id: int, size: int) -> None:
        """The consumer has read ``size`` bytes of this stream: hand the window back in batches."""
        state = self._streams.get(stream_id)
        if state is None or state.remote_done or self._failure is not None:
            return
        state.unacked += size
        if state.unacked >= self._stream_window // 2:
            self._h2.increment_flow_control_window(state.unacked, stream_id)
            state.unacked = 0

    def _live(self, stream_id: int) -> _StreamState:
        state = self._streams.get(stream_id)
        if state is None or state.local_done:
            raise StreamStateError(f"stream {stream_id} can send no more")
        return state

    def _retire_if_done(self, stream_id: int, state: _StreamState) -> None:
        if state.local_done and state.remote_done:
            del self._streams[stream_id]

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[SessionEvent]:
        out: list[SessionEvent] = []
        if self._failure is not None:
            return out
        if not self._settings_received and data.startswith(b"HTTP/1."):
            # h2 would wait for a "frame" of several MB; an HTTP/1.x answer is clear at once.
            return self._fail_all(ProtocolViolation("deployment answered in HTTP/1.x, not HTTP/2"))
        for segment in self._filter.feed(data):
            if isinstance(segment, GoAwayFrame):
                out += self._on_goaway(segment)
                continue
            try:
                events = self._h2.receive_data(segment)
            except h2.exceptions.ProtocolError as e:
                return out + self._fail_all(ProtocolViolation(f"deployment broke HTTP/2 rules: {e}"))
            for event in events:
                self._translate(event, out)
        return out

    def connection_lost(self, reason: str) -> list[SessionEvent]:
        if self._failure is not None:
            return []
        return self._fail_all(ConnectionLost(reason))

    def fail(self, error: TransportError) -> list[SessionEvent]:
        """The shell gives up on the connection (client closing, write failed)."""
        if self._failure is not None:
            return []
        return self._fail_all(error)

    def _fail_all(self, error: TransportError) -> list[SessionEvent]:
        self._failure = error
        out: list[SessionEvent] = [StreamFailed(sid, error) for sid in self._streams]
        self._streams.clear()
        return out

    def _on_goaway(self, frame: GoAwayFrame) -> list[SessionEvent]:
        out: list[SessionEvent] = []
        first = not self._going_away
        self._going_away = True
        refused = [sid for sid in self._streams if sid > frame.last_stream_id]
        for sid in refused:
            del self._streams[sid]
            out.append(
                StreamFailed(
                    sid,
                    NotProcessed(
                        f"deployment sent GOAWAY ({error_name(frame.error_code)}) with last stream "
                        f"{frame.last_stream_id}; stream {sid} was not processed"
                    ),
                )
            )
        if first and self._streams:
            self._h2.ping(GOAWAY_PROBE)
        out.append(GoingAway(frame.last_stream_id, frame.error_code))
        return out

    def _translate(self, event: h2.events.Event, out: list[SessionEvent]) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._on_data(event, out)
        elif isinstance(event, h2.events.ResponseReceived):
            if event.stream_id in self._streams:
                out.append(_head(event.stream_id, event.headers))
        elif isinstance(event, h2.events.StreamEnded):
            state = self._streams.get(event.stream_id)
            if state is not None:
                state.remote_done = True
                self._retire_if_done(event.stream_id, state)
                out.append(StreamEnded(event.stream_id))
        elif isinstance(event, h2.events.StreamReset):
            if self._streams.pop(event.stream_id, None) is not None:
                out.append(StreamFailed(event.stream_id, _reset_error(event)))
        elif isinstance(event, h2.events.WindowUpdated):
            out.append(SendWindowOpened(event.stream_id or None))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_received = True
            changed = event.changed_settings
            if (
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in changed
                or h2.settings.SettingCodes.MAX_FRAME_SIZE in changed
            ):
                out.append(SendWindowOpened(None))
        elif isinstance(event, h2.events.ConnectionTerminated):  # only if the filter missed one
            out += self._on_goaway(GoAwayFrame(event.last_stream_id or 0, event.error_code or 0, b""))

    def _on_data(self, event: h2.events.DataReceived, out: list[SessionEvent]) -> None:
        flow = event.flow_controlled_length or 0
        if flow:
            self._connection_unacked += flow
            if self._connection_unacked >= self._connection_window // 2:
                self._h2.increment_flow_control_window(self._connection_unacked)
                self._connection_unacked = 0
        state = self._streams.get(event.stream_id)
        if state is None:
            return
        data = event.data or b""
        padding = flow - len(data)
        if padding:
            self.consumed(event.stream_id, padding)
        if data:
            out.append(DataReceived(event.stream_id, data))


def _head(stream_id: int, raw: list[tuple[bytes, bytes]]) -> HeadReceived:
    status = 0
    headers: list[tuple[str, str]] = []
    for name, value in raw:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    return HeadReceived(stream_id, status, tuple(headers))


def _reset_error(event: h2.events.StreamReset) -> TransportError:
    code = int(event.error_code or 0)
    if not event.remote_reset:
        return ProtocolViolation(f"deployment broke HTTP/2 stream rules on stream {event.stream_id}")
    if code == REFUSED_STREAM:
        return NotProcessed(f"deployment refused stream {event.stream_id} (REFUSED_STREAM)")
    return StreamReset(f"deployment reset stream {event.stream_id} ({error_name(code)})", code)

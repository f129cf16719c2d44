"""The client side of one HTTP/1.1 connection, sans I/O: ``h11`` reporting the same events as ``_h2_session``.

One request at a time; a request whose length is not given goes out with a chunked body. The
connection is reusable after a cycle in which both sides finished cleanly (``reusable``);
stream ids count the requests made on it.
"""

from __future__ import annotations

import h11

from processor.invoker._transport_errors import ConnectionLost, ProtocolViolation, StreamStateError
from processor.invoker._transport_events import (
    DataReceived,
    HeadReceived,
    SessionEvent,
    StreamEnded,
    StreamFailed,
)


class H1ClientSession:
    def __init__(self, authority: str) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._host = authority.encode("ascii")
        self._out: list[bytes] = []
        self._stream_id = 0
        self._active = False  # a request cycle is in progress
        self._request_ended = False
        self._response_ended = False
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle(self) -> bool:
        return not self._active and not self._closed

    @property
    def cycle_done(self) -> bool:
        """Both the request and the response of the current cycle are complete."""
        return self._request_ended and self._response_ended

    @property
    def reusable(self) -> bool:
        return not self._closed and self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def start(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body_length: int | None
    ) -> int:
        """Begin a request; ``body_length`` None means a chunked body of unknown length."""
        if not self.idle:
            raise StreamStateError("HTTP/1.1 connection is busy or closed")
        framing: list[tuple[bytes, bytes]] = []
        if body_length is None:
            framing.append((b"transfer-encoding", b"chunked"))
        elif body_length:
            framing.append((b"content-length", str(body_length).encode("ascii")))
        request = h11.Request(method=method, target=path, headers=[(b"host", self._host), *headers, *framing])
        try:
            self._send(request)
        except h11.LocalProtocolError as e:
            raise ValueError(f"request rejected by HTTP/1.1 rules: {e}") from e
        self._active = True
        self._request_ended = self._response_ended = False
        self._stream_id += 1
        return self._stream_id

    def send_data(self, data: bytes | memoryview) -> None:
        self._send(h11.Data(data=bytes(data)))

    def end(self) -> None:
        self._send(h11.EndOfMessage())
        self._request_ended = True

    def _send(self, event: h11.Event) -> None:
        try:
            data = self._h11.send(event)
        except h11.LocalProtocolError as e:
            raise StreamStateError(f"cannot send on this HTTP/1.1 request now: {e}") from e
        if data:
            self._out.append(data)

    def next_cycle(self) -> None:
        self._h11.start_next_cycle()
        self._active = False

    def receive_data(self, data: bytes) -> list[SessionEvent]:
        """Bytes from the server; ``b""`` is end of file."""
        out: list[SessionEvent] = []
        if self._closed:
            return out
        sid = self._stream_id
        self._h11.receive_data(data)
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as e:
                if not data:  # h11 calls an early end of file a protocol error; it is a lost connection
                    return out + self._close(ConnectionLost(f"deployment closed the connection: {e}"))
                return out + self._close(ProtocolViolation(f"deployment broke HTTP/1.1 rules: {e}"))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return out
            if isinstance(event, h11.Data):
                out.append(DataReceived(sid, bytes(event.data)))
            elif isinstance(event, h11.Response):
                headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers)
                out.append(HeadReceived(sid, event.status_code, headers))
            elif isinstance(event, h11.EndOfMessage):
                self._response_ended = True
                out.append(StreamEnded(sid))
            elif isinstance(event, h11.ConnectionClosed):
                return out + self._close(ConnectionLost("deployment closed the HTTP/1.1 connection"))

    def connection_lost(self, reason: str) -> list[SessionEvent]:
        return self._close(ConnectionLost(reason))

    def _close(self, error: ProtocolViolation | ConnectionLost) -> list[SessionEvent]:
        if self._closed:
            return []
        self._closed = True
        in_flight = self._active and not self.cycle_done
        return [StreamFailed(self._stream_id, error)] if in_flight else []

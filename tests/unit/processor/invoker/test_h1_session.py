"""The HTTP/1.1 client session against an in-memory ``h11`` server: chunked bodies, reuse, failures."""

from __future__ import annotations

import h11
import pytest

from processor.invoker._h1_session import H1ClientSession
from processor.invoker._transport_errors import ConnectionLost, ProtocolViolation, StreamStateError
from processor.invoker._transport_events import DataReceived, HeadReceived, StreamEnded, StreamFailed


class Pair:
    def __init__(self) -> None:
        self.client = H1ClientSession("deployment:9080")
        self.server = h11.Connection(h11.SERVER)

    def to_server(self) -> list[h11.Event]:
        self.server.receive_data(self.client.data_to_send())
        events = []
        while (event := self.server.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            events.append(event)
        return events

    def respond(self, *events: h11.Event) -> list[object]:
        return self.client.receive_data(b"".join(self.server.send(e) or b"" for e in events))


def test_streamed_request_goes_out_chunked_and_the_response_streams_back() -> None:
    pair = Pair()
    sid = pair.client.start("POST", "/invoke/Greeter/greet", [(b"content-type", b"x")], None)
    (request,) = pair.to_server()
    assert dict(request.headers)[b"transfer-encoding"] == b"chunked"
    assert dict(request.headers)[b"host"] == b"deployment:9080"
    pair.client.send_data(b"abc")
    pair.client.send_data(b"defg")
    assert pair.client.data_to_send() == b"3\r\nabc\r\n4\r\ndefg\r\n"
    pair.client.end()
    assert pair.client.data_to_send() == b"0\r\n\r\n"
    events = pair.respond(
        h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]),
        h11.Data(data=b"one"),
    )
    assert events == [HeadReceived(sid, 200, (("transfer-encoding", "chunked"),)), DataReceived(sid, b"one")]
    assert pair.respond(h11.Data(data=b"two"), h11.EndOfMessage()) == [
        DataReceived(sid, b"two"),
        StreamEnded(sid),
    ]
    assert pair.client.cycle_done and pair.client.reusable


def test_connection_is_reused_for_the_next_request() -> None:
    pair = Pair()
    first = pair.client.start("GET", "/discover", [], 0)
    pair.client.end()
    pair.to_server()
    pair.respond(
        h11.Response(status_code=200, headers=[(b"content-length", b"2")]),
        h11.Data(data=b"{}"),
        h11.EndOfMessage(),
    )
    assert pair.client.reusable
    with pytest.raises(StreamStateError):  # still in the old cycle
        pair.client.start("GET", "/health", [], 0)
    pair.client.next_cycle()
    pair.server.start_next_cycle()
    second = pair.client.start("GET", "/health", [], 0)
    assert second == first + 1
    (request, _) = pair.to_server()
    assert request.target == b"/health"


def test_connection_close_response_is_not_reusable() -> None:
    pair = Pair()
    pair.client.start("GET", "/", [], 0)
    pair.client.end()
    pair.to_server()
    pair.respond(
        h11.Response(status_code=200, headers=[(b"connection", b"close"), (b"content-length", b"0")]),
        h11.EndOfMessage(),
    )
    assert pair.client.cycle_done and not pair.client.reusable


def test_eof_mid_response_is_connection_lost() -> None:
    pair = Pair()
    sid = pair.client.start("POST", "/", [], None)
    pair.client.end()
    pair.to_server()
    pair.respond(h11.Response(status_code=200, headers=[(b"content-length", b"10")]), h11.Data(data=b"abc"))
    (failed,) = pair.client.receive_data(b"")
    assert failed.stream_id == sid and isinstance(failed.error, ConnectionLost)
    assert pair.client.closed
    assert pair.client.receive_data(b"more") == []


def test_garbage_is_a_protocol_violation() -> None:
    pair = Pair()
    pair.client.start("GET", "/", [], 0)
    pair.client.end()
    (failed,) = pair.client.receive_data(b"NOT HTTP AT ALL\r\n\r\n")
    assert isinstance(failed, StreamFailed) and isinstance(failed.error, ProtocolViolation)


def test_eof_on_an_idle_connection_fails_no_stream() -> None:
    pair = Pair()
    assert pair.client.receive_data(b"") == []
    assert pair.client.closed and not pair.client.idle

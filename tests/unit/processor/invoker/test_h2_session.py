"""The h2c client session against an in-memory ``h2`` server: streams, windows, GOAWAY, resets, limits."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from processor.invoker._h2_session import GOAWAY_PROBE, H2ClientSession
from processor.invoker._transport_errors import (
    ConnectionLost,
    NotProcessed,
    ProtocolViolation,
    StreamReset,
    StreamStateError,
)
from processor.invoker._transport_events import (
    DataReceived,
    GoingAway,
    HeadReceived,
    SendWindowOpened,
    StreamEnded,
    StreamFailed,
)

WINDOW = 65_536 * 2


class Pair:
    """A client session and an h2 server joined by an in-memory link."""

    def __init__(self, max_concurrent: int = 100, max_streams: int = 1000) -> None:
        self.client = H2ClientSession(
            "deployment:9080", stream_window=WINDOW, connection_window=4 * WINDOW, max_streams=max_streams
        )
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.server.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent}
        )
        self.client_events: list[object] = []
        self.server_events: list[h2.events.Event] = []
        self.client.initiate()
        self.server.initiate_connection()
        self.pump()

    def pump(self) -> tuple[list[object], list[h2.events.Event]]:
        """Move bytes both ways until neither side has anything to say; return the new events."""
        got_client: list[object] = []
        got_server: list[h2.events.Event] = []
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                break
            if to_server:
                got_server += self.server.receive_data(to_server)
            if to_client:
                got_client += self.client.receive_data(to_client)
        self.client_events += got_client
        self.server_events += got_server
        return got_client, got_server

    def respond(self, sid: int, status: int = 200, body: bytes = b"", end: bool = True) -> None:
        self.server.send_headers(sid, [(":status", str(status))], end_stream=end and not body)
        if body:
            self.server.send_data(sid, body, end_stream=end)

    def open(self, end_stream: bool = False) -> int:
        return self.client.open("POST", "/invoke/Greeter/greet", [(b"content-type", b"x")], end_stream)


def of_type(events: list[object], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_not_ready_until_the_server_settings_arrive() -> None:
    client = H2ClientSession("d:1", stream_window=WINDOW, connection_window=WINDOW, max_streams=10)
    client.initiate()
    assert not client.ready and not client.can_open
    with pytest.raises(StreamStateError):
        client.open("POST", "/", [], False)
    pair = Pair()
    assert pair.client.ready and pair.client.can_open


def test_request_and_response_both_ways_while_open() -> None:
    pair = Pair()
    sid = pair.open()
    _, server = pair.pump()
    (req,) = of_type(server, h2.events.RequestReceived)
    assert dict(req.headers)[b":path"] == b"/invoke/Greeter/greet"
    assert dict(req.headers)[b":authority"] == b"deployment:9080"
    # The response starts before the request body ends (the SDK's bidi mode).
    pair.respond(sid, body=b"hello", end=False)
    client, _ = pair.pump()
    assert of_type(client, HeadReceived) == [HeadReceived(sid, 200, ())]
    assert of_type(client, DataReceived) == [DataReceived(sid, b"hello")]
    pair.client.send_data(sid, b"more")
    pair.client.end(sid)
    _, server = pair.pump()
    assert [e.data for e in of_type(server, h2.events.DataReceived) if e.data] == [b"more"]
    assert of_type(server, h2.events.StreamEnded)
    assert pair.client.is_live(sid)
    pair.server.end_stream(sid)
    client, _ = pair.pump()
    assert client == [StreamEnded(sid)]
    assert not pair.client.is_live(sid) and pair.client.live_streams == 0


def test_stream_window_returns_only_as_the_consumer_reads() -> None:
    pair = Pair()
    sid = pair.open()
    pair.pump()
    pair.respond(sid, end=False)
    chunk = b"z" * 16_384
    sent = 0
    while pair.server.local_flow_control_window(sid) >= len(chunk):
        pair.server.send_data(sid, chunk)
        sent += len(chunk)
    client, _ = pair.pump()
    assert sum(len(e.data) for e in of_type(client, DataReceived)) == sent
    # Nothing consumed yet: the server's window on this stream stays shut.
    assert pair.server.local_flow_control_window(sid) == WINDOW - sent
    pair.client.consumed(sid, WINDOW // 2 - 1)
    pair.pump()
    assert pair.server.local_flow_control_window(sid) == WINDOW - sent  # batched, not yet handed back
    pair.client.consumed(sid, 1)
    pair.pump()
    assert pair.server.local_flow_control_window(sid) == WINDOW - sent + WINDOW // 2


def test_connection_window_returns_on_arrival_so_one_slow_reader_stalls_nobody() -> None:
    pair = Pair()
    slow = [pair.open() for _ in range(4)]  # their windows add up to the connection window
    fast = pair.open()
    pair.pump()
    for sid in [*slow, fast]:
        pair.respond(sid, end=False)
    for sid in slow:  # never read
        while size := min(pair.server.local_flow_control_window(sid), 16_384):
            pair.server.send_data(sid, b"s" * size)
        pair.pump()
    moved = 0
    while moved < 3 * 4 * WINDOW:  # three times the connection window
        size = min(pair.server.local_flow_control_window(fast), 16_384)
        assert size > 0, f"fast stream stalled after {moved} bytes"
        pair.server.send_data(fast, b"f" * size)
        moved += size
        client, _ = pair.pump()
        pair.client.consumed(fast, sum(len(e.data) for e in of_type(client, DataReceived)))
        pair.pump()
    assert all(pair.server.local_flow_control_window(sid) == 0 for sid in slow)


def test_send_window_events_wake_the_sender() -> None:
    pair = Pair()
    sid = pair.open()
    pair.pump()
    while (size := pair.client.send_window(sid)) > 0:
        pair.client.send_data(sid, b"q" * size)
    _, server = pair.pump()
    received = sum(e.flow_controlled_length for e in of_type(server, h2.events.DataReceived))
    assert pair.client.send_window(sid) == 0
    pair.server.acknowledge_received_data(received, sid)
    client, _ = pair.pump()
    assert SendWindowOpened(sid) in client and SendWindowOpened(None) in client
    assert pair.client.send_window(sid) > 0


def test_goaway_fails_streams_above_last_and_lets_the_rest_finish() -> None:
    pair = Pair()
    first, second, third = pair.open(), pair.open(), pair.open()
    pair.pump()
    pair.server.close_connection(last_stream_id=second)
    # h2 refuses every frame after its own GOAWAY: from here the server only talks, through a
    # second h2 server that encodes the responses it would send.
    client = pair.client.receive_data(pair.server.data_to_send())
    failed = of_type(client, StreamFailed)
    assert [f.stream_id for f in failed] == [third]
    assert isinstance(failed[0].error, NotProcessed) and failed[0].error.maybe_processed is False
    assert GoingAway(second, 0) in client
    assert not pair.client.usable and not pair.client.can_open and not pair.client.finished
    probe = pair.client.data_to_send()
    assert GOAWAY_PROBE in probe  # the PING that makes a server unable to finish say so at once
    # Streams up to `second` still work: data in both directions, then the end.
    pair.client.send_data(first, b"still here")
    assert pair.client.data_to_send()
    ok = Pair()  # a fresh server to encode the frames the first server would send
    for sid in (first, second):
        events = pair.client.receive_data(_frames_from(ok, sid))
        assert of_type(events, StreamEnded) == [StreamEnded(sid)]
        pair.client.end(sid)
    assert pair.client.finished


def _frames_from(pair: Pair, sid: int) -> bytes:
    """A complete response on stream ``sid`` as an h2 server would encode it."""
    while pair.client._h2.highest_outbound_stream_id < sid:
        pair.open()
    pair.pump()
    pair.respond(sid, body=b"done")
    return pair.server.data_to_send()


def test_refused_stream_is_not_processed_and_other_resets_carry_their_code() -> None:
    pair = Pair()
    refused, cancelled = pair.open(), pair.open()
    pair.pump()
    pair.server.reset_stream(refused, h2.errors.ErrorCodes.REFUSED_STREAM)
    pair.server.reset_stream(cancelled, h2.errors.ErrorCodes.INTERNAL_ERROR)
    client, _ = pair.pump()
    errors = {e.stream_id: e.error for e in of_type(client, StreamFailed)}
    assert isinstance(errors[refused], NotProcessed)
    assert isinstance(errors[cancelled], StreamReset) and errors[cancelled].error_code == 2
    assert pair.client.live_streams == 0 and pair.client.usable


def test_local_reset_sends_cancel_and_frees_the_slot() -> None:
    pair = Pair(max_concurrent=1)
    sid = pair.open()
    pair.pump()
    assert not pair.client.can_open
    pair.client.reset(sid)
    _, server = pair.pump()
    (reset,) = of_type(server, h2.events.StreamReset)
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
    assert pair.client.can_open
    pair.client.reset(sid)  # twice is harmless
    assert pair.client.data_to_send() == b""


def test_open_streams_never_exceed_the_server_limit() -> None:
    pair = Pair(max_concurrent=2)
    a, b = pair.open(), pair.open()
    assert not pair.client.can_open
    with pytest.raises(StreamStateError):
        pair.open()
    pair.pump()
    pair.respond(a)
    pair.client.end(a)
    pair.pump()
    assert pair.client.can_open  # `a` closed both ways
    assert pair.client.is_live(b)


def test_our_own_stream_cap_applies_too() -> None:
    pair = Pair(max_concurrent=100, max_streams=1)
    pair.open()
    assert not pair.client.can_open


def test_protocol_error_fails_every_stream() -> None:
    pair = Pair()
    a, b = pair.open(), pair.open()
    pair.pump()
    events = pair.client.receive_data(
        b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    )  # WINDOW_UPDATE of 0
    assert {e.stream_id for e in of_type(events, StreamFailed)} == {a, b}
    assert all(isinstance(e.error, ProtocolViolation) for e in of_type(events, StreamFailed))
    assert pair.client.finished and not pair.client.usable


def test_connection_lost_fails_live_streams_only() -> None:
    pair = Pair()
    done, live = pair.open(end_stream=True), pair.open()
    pair.pump()
    pair.respond(done)
    pair.pump()
    events = pair.client.connection_lost("gone")
    assert [(e.stream_id, type(e.error)) for e in events] == [(live, ConnectionLost)]
    assert pair.client.connection_lost("again") == []


def test_response_after_reset_is_ignored() -> None:
    pair = Pair()
    sid = pair.open()
    pair.pump()
    pair.client.reset(sid)
    pair.respond(sid, body=b"late")  # crossed our RST_STREAM on the wire
    client = pair.client.receive_data(pair.server.data_to_send())
    assert of_type(client, HeadReceived) == [] and of_type(client, DataReceived) == []


def test_an_http1_answer_to_the_preface_fails_at_once() -> None:
    client = H2ClientSession("d:1", stream_window=WINDOW, connection_window=WINDOW, max_streams=10)
    client.initiate()
    assert client.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n") == []
    assert isinstance(client.failure, ProtocolViolation) and client.finished

"""The per-connection toxic chains, driven with no I/O: explicit times, seeded randomness."""

from __future__ import annotations

import random

import pytest

from chaos.proxy.core import (
    TOXIC_ATTRIBUTES,
    Close,
    Connection,
    EofReceived,
    Output,
    PauseReading,
    PeerLost,
    Received,
    ResumeReading,
    Send,
    SendEof,
    SetTimer,
    Stream,
    TimerFired,
    Toxic,
    ToxicAdded,
    ToxicRemoved,
    ToxicUpdated,
    WritePaused,
    WriteResumed,
)

UP, DOWN = Stream.UPSTREAM, Stream.DOWNSTREAM


def toxic(
    kind: str, stream: Stream = DOWN, name: str | None = None, toxicity: float = 1.0, **attrs: int
) -> Toxic:
    attributes = dict.fromkeys(TOXIC_ATTRIBUTES[kind], 0) | attrs
    return Toxic(name or f"{kind}_{stream.value}", kind, stream, toxicity, attributes)


def connect(*toxics: Toxic, seed: int = 0, **kw: int) -> Connection:
    conn = Connection(random.Random(seed), **kw)
    for t in toxics:
        conn.step(ToxicAdded(t, 0.0))
    return conn


def sent(out: list[Output], stream: Stream = DOWN) -> bytes:
    return b"".join(o.data for o in out if isinstance(o, Send) and o.stream is stream)


def timer(out: list[Output]) -> float | None:
    timers = [o.at for o in out if isinstance(o, SetTimer)]
    assert timers, f"no SetTimer in {out}"
    return timers[-1]


def run_timers(conn: Connection, first: float | None) -> list[tuple[float, Output]]:
    """Fire the connection's timer until it disarms; every output with the time it came out."""
    at, log = first, []
    while at is not None:
        out = conn.step(TimerFired(at))
        log += [(at, o) for o in out]
        at = next((o.at for o in reversed(out) if isinstance(o, SetTimer)), None)
        if conn.closed:
            break
    return log


def test_no_toxics_passes_bytes_and_half_closes_each_way():
    conn = connect()
    assert conn.step(Received(UP, b"ping", 1.0)) == [Send(UP, b"ping")]
    assert conn.step(Received(DOWN, b"pong", 1.0)) == [Send(DOWN, b"pong")]
    assert conn.step(EofReceived(UP, 1.1)) == [SendEof(UP)]
    assert conn.step(Received(DOWN, b"more", 1.2)) == [Send(DOWN, b"more")]
    assert conn.step(EofReceived(DOWN, 1.3)) == [SendEof(DOWN), Close(reset=False)]
    assert conn.closed
    assert conn.step(Received(UP, b"late", 2.0)) == []


def test_latency_delays_each_chunk_on_its_stream_only():
    conn = connect(toxic("latency", latency=200))
    out = conn.step(Received(DOWN, b"a", 1.0))
    assert out == [SetTimer(pytest.approx(1.2))]
    assert conn.step(Received(UP, b"req", 1.05)) == [Send(UP, b"req")]
    assert conn.step(TimerFired(1.2)) == [Send(DOWN, b"a")]  # the timer fired: nothing to disarm


def test_latency_with_jitter_keeps_order_and_bounds():
    conn = connect(toxic("latency", latency=100, jitter=80), seed=3)
    chunks = [bytes([i]) * 10 for i in range(50)]
    arrivals = {chunk: i * 0.005 for i, chunk in enumerate(chunks)}
    log: list[tuple[float, Output]] = []
    at = None
    for chunk, now in arrivals.items():
        out = conn.step(Received(DOWN, chunk, now))
        log += [(now, o) for o in out]
        at = next((o.at for o in reversed(out) if isinstance(o, SetTimer)), at)
    log += run_timers(conn, at)
    delivered = [(t, o.data) for t, o in log if isinstance(o, Send)]
    assert b"".join(d for _, d in delivered) == b"".join(chunks)
    for t, data in delivered:
        assert t >= arrivals[data] + 0.020 - 1e-9  # latency - jitter
    assert [t for t, _ in delivered] == sorted(t for t, _ in delivered)


def test_latency_holds_the_end_of_stream_behind_the_last_chunk():
    conn = connect(toxic("latency", latency=200))
    conn.step(Received(DOWN, b"x", 0.0))
    assert conn.step(EofReceived(DOWN, 0.01)) == []
    assert conn.step(TimerFired(0.2)) == [Send(DOWN, b"x"), SendEof(DOWN)]


def test_bandwidth_sends_100ms_pieces_at_the_rate():
    conn = connect(toxic("bandwidth", rate=10))  # 10 KB/s = 1000 bytes per 100 ms
    assert timer(conn.step(Received(DOWN, b"x" * 2500, 0.0))) == pytest.approx(0.1)
    log = run_timers(conn, 0.1)
    pieces = [(round(t, 6), len(o.data)) for t, o in log if isinstance(o, Send)]
    assert pieces == [(0.1, 1000), (0.2, 1000), (0.25, 500)]


def test_bandwidth_is_queued_behind_earlier_data_without_idle_credit():
    conn = connect(toxic("bandwidth", rate=1))  # 1 byte per ms
    assert timer(conn.step(Received(DOWN, b"a" * 50, 0.0))) == pytest.approx(0.05)
    assert conn.step(Received(DOWN, b"b" * 50, 0.01)) == []
    log = run_timers(conn, 0.05)
    assert [round(t, 6) for t, o in log if isinstance(o, Send)] == [0.05, 0.1]
    # After an idle second the next chunk pays its full time again.
    assert timer(conn.step(Received(DOWN, b"c" * 20, 1.0))) == pytest.approx(1.02)


def test_timeout_drops_data_and_closes_after_the_last_chunk():
    conn = Connection(random.Random(0))
    assert timer(conn.step(ToxicAdded(toxic("timeout", timeout=100), 0.0))) == pytest.approx(0.1)
    out = conn.step(Received(DOWN, b"lost", 0.05))
    rearmed = timer(out)
    assert sent(out) == b"" and rearmed == pytest.approx(0.15)  # re-armed, as Toxiproxy does
    assert conn.step(Received(UP, b"req", 0.06)) == [Send(UP, b"req")]
    assert conn.step(TimerFired(rearmed)) == [Close(reset=False)]


def test_timeout_zero_holds_forever_until_removed_which_closes():
    conn = connect(toxic("timeout", timeout=0))
    assert conn.step(Received(DOWN, b"lost", 5.0)) == []
    assert conn.step(ToxicRemoved("timeout_downstream", 60.0)) == [Close(reset=False)]


def test_reset_peer_arms_on_first_data_then_resets():
    conn = connect(toxic("reset_peer", timeout=50))
    assert conn.step(Received(UP, b"req", 1.0)) == [Send(UP, b"req")]  # other stream unaffected
    out = conn.step(Received(DOWN, b"resp", 2.0))
    assert sent(out) == b"" and timer(out) == pytest.approx(2.05)
    assert conn.step(TimerFired(2.05)) == [Close(reset=True)]


def test_removing_reset_peer_cancels_the_pending_reset():
    conn = connect(toxic("reset_peer", timeout=50))
    conn.step(Received(DOWN, b"resp", 2.0))
    assert conn.step(ToxicRemoved("reset_peer_downstream", 2.01)) == [SetTimer(None)]
    assert conn.step(Received(DOWN, b"next", 2.02)) == [Send(DOWN, b"next")]


def test_slow_close_delays_only_the_end():
    conn = connect(toxic("slow_close", delay=300))
    assert conn.step(Received(DOWN, b"data", 1.0)) == [Send(DOWN, b"data")]
    assert conn.step(EofReceived(DOWN, 1.0)) == [SetTimer(pytest.approx(1.3))]
    assert conn.step(TimerFired(1.3)) == [SendEof(DOWN)]


def test_limit_data_passes_exactly_n_bytes_then_closes():
    conn = connect(toxic("limit_data", bytes=5))
    assert conn.step(Received(DOWN, b"abc", 0.0)) == [Send(DOWN, b"abc")]
    assert conn.step(Received(DOWN, b"defg", 0.1)) == [Send(DOWN, b"de"), Close(reset=False)]


def test_limit_data_counts_across_an_update():
    conn = connect(toxic("limit_data", bytes=5))
    conn.step(Received(DOWN, b"abc", 0.0))
    conn.step(ToxicUpdated(toxic("limit_data", bytes=4), 0.1))
    assert conn.step(Received(DOWN, b"defg", 0.2)) == [Send(DOWN, b"d"), Close(reset=False)]


def test_teardown_waits_behind_data_held_by_a_later_toxic():
    conn = connect(toxic("limit_data", name="limit", bytes=3), toxic("latency", latency=100))
    out = conn.step(Received(DOWN, b"abcde", 0.0))
    assert sent(out) == b"" and timer(out) == pytest.approx(0.1)
    assert conn.step(TimerFired(0.1)) == [Send(DOWN, b"abc"), Close(reset=False)]


def test_slicer_cuts_chunks_into_spaced_small_pieces():
    conn = connect(toxic("slicer", average_size=10, size_variation=4, delay=1000), seed=5)
    data = random.Random(1).randbytes(200)
    out = conn.step(Received(DOWN, data, 0.0))
    log = [(0.0, o) for o in out] + run_timers(conn, timer(out))
    pieces = [(t, o.data) for t, o in log if isinstance(o, Send)]
    assert b"".join(p for _, p in pieces) == data
    assert len(pieces) >= 200 // 14
    assert all(0 < len(p) <= 14 for _, p in pieces)  # average + variation
    gaps = [b - a for (a, _), (b, _) in zip(pieces, pieces[1:], strict=False)]
    assert all(g == pytest.approx(0.001) for g in gaps)


def test_slicer_is_deterministic_for_a_seed():
    def cuts(seed: int) -> list[int]:
        conn = connect(toxic("slicer", average_size=8, size_variation=6), seed=seed)
        return [len(o.data) for o in conn.step(Received(DOWN, bytes(300), 0.0)) if isinstance(o, Send)]

    assert cuts(11) == cuts(11)
    assert sum(cuts(11)) == 300


def test_toxicity_zero_never_applies_and_a_fraction_is_drawn_per_connection():
    never = toxic("latency", latency=500, toxicity=0.0)
    for seed in range(200):
        assert connect(never, seed=seed).step(Received(DOWN, b"x", 0.0)) == [Send(DOWN, b"x")]

    half = toxic("latency", latency=500, toxicity=0.5)

    def delayed(seed: int) -> bool:
        return connect(half, seed=seed).step(Received(DOWN, b"x", 0.0)) != [Send(DOWN, b"x")]

    draws = [delayed(seed) for seed in range(400)]
    assert 120 < sum(draws) < 280
    assert draws == [delayed(seed) for seed in range(400)]


def test_a_toxic_added_mid_stream_applies_to_later_data():
    conn = connect()
    assert conn.step(Received(DOWN, b"before", 0.0)) == [Send(DOWN, b"before")]
    assert conn.step(ToxicAdded(toxic("latency", latency=200), 0.1)) == []
    assert timer(conn.step(Received(DOWN, b"after", 0.2))) == pytest.approx(0.4)


def test_removing_latency_releases_held_data_at_once():
    conn = connect(toxic("latency", latency=1000))
    conn.step(Received(DOWN, b"held", 0.0))
    assert conn.step(ToxicRemoved("latency_downstream", 0.1)) == [Send(DOWN, b"held"), SetTimer(None)]
    assert conn.step(Received(DOWN, b"free", 0.2)) == [Send(DOWN, b"free")]


def test_updating_latency_replans_held_data_from_its_arrival():
    conn = connect(toxic("latency", latency=1000))
    conn.step(Received(DOWN, b"held", 0.0))
    out = conn.step(ToxicUpdated(toxic("latency", latency=100), 0.05))
    assert timer(out) == pytest.approx(0.1)


def test_a_lost_client_ends_upstream_input_and_closes_once_it_is_delivered():
    conn = connect(toxic("latency", stream=UP, latency=100), toxic("timeout", timeout=50))
    conn.step(Received(UP, b"req", 0.0))
    out = conn.step(PeerLost(UP, 0.01))
    # The request and the FIN still wait behind the latency; the downstream timeout (due at
    # 0.05) died with the client socket and must not cut them off.
    assert out == [SetTimer(pytest.approx(0.1))]
    assert conn.step(Received(DOWN, b"resp", 0.02)) == []  # nowhere to write it
    assert conn.step(ToxicAdded(toxic("reset_peer", name="late"), 0.03)) == []
    assert conn.step(TimerFired(0.1)) == [Send(UP, b"req"), SendEof(UP), Close(reset=False)]


def test_reading_pauses_above_high_water_and_when_the_destination_is_full():
    conn = connect(toxic("latency", latency=1000), high_water=100, low_water=10)
    assert conn.step(Received(DOWN, b"x" * 150, 0.0))[:1] == [PauseReading(DOWN)]
    assert conn.step(TimerFired(1.0)) == [Send(DOWN, b"x" * 150), ResumeReading(DOWN)]
    assert conn.step(WritePaused(UP, 1.1)) == [PauseReading(UP)]
    assert conn.step(WriteResumed(UP, 1.2)) == [ResumeReading(UP)]

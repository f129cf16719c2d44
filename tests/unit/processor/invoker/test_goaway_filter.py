"""The GOAWAY filter passes every other frame through byte for byte, whole or split at any byte."""

from __future__ import annotations

import struct

import pytest

from processor.invoker._goaway_filter import GoAwayFilter, GoAwayFrame


def frame(ftype: int, payload: bytes, stream_id: int = 0, flags: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


def goaway(last: int, code: int, debug: bytes = b"") -> bytes:
    return frame(0x7, struct.pack(">II", last, code) + debug)


SETTINGS = frame(0x4, struct.pack(">HI", 3, 100))
HEADERS = frame(0x1, b"\x88", stream_id=1, flags=0x4)
DATA = frame(0x0, b"x" * 40, stream_id=1)
EMPTY_END = frame(0x0, b"", stream_id=1, flags=0x1)
PING = frame(0x6, b"12345678")
SHORT_GOAWAY = frame(0x7, b"\x00\x00")  # invalid: left for h2 to reject

SAMPLES = {
    "no goaway": [SETTINGS, HEADERS, DATA, EMPTY_END],
    "goaway between": [SETTINGS, HEADERS, goaway(1, 0), DATA, EMPTY_END],
    "goaway first and last": [goaway(7, 2, b"bye"), DATA, PING, goaway(3, 0)],
    "two goaways in a row": [goaway(9, 0), goaway(5, 0, b"x" * 30)],
    "short goaway passes": [SETTINGS, SHORT_GOAWAY, PING],
}


def run(filt: GoAwayFilter, chunks: list[bytes]) -> tuple[bytes, list[GoAwayFrame], list[object]]:
    passed = bytearray()
    frames: list[GoAwayFrame] = []
    order: list[object] = []
    for chunk in chunks:
        for seg in filt.feed(chunk):
            if isinstance(seg, GoAwayFrame):
                frames.append(seg)
                order.append(seg)
            else:
                passed += seg
                order.append(len(passed))
    return bytes(passed), frames, order


def expected(parts: list[bytes]) -> tuple[bytes, list[GoAwayFrame]]:
    passed = b"".join(p for p in parts if not (p[3] == 0x7 and len(p) >= 17))
    frames = [
        GoAwayFrame(int.from_bytes(p[9:13], "big") & 0x7FFFFFFF, int.from_bytes(p[13:17], "big"), p[17:])
        for p in parts
        if p[3] == 0x7 and len(p) >= 17
    ]
    return passed, frames


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_whole_and_split_at_every_byte(name: str) -> None:
    parts = SAMPLES[name]
    wire = b"".join(parts)
    want_passed, want_frames = expected(parts)
    assert run(GoAwayFilter(), [wire])[:2] == (want_passed, want_frames)
    for cut in range(1, len(wire)):
        assert run(GoAwayFilter(), [wire[:cut], wire[cut:]])[:2] == (want_passed, want_frames), cut
    one_by_one = [wire[i : i + 1] for i in range(len(wire))]
    assert run(GoAwayFilter(), one_by_one)[:2] == (want_passed, want_frames)


def test_frames_keep_their_place_in_the_stream() -> None:
    # h2 must see the frames before a GOAWAY before the session handles it, and the rest after.
    wire = SETTINGS + HEADERS + goaway(1, 0) + DATA
    _, frames, order = run(GoAwayFilter(), [wire])
    assert order == [len(SETTINGS + HEADERS), frames[0], len(SETTINGS + HEADERS + DATA)]


def test_goaway_fields_are_parsed() -> None:
    _, frames, _ = run(GoAwayFilter(), [goaway(0x8000_0007, 11, b"too many")])
    assert frames == [GoAwayFrame(last_stream_id=7, error_code=11, debug_data=b"too many")]

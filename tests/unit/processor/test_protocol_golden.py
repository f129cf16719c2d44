"""Golden frame sequences (testdata/flows.txt): the flows of restate-protocol.md §4.4 and the
transcript of §4.8, with the bytes the official SDK's VM actually sends.

Two tests share the file. One replays each flow against the SDK's VM and compares the whole
transcript (bytes and decoded messages) with the file: the SDK still speaks exactly these frames
and accepts ours. The other needs no SDK: it feeds the file's byte streams to our decoder whole,
split at every byte and with trailing bytes, and checks the decoded frames against the file.
Rewrite with DATADRIVEN_REWRITE=1 and review the diff.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from processor.protocol import Decoder, Frame, MessageType, Sender, encode, encode_raw, type_name
from tests.datadriven import TestCase, run_file

from .sdk_flows import FLOWS, PINNED_INVOKE_TIME, Attempt

FLOWS_FILE = Path(__file__).parent / "testdata" / "flows.txt"
SENDERS = {"R": Sender.RUNTIME, "S": Sender.SDK}


def describe(frame: Frame) -> str:
    text = "" if frame.message is None else text_format.MessageToString(frame.message, as_one_line=True)
    return f"  {type_name(frame.type_id)} {{{text}}}"


def pin_invoke_time(frame: Frame) -> Frame:
    """The VM stamps OneWayCall.invoke_time from its wall clock; pin it so the transcript is stable."""
    if frame.type_id != MessageType.ONE_WAY_CALL_COMMAND or frame.message is None:
        return frame
    assert frame.message.invoke_time > PINNED_INVOKE_TIME - 10**12  # set, and not 0 ("now")
    frame.message.invoke_time = PINNED_INVOKE_TIME
    pinned = encode(frame.message, frame.flags)
    return Frame(frame.type_id, frame.flags, pinned[8:], frame.message, frame.offset)


def render(attempts: list[Attempt], version: int) -> str:
    lines: list[str] = []
    for number, attempt in enumerate(attempts, 1):
        if len(attempts) > 1:
            lines.append(f"attempt {number}")
        decoders = {side: Decoder(sender=SENDERS[side], version=version) for side in SENDERS}
        for side, data in attempt.log:
            for frame in decoders[side].receive_data(data):
                frame = pin_invoke_time(frame)
                lines.append(f"{side} {frame.type_id:04x} {frame.flags:04x} {frame.payload.hex() or '-'}")
                lines.append(describe(frame))
        for decoder in decoders.values():
            decoder.eof()
    return "\n".join(lines)


def test_flows_match_the_official_sdk():
    def handle(case: TestCase) -> str:
        version, flow = FLOWS[case.arg("name")]
        assert case.int_arg("version") == version
        return render(flow(), version)

    run_file(FLOWS_FILE, handle)


def parse_golden(expected: str) -> list[dict[str, list[tuple[int, int, bytes, str]]]]:
    """The file's transcript: per attempt, per side, (type, flags, payload, description); "-" = empty."""
    attempts: list[dict[str, list[tuple[int, int, bytes, str]]]] = [{"R": [], "S": []}]
    lines = expected.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("attempt ") and line != "attempt 1":
            attempts.append({"R": [], "S": []})
        elif line[:2] in ("R ", "S "):
            side, type_id, flags, payload = line.split(" ")
            raw = b"" if payload == "-" else bytes.fromhex(payload)
            attempts[-1][side].append((int(type_id, 16), int(flags, 16), raw, lines[i + 1]))
    return attempts


def test_golden_streams_decode_whole_split_and_with_trailing_bytes():
    checked = []

    def handle(case: TestCase) -> str:
        version = case.int_arg("version")
        for attempt in parse_golden(case.expected):
            for side, golden in attempt.items():
                wire = b"".join(encode_raw(t, p, f) for t, f, p, _ in golden)
                want = [(t, f, p) for t, f, p, _ in golden]

                def decode(*chunks: bytes, side: str = side) -> list[Frame]:
                    decoder = Decoder(sender=SENDERS[side], version=version)
                    return [f for chunk in chunks for f in decoder.receive_data(chunk)]

                whole = decode(wire)
                assert [(f.type_id, f.flags, f.payload) for f in whole] == want
                assert [describe(f) for f in whole] == [d for *_, d in golden]
                # Canonical protobuf: our encoder reproduces the SDK's bytes from the parsed message.
                assert b"".join(encode(f.message, f.flags) for f in whole) == wire
                for cut in range(len(wire) + 1):
                    assert [(f.type_id, f.flags, f.payload) for f in decode(wire[:cut], wire[cut:])] == want
                trailing = decode(wire + wire[:5])
                assert [(f.type_id, f.flags, f.payload) for f in trailing] == want
                checked.append((case.arg("name"), side, len(want)))
        return case.expected

    run_file(FLOWS_FILE, handle)
    assert {name for name, _, _ in checked} == set(FLOWS)

"""The frame codec: every message type round-trips; every sample decodes whole, split at every byte
and followed by trailing bytes; every malformed input is a ProtocolError that stops the decoder."""

from __future__ import annotations

import struct

import pytest
from google.protobuf.message import Message

from processor.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    REQUESTED_ACK,
    Decoder,
    Frame,
    MessageType,
    ProtocolError,
    Sender,
    decode_payload,
    encode,
    encode_raw,
    is_command,
    is_custom,
    is_journal_entry,
    is_notification,
    message_class,
    pb,
    type_id_of,
    type_name,
)

from .samples import empty_suspension_fields, samples

SAMPLES = samples()


def header(type_id: int, flags: int, length: int) -> bytes:
    return struct.pack(">HHI", type_id, flags, length)


def frames_of(decoder: Decoder, chunks: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for chunk in chunks:
        out += decoder.receive_data(chunk)
    return out


def key(frame: Frame) -> tuple[int, int, bytes, int]:
    return frame.type_id, frame.flags, frame.payload, frame.offset


def test_every_type_id_has_a_class_and_back():
    assert (
        len({int(t) for t in MessageType}) == len(MessageType) == 40
    )  # 8 control, 20 commands, 12 notifications
    for type_id in MessageType:
        cls = message_class(type_id)
        assert type_id_of(cls()) == type_id
        assert type_name(type_id) == cls.DESCRIPTOR.name
    assert type_name(0xFC07) == "custom entry 0xFC07"
    assert type_name(0x0009) == "unknown type 0x0009"


def test_type_ranges():
    assert is_command(MessageType.INPUT_COMMAND) and is_command(0x7FFF)
    assert not is_command(MessageType.END) and not is_command(MessageType.RUN_COMPLETION)
    assert is_notification(MessageType.RUN_COMPLETION) and is_notification(MessageType.SIGNAL_NOTIFICATION)
    assert is_custom(0xFC00) and is_custom(0xFFFF) and not is_custom(0xFBFF)
    assert is_journal_entry(0x0400) and is_journal_entry(0xFC00) and not is_journal_entry(0x0003)


@pytest.mark.parametrize(("type_id", "message"), SAMPLES, ids=lambda v: hex(v) if isinstance(v, int) else "")
def test_round_trip_of_every_message_type(type_id: int, message: Message):
    wire = encode(message)
    assert wire[:2] == type_id.to_bytes(2, "big")
    (frame,) = Decoder().receive_data(wire)
    assert frame.type_id == type_id and frame.flags == 0 and frame.offset == 0
    assert frame.message == message
    assert frame.payload == message.SerializeToString()
    assert encode_raw(frame.type_id, frame.payload, frame.flags) == wire
    assert decode_payload(type_id, frame.payload) == message


def test_requested_ack_round_trips_where_allowed():
    run = pb.RunCommandMessage(result_completion_id=1, name="x")
    proposal = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"v")
    custom = encode_raw(0xFC01, b"\x01\x02", REQUESTED_ACK)
    frames = Decoder().receive_data(encode(run, REQUESTED_ACK) + encode(proposal, REQUESTED_ACK) + custom)
    assert [f.requested_ack for f in frames] == [True, True, True]
    assert not Decoder().receive_data(encode(run))[0].requested_ack
    for message in (pb.StartMessage(), pb.EndMessage(), pb.RunCompletionNotificationMessage()):
        with pytest.raises(ValueError, match="not allowed"):
            encode(message, REQUESTED_ACK)
    with pytest.raises(ValueError, match="not allowed"):
        encode(run, 0x0001)


def stream() -> tuple[bytes, list[tuple[int, int, bytes, int]]]:
    """All samples, some with REQUESTED_ACK, plus custom entries, as one byte stream."""
    wire = b""
    expected = []
    parts = [(t, m.SerializeToString(), REQUESTED_ACK if is_command(t) and t % 2 else 0) for t, m in SAMPLES]
    parts += [(0xFC00, b"", 0), (0xFFFF, b"\x00opaque\xff", REQUESTED_ACK), (0xFDEF, bytes(range(256)), 0)]
    for type_id, payload, flags in parts:
        expected.append((type_id, flags, payload, len(wire)))
        wire += encode_raw(type_id, payload, flags)
    return wire, expected


def test_stream_decodes_whole():
    wire, expected = stream()
    frames = Decoder().receive_data(wire)
    assert [key(f) for f in frames] == expected
    assert all((f.message is None) == is_custom(f.type_id) for f in frames)


def test_stream_decodes_split_at_every_byte():
    wire, expected = stream()
    for cut in range(len(wire) + 1):
        decoder = Decoder()
        assert [key(f) for f in frames_of(decoder, [wire[:cut], wire[cut:]])] == expected, cut
        assert decoder.buffered == 0


def test_stream_decodes_one_byte_at_a_time():
    wire, expected = stream()
    decoder = Decoder()
    assert [key(f) for f in frames_of(decoder, [wire[i : i + 1] for i in range(len(wire))])] == expected


@pytest.mark.parametrize("trailing", [1, 7, 8, 9])
def test_trailing_bytes_wait_for_the_rest_of_their_frame(trailing: int):
    wire, expected = stream()
    extra = encode(pb.CommandAckMessage(command_index=3))[:trailing]  # a 10-byte frame, cut short
    decoder = Decoder()
    assert [key(f) for f in decoder.receive_data(wire + extra)] == expected
    assert decoder.buffered == trailing
    with pytest.raises(ProtocolError, match="stream ended inside a frame") as caught:
        decoder.eof()
    assert caught.value.offset == len(wire)


def test_complete_stream_ends_cleanly():
    decoder = Decoder()
    decoder.receive_data(encode(pb.EndMessage()))
    decoder.eof()
    assert decoder.error is None


def test_input_types_other_than_bytes():
    wire, expected = stream()
    for data in (bytearray(wire), memoryview(wire)):
        assert [key(f) for f in Decoder().receive_data(data)] == expected


# --- errors ------------------------------------------------------------------------------------


def fails(decoder: Decoder, data: bytes, match: str) -> ProtocolError:
    with pytest.raises(ProtocolError, match=match) as caught:
        frames_of(decoder, [data])
    with pytest.raises(ProtocolError, match="stopped by an earlier error"):
        decoder.receive_data(encode(pb.EndMessage()))
    assert decoder.error is caught.value
    return caught.value


GOOD = encode(pb.EndMessage()) + encode(pb.RunCommandMessage(result_completion_id=2))


@pytest.mark.parametrize("type_id", [0x0008, 0x03FF, 0x040F, 0x0415, 0x7FFF, 0x8000, 0x8001, 0x8010, 0xFBFE])
def test_unknown_type_outside_the_custom_range(type_id: int):
    error = fails(Decoder(), GOOD + header(type_id, 0, 0), "unknown message type")
    assert (error.type_id, error.offset) == (type_id, len(GOOD))
    assert f"type 0x{type_id:04X}" in str(error) and f"offset {len(GOOD)}" in str(error)
    assert [f.type_id for f in error.frames] == [MessageType.END, MessageType.RUN_COMMAND]


@pytest.mark.parametrize(
    ("type_id", "flags"),
    [
        (MessageType.RUN_COMMAND, 0x0001),
        (MessageType.RUN_COMMAND, 0x4000),
        (MessageType.RUN_COMMAND, 0xC000),
        (MessageType.START, REQUESTED_ACK),
        (MessageType.END, REQUESTED_ACK),
        (MessageType.RUN_COMPLETION, REQUESTED_ACK),
        (MessageType.SIGNAL_NOTIFICATION, REQUESTED_ACK),
        (0xFC00, 0x0100),
    ],
)
def test_bad_flags(type_id: int, flags: int):
    error = fails(Decoder(), GOOD + header(type_id, flags, 0), "flags")
    assert (error.type_id, error.offset) == (type_id, len(GOOD))


def test_oversized_frame_is_refused_at_its_header():
    decoder = Decoder(max_frame_size=100)
    decoder.receive_data(encode_raw(0xFC00, b"\x00" * 99))
    # The header alone is enough: the 100 payload bytes are never waited for.
    error = fails(decoder, header(MessageType.RUN_COMMAND, 0, 100), "reaches the limit of 100 bytes")
    assert (error.type_id, error.offset) == (MessageType.RUN_COMMAND, 107)
    assert DEFAULT_MAX_FRAME_SIZE == 32 * 1024 * 1024
    fails(Decoder(), header(0xFC00, 0, DEFAULT_MAX_FRAME_SIZE), "reaches the limit")


@pytest.mark.parametrize(
    ("type_id", "payload"),
    [
        (MessageType.START, b"\x0a\x05ab"),  # bytes field longer than the frame
        (MessageType.START, b"\x18"),  # truncated varint
        (MessageType.START, b"\x12\x02\xff\xfe"),  # debug_id is not UTF-8
        (MessageType.RUN_COMMAND, b"\x5a\x01"),  # name: length past the end
        (MessageType.ERROR, b"\x0f"),  # field 1 with the reserved wire type 7
        (MessageType.SIGNAL_NOTIFICATION, b"\x2a\x03\x0a\x09z"),  # nested Value overruns
    ],
)
def test_unparsable_payload(type_id: int, payload: bytes):
    error = fails(Decoder(), GOOD + encode_raw(type_id, payload), f"cannot parse {type_name(type_id)}")
    assert (error.type_id, error.offset) == (type_id, len(GOOD))
    with pytest.raises(ProtocolError, match="cannot parse"):
        decode_payload(type_id, payload)


def test_custom_entries_are_never_parsed():
    frame = Decoder().receive_data(encode_raw(0xFC00, b"\xff\xff\xff not protobuf"))[0]
    assert frame.message is None and frame.payload == b"\xff\xff\xff not protobuf"
    assert decode_payload(0xFC00, b"\xff") is None
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode_payload(0x0009, b"")


@pytest.mark.parametrize(
    ("sender", "message", "why"),
    [
        (Sender.SDK, pb.StartMessage(), "StartMessage may not be sent by the sdk"),
        (Sender.SDK, pb.CommandAckMessage(), "may not be sent by the sdk"),
        (Sender.SDK, pb.InputCommandMessage(), "InputCommandMessage may not be sent by the sdk"),
        (Sender.SDK, pb.RunCompletionNotificationMessage(), "may not be sent by the sdk"),
        (Sender.SDK, pb.SignalNotificationMessage(idx=1, void=pb.Void()), "may not be sent by the sdk"),
        (Sender.RUNTIME, pb.EndMessage(), "EndMessage may not be sent by the runtime"),
        (Sender.RUNTIME, pb.ProposeRunCompletionMessage(), "may not be sent by the runtime"),
        (Sender.RUNTIME, pb.ErrorMessage(), "may not be sent by the runtime"),
    ],
)
def test_types_the_sender_may_not_send(sender: Sender, message: Message, why: str):
    error = fails(Decoder(sender=sender), encode(message), why)
    assert error.type_id == type_id_of(message)


def test_each_side_accepts_its_own_frames():
    sdk = [
        pb.RunCommandMessage(),
        pb.ProposeRunCompletionMessage(value=b""),
        pb.EndMessage(),
        pb.ErrorMessage(),
    ]
    runtime = [pb.StartMessage(), pb.InputCommandMessage(), pb.RunCommandMessage(), pb.CommandAckMessage()]
    runtime += [pb.RunCompletionNotificationMessage(), pb.SignalNotificationMessage()]
    assert len(Decoder(sender=Sender.SDK).receive_data(b"".join(map(encode, sdk)))) == 4
    assert len(Decoder(sender=Sender.RUNTIME).receive_data(b"".join(map(encode, runtime)))) == 6


@pytest.mark.parametrize("version", [5, 6])
def test_v7_only_types_before_v7(version: int):
    fails(
        Decoder(sender=Sender.SDK, version=version), encode(pb.AwaitingOnMessage()), "not part of protocol v"
    )
    fails(Decoder(version=version), encode(pb.ProposeRunCompletionAckMessage()), "since v7")
    awaiting = pb.AwaitingOnMessage(awaiting_on=pb.Future(waiting_completions=[1]))
    assert Decoder(sender=Sender.SDK, version=7).receive_data(encode(awaiting))[0].message == awaiting


def suspension(**fields: object) -> pb.SuspensionMessage:
    return pb.SuspensionMessage(**fields)


TREE = pb.Future(waiting_signals=[1], nested_futures=[pb.Future(waiting_completions=[1])], combinator_type=1)


@pytest.mark.parametrize(
    ("version", "message", "problem"),
    [
        (6, suspension(awaiting_on=TREE), "carries awaiting_on, which protocol v6 does not have"),
        (5, suspension(), "awaits nothing"),
        (7, suspension(waiting_completions=[1]), "fills fields 1-3"),
        (7, suspension(waiting_named_signals=["x"], awaiting_on=TREE), "fills fields 1-3"),
        (7, suspension(), "has no awaiting_on"),
        (7, suspension(awaiting_on=pb.Future(nested_futures=[pb.Future()])), "awaits nothing"),
    ],
)
def test_malformed_suspensions(version: int, message: pb.SuspensionMessage, problem: str):
    error = fails(Decoder(sender=Sender.SDK, version=version), encode(message), problem)
    assert error.type_id == MessageType.SUSPENSION


@pytest.mark.parametrize("version", [5, 6, 7])
def test_well_formed_suspension_of_each_version(version: int):
    sample = next(m for t, m in SAMPLES if t == MessageType.SUSPENSION)
    message = empty_suspension_fields(pb.SuspensionMessage.FromString(sample.SerializeToString()), version)
    (frame,) = Decoder(sender=Sender.SDK, version=version).receive_data(encode(message))
    assert frame.message == message
    # Without a version the decoder takes either form.
    assert Decoder().receive_data(encode(message))[0].message == message


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError, match="not supported"):
        Decoder(version=4)
    with pytest.raises(ValueError, match="not supported"):
        Decoder(version=8)
    with pytest.raises(ValueError, match="positive"):
        Decoder(max_frame_size=0)
    with pytest.raises(TypeError, match="not a service-protocol frame message"):
        encode(pb.Value())
    with pytest.raises(ValueError, match="16 bits"):
        encode_raw(0x10000, b"")

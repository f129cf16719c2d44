"""Frames of the service protocol: a sans-I/O decoder (bytes in, frames out) and the encoder.

Wire format (restate-protocol.md §3.2): an 8-byte big-endian header ``type u16 | flags u16 |
length u32`` followed by ``length`` bytes of protobuf. The only flag is REQUESTED_ACK (0x8000),
legal on commands, run proposals and custom entries; any other flag bit is an error here.

Rules of the decoder:
  * Every frame keeps its raw payload bytes: the journal stores entries as (type id, bytes) and
    replays them byte for byte (``encode_raw``), so nothing is re-encoded on the way back.
  * Known types are parsed into their protobuf message at once, so a garbage payload fails the
    attempt when it arrives, not when it is replayed. Custom entries (0xFC00-0xFFFF) are kept
    unparsed (``message`` is ``None``).
  * An unknown type outside the custom range, a bad flag, a frame of ``max_frame_size`` bytes or
    more (32 MiB by default, Restate's limit), an unparsable payload, a type the sender may not
    send or the negotiated version does not have, and a malformed suspension all raise
    ``ProtocolError`` naming the type and the frame's stream offset. The decoder then refuses
    all further input: after a protocol error the stream cannot be resynchronised.
  * Header faults are reported as soon as the header is in, before the payload is buffered.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple

from google.protobuf.message import DecodeError, Message

from processor.protocol._errors import ProtocolError
from processor.protocol._registry import (
    BY_TYPE,
    CUSTOM_FIRST,
    TYPE_OF_CLASS,
    MessageType,
    is_custom,
    type_name,
)
from processor.protocol._versions import MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, suspension_awaits
from proto.durastate.service_protocol.v1 import protocol_pb2 as pb

REQUESTED_ACK: Final = 0x8000
HEADER_SIZE: Final = 8
DEFAULT_MAX_FRAME_SIZE: Final = 32 * 1024 * 1024
_MAX_PAYLOAD: Final = 0xFFFF_FFFF

_HEADER: Final = struct.Struct(">HHI")
_SUSPENSION: Final = int(MessageType.SUSPENSION)  # a plain int: enum member lookups cost in the frame loop


class Sender(enum.Enum):
    """Whose frames a decoder reads; each side may send only its own message types."""

    RUNTIME = "R"
    SDK = "S"


class Frame(NamedTuple):
    """One decoded frame. ``message`` is ``None`` for custom entries (opaque by design)."""

    type_id: int
    flags: int
    payload: bytes
    message: Message | None
    offset: int  # stream offset of the frame's header

    @property
    def requested_ack(self) -> bool:
        return bool(self.flags & REQUESTED_ACK)


def _allows_ack(type_id: int) -> bool:
    spec = BY_TYPE.get(type_id)
    return spec.allows_ack if spec is not None else is_custom(type_id)


def encode(message: Message, flags: int = 0) -> bytes:
    """One frame holding ``message``; ``flags`` may be ``REQUESTED_ACK`` where the type allows it."""
    type_id = TYPE_OF_CLASS.get(type(message))
    if type_id is None:
        raise TypeError(f"{type(message).__name__} is not a service-protocol frame message")
    return encode_raw(type_id, message.SerializeToString(), flags)


def encode_raw(type_id: int, payload: bytes, flags: int = 0) -> bytes:
    """One frame from a type id and payload bytes as they were received (journal replay)."""
    if not 0 <= type_id <= 0xFFFF:
        raise ValueError(f"type id {type_id} does not fit in 16 bits")
    if flags & ~REQUESTED_ACK or (flags and not _allows_ack(type_id)):
        raise ValueError(f"flags 0x{flags:04X} are not allowed on {type_name(type_id)}")
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit in a frame")
    return _HEADER.pack(type_id, flags, len(payload)) + payload


def decode_payload(type_id: int, payload: bytes) -> Message | None:
    """Parse a stored entry's payload (``None`` for custom entries); ``ProtocolError`` if unparsable."""
    spec = BY_TYPE.get(type_id)
    if spec is None:
        if is_custom(type_id):
            return None
        raise ProtocolError("unknown message type", type_id=type_id)
    try:
        return spec.cls.FromString(payload)
    except DecodeError as error:
        raise ProtocolError(f"cannot parse {spec.cls.DESCRIPTOR.name}: {error}", type_id=type_id) from None


_PARSERS: dict[tuple[Sender | None, int | None], dict[int, type[Message]]] = {}


def _parsers(sender: Sender | None, version: int | None) -> dict[int, type[Message]]:
    """type id -> parser, for exactly the types such a stream may carry (built once per pair:
    an invoker makes a decoder per attempt). Shared: never mutated."""
    parsers = _PARSERS.get((sender, version))
    if parsers is None:
        parsers = _PARSERS[(sender, version)] = {
            spec.type_id: spec.cls
            for spec in BY_TYPE.values()
            if (sender is None or sender.value in spec.senders) and (version is None or version >= spec.since)
        }
    return parsers


class Decoder:
    """Turns the bytes of one invocation stream into frames (h2-style push API).

    ``sender`` restricts the accepted types to those that side may send (``None``: any known
    type). ``version`` is the negotiated protocol version; it enables the checks where versions
    differ (``None`` skips them).
    """

    def __init__(
        self,
        *,
        sender: Sender | None = None,
        version: int | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        if version is not None and not MIN_PROTOCOL_VERSION <= version <= MAX_PROTOCOL_VERSION:
            raise ValueError(
                f"protocol version {version} is not supported "
                f"(supported: {MIN_PROTOCOL_VERSION}-{MAX_PROTOCOL_VERSION})"
            )
        if max_frame_size <= 0:
            raise ValueError("max_frame_size must be positive")
        self._sender = sender
        self._version = version
        self._max_frame_size = max_frame_size
        self._parsers = _parsers(sender, version)
        self._buffer = bytearray()
        self._needed = HEADER_SIZE  # buffered bytes needed before parsing is worth trying
        self._consumed = 0  # stream offset of the first buffered byte
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back because they do not yet form a whole frame."""
        return len(self._buffer)

    @property
    def error(self) -> ProtocolError | None:
        """The protocol error that stopped this decoder, if any."""
        return self._error

    def receive_data(self, data: bytes) -> list[Frame]:
        """Feed the next bytes of the stream; return every frame they complete, in order."""
        if self._error is not None:
            raise ProtocolError(f"decoder stopped by an earlier error: {self._error}")
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._needed:
                return []
            data = bytes(self._buffer)
            self._buffer.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        frames: list[Frame] = []
        try:
            used = self._parse(data, frames)
        except ProtocolError as error:
            error.frames = frames
            self._error = error
            raise
        if used < len(data):
            self._buffer += data[used:]
        self._consumed += used
        return frames

    def eof(self) -> None:
        """The stream ended: raise ``ProtocolError`` if it stopped inside a frame."""
        if self._error is None and self._buffer:
            self._error = ProtocolError(
                f"stream ended inside a frame ({len(self._buffer)} of {self._needed} bytes received)",
                type_id=int.from_bytes(self._buffer[:2], "big") if len(self._buffer) >= 2 else None,
                offset=self._consumed,
            )
            raise self._error

    def _parse(self, data: bytes, frames: list[Frame]) -> int:
        parsers = self._parsers
        unpack = _HEADER.unpack_from
        new_frame = tuple.__new__  # half the cost of Frame(...): this loop runs once per frame
        versioned = self._version is not None
        limit = self._max_frame_size
        size = len(data)
        base = self._consumed
        pos = 0
        while size - pos >= HEADER_SIZE:
            type_id, flags, length = unpack(data, pos)
            parser = parsers.get(type_id)
            if parser is None and type_id < CUSTOM_FIRST:
                raise self._refusal(type_id, base + pos)
            if flags and (flags & ~REQUESTED_ACK or not _allows_ack(type_id)):
                raise ProtocolError(
                    f"flags 0x{flags:04X} not allowed on {type_name(type_id)}",
                    type_id=type_id,
                    offset=base + pos,
                )
            if length >= limit:
                raise ProtocolError(
                    f"frame of {length} bytes reaches the limit of {limit} bytes",
                    type_id=type_id,
                    offset=base + pos,
                )
            end = pos + HEADER_SIZE + length
            if end > size:
                self._needed = HEADER_SIZE + length
                return pos
            payload = data[pos + HEADER_SIZE : end]
            message = None
            if parser is not None:
                try:
                    message = parser.FromString(payload)
                except DecodeError as error:
                    raise ProtocolError(
                        f"cannot parse {parser.DESCRIPTOR.name}: {error}", type_id=type_id, offset=base + pos
                    ) from None
                if type_id == _SUSPENSION and versioned:
                    self._check_suspension(message, base + pos)
            frames.append(new_frame(Frame, (type_id, flags, payload, message, base + pos)))
            pos = end
        self._needed = HEADER_SIZE
        return pos

    def _refusal(self, type_id: int, offset: int) -> ProtocolError:
        spec = BY_TYPE.get(type_id)
        if spec is None:
            return ProtocolError("unknown message type", type_id=type_id, offset=offset)
        name = spec.cls.DESCRIPTOR.name
        if self._version is not None and self._version < spec.since:
            return ProtocolError(
                f"{name} is not part of protocol v{self._version} (since v{spec.since})",
                type_id=type_id,
                offset=offset,
            )
        sender = self._sender.name.lower() if self._sender is not None else "peer"
        return ProtocolError(f"{name} may not be sent by the {sender}", type_id=type_id, offset=offset)

    def _check_suspension(self, message: pb.SuspensionMessage, offset: int) -> None:
        version = self._version
        assert version is not None
        legacy = message.waiting_completions or message.waiting_signals or message.waiting_named_signals
        if version >= 7:
            if legacy:
                problem = "fills fields 1-3, which protocol v7 replaced by awaiting_on"
            elif not message.HasField("awaiting_on"):
                problem = "has no awaiting_on"
            else:
                problem = None
        else:
            has_tree = message.HasField("awaiting_on")
            problem = f"carries awaiting_on, which protocol v{version} does not have" if has_tree else None
        if problem is None:
            awaits = suspension_awaits(message, version)
            if not (awaits.completions or awaits.signals or awaits.named_signals):
                problem = "awaits nothing"
        if problem is not None:
            raise ProtocolError(f"SuspensionMessage {problem}", type_id=MessageType.SUSPENSION, offset=offset)

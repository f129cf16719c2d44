"""Wire messages of the data port beyond the log-server protocol, and the one codec for all.

A frame's payload is the msgpack array ``[request_id, message]``; every message is a tagged,
array-like msgspec Struct, so the decoder picks the type from the tag.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bifrost.core import ReplyMessage, RequestMessage
from bifrost.core._types import LogletParams


class AppendRequest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Append to a loglet through the node that sequences it. The params (from the chain) let
    that node start its sequencer on first use; it does so only if they name it exactly.

    ``appender``/``first_seq``/``prev_seq`` (see bifrost.core's Appender) make a resent batch
    exactly-once and in order: the sequencer's node answers a batch it already took from its
    memory, and takes a new one only right after ``prev_seq`` (0: the appender's first here)."""

    params: LogletParams
    payloads: tuple[bytes, ...]
    appender: int = 0
    first_seq: int = 0
    prev_seq: int = 0


class AppendStatus:
    OK = "ok"
    SEALED = "sealed"
    NOT_SEQUENCER = "not-sequencer"
    WRITE_UNAVAILABLE = "write-unavailable"
    OUT_OF_ORDER = "out-of-order"
    UNAVAILABLE = "unavailable"


class AppendResponse(msgspec.Struct, frozen=True, array_like=True, tag=True):
    status: str
    last_offset: int = 0
    known_global_tail: int = 0
    message: str = ""


class GetTailRequest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The sequencer's view of the tail (fast path while it is alive); params as in AppendRequest."""

    params: LogletParams


class GetTailResponse(msgspec.Struct, frozen=True, array_like=True, tag=True):
    found: bool
    known_global_tail: int = 0
    sealed: bool = False


class WaitForTailRequest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Answer (a TailUpdate) as soon as the loglet's committed tail passes ``known_tail`` or it is
    sealed, or after ``max_wait_ms`` with whatever it is then: a reader on another node learns
    each commit within one message, with nothing polled."""

    params: LogletParams
    known_tail: int
    max_wait_ms: int


class TailUpdate(msgspec.Struct, frozen=True, array_like=True, tag=True):
    found: bool
    """False: this node does not (or no longer) sequence the loglet."""
    tail: int = 0
    sealed: bool = False


class Heartbeat(msgspec.Struct, frozen=True, array_like=True, tag=True):
    node_id: int
    generation: int


class HeartbeatAck(msgspec.Struct, frozen=True, array_like=True, tag=True):
    node_id: int
    generation: int


NodeMessage = (
    AppendRequest
    | AppendResponse
    | GetTailRequest
    | GetTailResponse
    | WaitForTailRequest
    | TailUpdate
    | Heartbeat
    | HeartbeatAck
)
WireMessage = RequestMessage | ReplyMessage | NodeMessage


class WireCodec:
    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(tuple[int, WireMessage])

    def encode(self, request_id: int, message: Any) -> bytes:
        return self._encoder.encode((request_id, message))

    def decode(self, frame: bytes) -> tuple[int, Any]:
        try:
            return self._decoder.decode(frame)
        except msgspec.DecodeError as e:  # the messaging layer drops the connection on ValueError
            raise ValueError(f"malformed message: {e}") from e

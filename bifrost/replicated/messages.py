"""Wire messages of the data port beyond the log-server protocol, and the one codec for all.

A frame's payload is the msgpack array ``[request_id, message]``; every message is a tagged,
array-like msgspec Struct, so the decoder picks the type from the tag. Every integer of a
message (ids, offsets, generations, tails) is a ``WireInt``, in ``[0, 2**63)``: log-servers
encode them as u64 keys, so the decoder refuses anything else as malformed (a constraint
msgspec checks in C while decoding) instead of failing deeper down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from bifrost.core import ReplyMessage, RequestMessage
from bifrost.core._types import LogletParams, WireInt


class AppendRequest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Append to a loglet through the node that sequences it. The params (from the chain) let
    that node start its sequencer on first use; it does so only if they name it exactly.

    ``appender``/``first_seq``/``prev_seq`` (see bifrost.core's Appender) make a resent batch
    exactly-once and in order: the sequencer's node answers a batch it already took from its
    memory, and takes a new one only right after ``prev_seq`` (0: the appender's first here)."""

    params: LogletParams
    payloads: tuple[bytes, ...]
    appender: WireInt = 0
    first_seq: WireInt = 0
    prev_seq: WireInt = 0


class AppendStatus:
    OK = "ok"
    SEALED = "sealed"
    NOT_SEQUENCER = "not-sequencer"
    WRITE_UNAVAILABLE = "write-unavailable"
    OUT_OF_ORDER = "out-of-order"
    UNAVAILABLE = "unavailable"


class AppendResponse(msgspec.Struct, frozen=True, array_like=True, tag=True):
    status: str
    last_offset: WireInt = 0
    known_global_tail: WireInt = 0
    message: str = ""


class GetTailRequest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The sequencer's view of the tail (fast path while it is alive); params as in AppendRequest."""

    params: LogletParams


class GetTailResponse(msgspec.Struct, frozen=True, array_like=True, tag=True):
    found: bool
    known_global_tail: WireInt = 0
    sealed: bool = False


class WaitForTailRequest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Answer (a TailUpdate) as soon as the loglet's committed tail passes ``known_tail`` or it is
    sealed, or after ``max_wait_ms`` with whatever it is then: a reader on another node learns
    each commit within one message, with nothing polled."""

    params: LogletParams
    known_tail: WireInt
    max_wait_ms: WireInt
    with_records: bool = False
    """Also send the newly committed records from ``known_tail`` on, as far as the sequencer's
    record cache has them: a following reader then needs no log-server round trip."""


class TailUpdate(msgspec.Struct, frozen=True, array_like=True, tag=True):
    found: bool
    """False: this node does not (or no longer) sequence the loglet."""
    tail: WireInt = 0
    sealed: bool = False
    first: WireInt = 0
    records: tuple[bytes, ...] = ()
    """Committed records ``first``, ``first + 1``, ... (all below ``tail``), when asked for."""


class Heartbeat(msgspec.Struct, frozen=True, array_like=True, tag=True):
    node_id: WireInt
    generation: WireInt


class HeartbeatAck(msgspec.Struct, frozen=True, array_like=True, tag=True):
    node_id: WireInt
    generation: WireInt


class NodeNotice(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """A one-way message of some other component between nodes (e.g. a partition leader's
    answer to an ingress request): the log only carries it, under ``topic``; ``body`` is that
    component's own encoding."""

    topic: str
    body: bytes


NodeMessage = (
    AppendRequest
    | AppendResponse
    | GetTailRequest
    | GetTailResponse
    | WaitForTailRequest
    | TailUpdate
    | Heartbeat
    | HeartbeatAck
    | NodeNotice
)
WireMessage = RequestMessage | ReplyMessage | NodeMessage


class Batch(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Several messages in one frame (request id 0): what a connection sends in one loop turn.
    Its messages are plain messages: a batch inside a batch does not decode."""

    messages: tuple[tuple[WireInt, WireMessage], ...]


class WireCodec:
    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(tuple[WireInt, WireMessage])
        self._frame_decoder = msgspec.msgpack.Decoder(tuple[WireInt, WireMessage | Batch])

    def encode(self, request_id: int, message: Any) -> bytes:
        return self._encoder.encode((request_id, message))

    def encode_batch(self, messages: Sequence[tuple[int, Any]]) -> bytes:
        return self._encoder.encode((0, Batch(tuple(messages))))

    def decode_all(self, frame: bytes) -> Sequence[tuple[int, Any]]:
        """The messages of a frame, batched or not; ValueError as ``decode``."""
        try:
            request_id, message = self._frame_decoder.decode(frame)
        except msgspec.DecodeError as e:  # includes an integer out of range (WireInt)
            raise ValueError(f"malformed message: {e}") from e
        if type(message) is Batch:
            return message.messages
        return ((request_id, message),)

    def decode(self, frame: bytes) -> tuple[int, Any]:
        """Raises ValueError (the messaging layer then drops the connection) on anything that is
        not a well-formed message with every integer in range."""
        try:
            return self._decoder.decode(frame)  # type: ignore[no-any-return]
        except msgspec.DecodeError as e:  # includes an integer out of range (WireInt)
            raise ValueError(f"malformed message: {e}") from e

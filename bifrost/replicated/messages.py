"""Wire messages of the data port beyond the log-server protocol, and the one codec for all.

A frame's payload is the msgpack array ``[request_id, message]``; every message is a tagged,
array-like msgspec Struct, so the decoder picks the type from the tag. Every integer in a
decoded message (ids, offsets, generations, tails) must lie in ``[0, 2**63)``: the stores encode
them as u64 keys, so anything else is refused here as malformed instead of failing deeper down.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

from bifrost.core import ReplyMessage, RequestMessage
from bifrost.core._types import LogletParams


class AppendRequest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Append to a loglet through the node that sequences it. The params (from the chain) let
    that node start its sequencer on first use; it does so only if they name it exactly."""

    params: LogletParams
    payloads: tuple[bytes, ...]


class AppendStatus:
    OK = "ok"
    SEALED = "sealed"
    NOT_SEQUENCER = "not-sequencer"
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


class Heartbeat(msgspec.Struct, frozen=True, array_like=True, tag=True):
    node_id: int
    generation: int


class HeartbeatAck(msgspec.Struct, frozen=True, array_like=True, tag=True):
    node_id: int
    generation: int


NodeMessage = AppendRequest | AppendResponse | GetTailRequest | GetTailResponse | Heartbeat | HeartbeatAck
WireMessage = RequestMessage | ReplyMessage | NodeMessage


MAX_WIRE_INT = 2**63 - 1

# Per Struct type: (field name, True if it holds one value / False if a tuple of values) for the
# fields that may hold an int or a Struct; bytes, strings, enums and bools need no range check.
_PLANS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _may_hold_ints(t: mi.Type) -> bool:
    if isinstance(t, mi.IntType | mi.StructType):
        return True
    if isinstance(t, mi.UnionType):
        return any(_may_hold_ints(u) for u in t.types)
    return False


def _plan(cls: type) -> tuple[tuple[str, bool], ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        fields: list[tuple[str, bool]] = []
        for f in info.fields:
            if _may_hold_ints(f.type):
                fields.append((f.name, True))
            elif isinstance(f.type, mi.VarTupleType | mi.ListType) and _may_hold_ints(f.type.item_type):
                fields.append((f.name, False))
        plan = _PLANS[cls] = tuple(fields)
    return plan


def _check_ints(value: Any, where: str) -> None:
    if isinstance(value, int):
        if not 0 <= value <= MAX_WIRE_INT:
            raise ValueError(f"malformed message: {where} = {value} is out of range")
    elif isinstance(value, msgspec.Struct):
        for name, single in _plan(type(value)):
            field = getattr(value, name)
            if single:
                _check_ints(field, f"{type(value).__name__}.{name}")
            else:
                for item in field:
                    _check_ints(item, f"{type(value).__name__}.{name}[]")


class WireCodec:
    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(tuple[int, WireMessage])

    def encode(self, request_id: int, message: Any) -> bytes:
        return self._encoder.encode((request_id, message))

    def decode(self, frame: bytes) -> tuple[int, Any]:
        """Raises ValueError (the messaging layer then drops the connection) on anything that is
        not a well-formed message with every integer in range."""
        try:
            request_id, message = self._decoder.decode(frame)
        except msgspec.DecodeError as e:
            raise ValueError(f"malformed message: {e}") from e
        _check_ints(request_id, "request id")
        _check_ints(message, type(message).__name__)
        return request_id, message

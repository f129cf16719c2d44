"""Wire messages of the data port beyond the log-server protocol, and the one codec for all.

A frame's payload is the msgpack array ``[request_id, message]``; every message is a tagged,
array-like msgspec Struct, so the decoder picks the type from the tag. Every integer of a
decoded request (ids, offsets, generations, tails) must lie in ``[0, 2**63)``: log-servers encode
them as u64 keys, so anything else is refused here as malformed instead of failing deeper down.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec
import msgspec.inspect as mi

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


MAX_WIRE_INT = 2**63 - 1


def _int_paths(t: mi.StructType, prefix: str, paths: list[str], tuples: list[str]) -> None:
    """Dotted paths to the integer fields of ``t`` (and to its tuples of integers)."""
    for f in t.fields:
        ft, path = f.type, prefix + f.name
        if isinstance(ft, mi.IntType):
            paths.append(path)
        elif isinstance(ft, mi.StructType):
            _int_paths(ft, path + ".", paths, tuples)
        elif isinstance(ft, mi.VarTupleType | mi.ListType) and isinstance(ft.item_type, mi.IntType):
            tuples.append(path)
        elif _holds_ints(ft):
            raise TypeError(f"{t.cls.__name__}.{path}: a request field the range check cannot follow")


def _holds_ints(t: mi.Type) -> bool:
    if isinstance(t, mi.IntType | mi.StructType):
        return True
    if isinstance(t, mi.UnionType):
        return any(_holds_ints(u) for u in t.types)
    if isinstance(t, mi.VarTupleType | mi.ListType):
        return _holds_ints(t.item_type)
    if isinstance(t, mi.DictType):
        return _holds_ints(t.key_type) or _holds_ints(t.value_type)
    return False


def _range_check(cls: type) -> Callable[[Any], None]:
    """A check of every integer of a request type, compiled to C-level getters (a few hundred ns
    per message: this is on every request's path)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    paths: list[str] = []
    tuples: list[str] = []
    _int_paths(info, "", paths, tuples)
    get_ints = attrgetter(*paths) if paths else (lambda m: ())
    get_tuples = [attrgetter(p) for p in tuples]
    single = len(paths) == 1

    def check(message: Any) -> None:
        values = get_ints(message)
        if single:
            values = (values,)
        for seq in (values, *(g(message) for g in get_tuples)):
            if seq and (min(seq) < 0 or max(seq) > MAX_WIRE_INT):
                raise ValueError(f"malformed message: an integer of {cls.__name__} is out of range")

    return check


# Requests (and one-way notifications) are range-checked: they reach log-server storage, whose
# keys are u64. Replies come from a node this one dialled and authenticated, and only feed cores
# that compare their numbers; repair copies them on as Stores, which the receiving log-server
# checks (the core refuses offsets outside [1, 2**32) as MALFORMED).
_REQUEST_CHECKS: dict[type, Callable[[Any], None]] = {
    cls: _range_check(cls)
    for cls in (*RequestMessage.__args__, AppendRequest, GetTailRequest, WaitForTailRequest, Heartbeat)  # type: ignore[attr-defined]
}


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
        if not 0 <= request_id <= MAX_WIRE_INT:
            raise ValueError(f"malformed message: request id {request_id} is out of range")
        check = _REQUEST_CHECKS.get(type(message))
        if check is not None:
            check(message)
        return request_id, message

"""Several messages in one data-port frame (WireCodec batches, the connection's framing), and the
range check every wire integer gets while decoding."""

from __future__ import annotations

import msgspec
import pytest

from bifrost.core import RequestHeader, ResponseHeader, Status, Store, Stored
from bifrost.core._types import GenerationalNodeId, LogletParams
from bifrost.net.messaging import _Framing
from bifrost.replicated.messages import AppendRequest, AppendResponse, Batch, Heartbeat, WireCodec

CODEC = WireCodec()
PARAMS = LogletParams(1 << 32, GenerationalNodeId(1, 1), 2, (1, 2, 3))


def _store(first: int, *payloads: bytes) -> Store:
    return Store(RequestHeader(PARAMS.loglet_id, 1), first, PARAMS.sequencer, payloads)


def test_a_batch_decodes_to_its_messages_in_order_and_a_single_frame_to_one() -> None:
    messages = [
        (1, _store(1, b"a", b"b")),
        (2, AppendResponse("ok", 7, 8)),
        (0, Heartbeat(3, 4)),
        (9, AppendRequest(PARAMS, (b"x",), appender=5, first_seq=1)),
    ]
    assert list(CODEC.decode_all(CODEC.encode_batch(messages))) == messages
    assert list(CODEC.decode_all(CODEC.encode(4, Heartbeat(1, 2)))) == [(4, Heartbeat(1, 2))]


@pytest.mark.parametrize(
    "frame",
    [
        # a batch inside a batch
        CODEC.encode_batch([(1, Batch(((2, Heartbeat(1, 1)),)))]),
        # an integer out of range inside a batched reply, a request, a request id
        CODEC.encode_batch([(1, Stored(ResponseHeader(-1, 1, False, Status.OK))), (2, Heartbeat(1, 1))]),
        CODEC.encode_batch([(1, Heartbeat(1, 1)), (2, _store(2**63, b"a"))]),
        CODEC.encode_batch([(2**64 - 1, Heartbeat(1, 1)), (2, Heartbeat(1, 1))]),
        msgspec.msgpack.encode((0, ["Batch", [[1]]])),
    ],
)
def test_malformed_batches_are_refused_whole(frame: bytes) -> None:
    with pytest.raises(ValueError, match="malformed"):
        CODEC.decode_all(frame)


def test_a_plain_batch_frame_is_not_a_message() -> None:
    frame = CODEC.encode_batch([(1, Heartbeat(1, 1)), (2, Heartbeat(2, 2))])
    with pytest.raises(ValueError, match="malformed"):
        CODEC.decode(frame)  # decode() is for one message; a batch only decodes with decode_all


def test_messages_too_big_for_one_frame_are_split_in_order_and_none_is_over_the_limit() -> None:
    messages = [(i, _store(i, bytes([i]) * 300)) for i in range(1, 8)]
    limit = 1000  # about three of these stores fit
    framing = _Framing(CODEC, limit)
    payloads = framing.payloads(list(messages), peer="test")
    assert len(payloads) > 1
    assert all(len(p) <= limit for p in payloads)
    assert [m for p in payloads for m in framing.decode_all(p)] == messages
    # A single message over the limit is dropped (the peer would cut the connection for it).
    assert framing.payloads([(1, _store(1, b"x" * 2000))], peer="test") == []

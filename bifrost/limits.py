"""The log's size limits, all derived here from one setting, ``bifrost.max_record_bytes``.

A record may be up to ``max_record_bytes``; an append batch is measured as its payloads plus
``RECORD_OVERHEAD_BYTES`` per record (what any of our encodings adds around one payload: a
msgpack bin header in a Store, a Data entry in a Records reply, a protobuf tag and length on
gRPC), and may cost at most what one largest record costs. The sequencer merges concurrent
appends only up to ``SEQUENCER_BATCH_BYTES``. So every frame on the data port and every gRPC
message fits ``largest batch + ENVELOPE_BYTES`` (headers, loglet params, tags), and a peer that
announces more is cut off before anything is buffered.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024
RECORD_OVERHEAD_BYTES = 32
ENVELOPE_BYTES = 64 * 1024
# Concurrent appends the sequencer sends as one Store (a single larger append goes alone).
SEQUENCER_BATCH_BYTES = 1024 * 1024
SEQUENCER_BATCH_RECORDS = 1000
# Committed records a tail update carries to a remote reader at most (a reader further behind
# reads the rest from log-servers); well inside a frame.
TAIL_PUSH_BYTES = 256 * 1024


def batch_cost(records: Sequence[bytes]) -> int:
    return sum(map(len, records)) + RECORD_OVERHEAD_BYTES * len(records)


def max_batch_cost(max_record_bytes: int) -> int:
    """The most an append batch may cost: exactly one record of the maximum size."""
    return max_record_bytes + RECORD_OVERHEAD_BYTES


def max_frame_bytes(max_record_bytes: int) -> int:
    """The largest data-port frame a node sends or accepts."""
    return max(max_batch_cost(max_record_bytes), SEQUENCER_BATCH_BYTES) + ENVELOPE_BYTES


def log_read_batch_bytes(max_record_bytes: int) -> int:
    """What the entries of one LogRead message cost at most (an entry costing more goes alone):
    within ``grpc_message_bytes``, and what a node reads ahead of a slow follower."""
    return min(SEQUENCER_BATCH_BYTES, max_batch_cost(max_record_bytes))


def grpc_message_bytes(max_record_bytes: int) -> int:
    """gRPC send/receive limit: a LogAppend of the largest batch, or one LogRead message."""
    return max_batch_cost(max_record_bytes) + ENVELOPE_BYTES

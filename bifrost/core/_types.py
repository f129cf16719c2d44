"""Identifiers and loglet parameters shared by every bifrost core."""

from __future__ import annotations

from typing import Annotated

import msgspec

MAX_WIRE_INT = 2**63 - 1
WireInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_WIRE_INT)]
"""Every integer of a message on the data port. Log-servers key their storage by u64, so the
decoder refuses anything outside [0, 2**63) as malformed, in C, before a handler sees it."""

NodeId = WireInt
"""Plain node id (N1, N2, ...). Generations live in `GenerationalNodeId`."""

LogletId = WireInt
"""`log_id << 32 | segment_index`, as in Restate (rendered `<log>_<segment>`)."""

INVALID_OFFSET = 0
OLDEST_OFFSET = 1
MAX_OFFSET = 2**32 - 1
"""Loglet offsets are 1-based u32; 0 means "none" (e.g. an untrimmed loglet's trim point)."""


def loglet_id(log_id: int, segment_index: int) -> LogletId:
    return (log_id << 32) | segment_index


def describe_loglet(lid: LogletId) -> str:
    return f"{lid >> 32}_{lid & 0xFFFFFFFF}"


class GenerationalNodeId(msgspec.Struct, frozen=True, order=True, array_like=True, tag=True):
    """A node process: the generation is bumped (by CAS) at every start, so a restarted
    process can never act as the sequencer its previous incarnation was."""

    node: NodeId
    generation: WireInt

    def __str__(self) -> str:
        return f"N{self.node}:{self.generation}"


class LogletParams(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Immutable for the loglet's life (stored in the chain)."""

    loglet_id: LogletId
    sequencer: GenerationalNodeId
    replication: WireInt
    nodeset: tuple[NodeId, ...]

    def __post_init__(self) -> None:
        if not self.nodeset or len(set(self.nodeset)) != len(self.nodeset):
            raise ValueError(f"nodeset must be non-empty and distinct: {self.nodeset}")
        if not 1 <= self.replication <= len(self.nodeset):
            raise ValueError(f"replication {self.replication} impossible with nodeset {self.nodeset}")

    def __str__(self) -> str:
        nodes = ",".join(f"N{n}" for n in self.nodeset)
        return f"{describe_loglet(self.loglet_id)} seq={self.sequencer} R={self.replication} [{nodes}]"

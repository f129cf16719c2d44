"""The chain of segments of one log: pure values and pure mutations (reference §2.1).

A chain maps base LSN -> segment (a loglet, or a seal marker). Record LSN = base_lsn +
(offset - 1). Mutations return a new `Chain` or raise `ChainError`; the caller writes the
result with compare-and-set on the chain's version, so concurrent reconfigurers race and
exactly one wins. Existing segments' bases never move: the LSN of a record never changes.
"""

from __future__ import annotations

import msgspec

from ._errors import ChainError
from ._types import LogletParams, loglet_id

OLDEST_LSN = 1


class Segment(msgspec.Struct, frozen=True, array_like=True, tag=True):
    index: int
    base_lsn: int
    params: LogletParams | None
    """None marks the seal marker: the chain is sealed at `base_lsn`."""

    @property
    def is_seal_marker(self) -> bool:
        return self.params is None

    def lsn(self, offset: int) -> int:
        return self.base_lsn + offset - 1

    def offset(self, lsn: int) -> int:
        return lsn - self.base_lsn + 1


class Chain(msgspec.Struct, frozen=True, array_like=True, tag=True):
    log_id: int
    segments: tuple[Segment, ...]

    @staticmethod
    def new(log_id: int, params: LogletParams) -> Chain:
        if params.loglet_id != loglet_id(log_id, 0):
            raise ChainError(f"first segment must be loglet {log_id}_0")
        return Chain(log_id, (Segment(0, OLDEST_LSN, params),))

    @property
    def tail(self) -> Segment:
        return self.segments[-1]

    @property
    def sealed(self) -> bool:
        return self.tail.is_seal_marker

    @property
    def next_segment_index(self) -> int:
        return self.tail.index + 1

    def next_loglet_id(self) -> int:
        return loglet_id(self.log_id, self.next_segment_index)

    def end_lsn(self, seg: Segment) -> int | None:
        """First LSN past `seg` (the next segment's base), None for the writable tail."""
        for i, s in enumerate(self.segments):
            if s.index == seg.index and s.base_lsn == seg.base_lsn:
                return self.segments[i + 1].base_lsn if i + 1 < len(self.segments) else None
        raise ChainError(f"segment {seg} not in chain")

    def find(self, lsn: int) -> Segment | None:
        """The loglet segment holding `lsn`, None if trimmed away or at/after a seal marker."""
        found: Segment | None = None
        for s in self.segments:
            if s.base_lsn <= lsn:
                found = s
            else:
                break
        if found is None or found.is_seal_marker:
            return None
        return found

    def segment_of(self, loglet: int) -> Segment | None:
        for s in self.segments:
            if s.params is not None and s.params.loglet_id == loglet:
                return s
        return None

    def append_segment(self, base_lsn: int, params: LogletParams) -> Chain:
        """Add a writable tail at `base_lsn`. An empty tail segment (or a seal marker) at the
        same base is replaced; the new segment still takes the next index."""
        tail = self.tail
        if base_lsn < tail.base_lsn:
            raise ChainError(f"base {base_lsn} below the tail's base {tail.base_lsn}")
        if params.loglet_id != self.next_loglet_id():
            raise ChainError(f"new loglet must be {self.next_loglet_id()}, got {params.loglet_id}")
        seg = Segment(self.next_segment_index, base_lsn, params)
        keep = self.segments[:-1] if base_lsn == tail.base_lsn else self.segments
        return Chain(self.log_id, (*keep, seg))

    def seal(self, tail_lsn: int) -> Chain:
        """Seal the chain at `tail_lsn` (idempotent when already sealed)."""
        tail = self.tail
        if tail.is_seal_marker:
            return self
        if tail_lsn < tail.base_lsn:
            raise ChainError(f"seal at {tail_lsn} below the tail's base {tail.base_lsn}")
        marker = Segment(tail.index, tail_lsn, None)
        keep = self.segments[:-1] if tail_lsn == tail.base_lsn else self.segments
        return Chain(self.log_id, (*keep, marker))

    def trim_prefix(self, until_lsn: int) -> Chain:
        """Drop whole segments entirely at or below `until_lsn`; never the tail."""
        segs = list(self.segments)
        while len(segs) > 1 and segs[1].base_lsn <= until_lsn + 1:
            segs.pop(0)
        return Chain(self.log_id, tuple(segs))

    def describe(self) -> str:
        parts = []
        for s in self.segments:
            what = "SEALED" if s.params is None else str(s.params)
            parts.append(f"@{s.base_lsn} #{s.index} {what}")
        return "; ".join(parts)

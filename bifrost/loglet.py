"""The loglet contract: one segment of a virtual log, addressed by 1-based offsets.

::

      trim point      committed records       tail
    ──────┼──────────────────────────────────────┼─────────────►
          t     t+1  ...                    tail-1  tail (first unwritten offset)

- ``enqueue_batch(payloads)`` fixes the batch's position in the loglet at call time: batches
  appear in the order of the calls. The returned awaitable resolves with the batch's last offset
  once the batch is committed (durable, and so is everything before it), or fails with
  :class:`~bifrost.errors.LogletSealed`. A batch that failed may still appear to later readers
  (it can be repaired into the sealed tail): the log is at-least-once across a seal. The
  appender's id and sequence numbers (``appender``, ``first_seq``, ``prev_seq``) let a loglet
  whose appends cross a network recognise a resent batch and keep one appender's order (see
  `bifrost.core.Appender`); a loglet that cannot lose a request may ignore them.
- ``find_tail()`` returns the first unwritten offset and whether the loglet is sealed. A reported
  tail never decreases; once sealed at ``t`` it stays sealed at ``t``, and every acknowledged
  offset is below it. ``wait_for_tail(offset)`` returns once the committed tail reaches
  ``offset`` or the loglet is sealed.
- ``read(from_offset)`` yields records in offset order and :class:`TrimGap` for trimmed ranges;
  it never yields an offset at or beyond the committed tail, waits for new records while the
  loglet is open, and ends at the tail once the loglet is sealed (where ``mark_sealed`` says, if
  it was called: the chain's word on where the loglet ends, which a loglet whose copies may
  disagree must prefer over its own find-tail).
- ``seal()`` is idempotent; after it returns no new batch is acknowledged. It returns the sealed
  tail: every acknowledged offset is below it (a replicated loglet repairs up to it first).
- ``trim(offset)`` drops records up to and including ``offset`` (clamped to tail-1; idempotent).

A `LogletProvider` makes the loglets of one kind on one node, by their params (the chain's
segments carry them); Bifrost sees loglets only through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bifrost.core._types import GenerationalNodeId, LogletParams, NodeId


@dataclass(frozen=True, slots=True)
class TailState:
    offset: int
    sealed: bool


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class TrimGap:
    """Offsets ``[from_offset, to_offset]`` were trimmed."""

    from_offset: int
    to_offset: int


LogletEntry = Record | TrimGap


class Loglet(Protocol):
    @property
    def loglet_id(self) -> int: ...

    def enqueue_batch(
        self, payloads: Sequence[bytes], *, appender: int = 0, first_seq: int = 0, prev_seq: int = 0
    ) -> Awaitable[int]: ...

    async def find_tail(self) -> TailState: ...

    async def wait_for_tail(self, offset: int) -> TailState: ...

    async def seal(self) -> int: ...

    def mark_sealed(self, tail: int) -> None: ...

    async def trim(self, offset: int) -> None: ...

    async def get_trim_point(self) -> int: ...

    def read(self, from_offset: int) -> AsyncIterator[LogletEntry]: ...


class LogletProvider(Protocol):
    """The loglets of one kind (memory, local, replicated) as one node sees them."""

    me: GenerationalNodeId
    """This process: the sequencer named in the params of the segments it creates."""

    def loglet(self, params: LogletParams) -> Loglet:
        """The loglet with these params (the same object for the same params)."""
        ...

    def is_dead(self, node: NodeId) -> bool:
        """The failure detector's view: a dead node's sequencers take no appends."""
        ...

    def is_stale(self, process: GenerationalNodeId) -> bool:
        """That process is known to be replaced by a newer generation of its node."""
        ...

    async def close(self) -> None: ...

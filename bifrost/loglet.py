"""The loglet contract: one segment of a virtual log, addressed by 1-based offsets.

::

      trim point      committed records       tail
    ──────┼──────────────────────────────────────┼─────────────►
          t     t+1  ...                    tail-1  tail (first unwritten offset)

- ``enqueue_batch(payloads)`` fixes the batch's position in the loglet at call time: batches
  appear in the order of the calls. The returned awaitable resolves with the batch's last offset
  once the batch is committed (durable, and so is everything before it), or fails with
  :class:`~bifrost.errors.LogletSealed`. A batch that failed may still appear to later readers
  (it can be repaired into the sealed tail): the log is at-least-once across a seal.
- ``find_tail()`` returns the first unwritten offset and whether the loglet is sealed. A reported
  tail never decreases; once sealed at ``t`` it stays sealed at ``t``, and every acknowledged
  offset is below it.
- ``read(from_offset)`` yields records in offset order and :class:`TrimGap` for trimmed ranges;
  it never yields an offset at or beyond the committed tail, waits for new records while the
  loglet is open, and ends at the tail once the loglet is sealed.
- ``seal()`` is idempotent; after it returns no new batch is acknowledged.
- ``trim(offset)`` drops records up to and including ``offset`` (clamped to tail-1; idempotent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol


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

    def enqueue_batch(self, payloads: Sequence[bytes]) -> Awaitable[int]: ...

    async def find_tail(self) -> TailState: ...

    async def seal(self) -> None: ...

    async def trim(self, offset: int) -> None: ...

    async def get_trim_point(self) -> int: ...

    def read(self, from_offset: int) -> AsyncIterator[LogletEntry]: ...

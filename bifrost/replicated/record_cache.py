"""The sequencer's record cache: the loglet's most recently committed records, in memory.

Readers on the sequencer's node take committed records from here instead of asking a
log-server (whose own store may finish after the quorum's), and the sequencer pushes them to
remote readers with each tail update, so a follower learns of a commit and gets its records in
one message. Bounded by records and bytes; the oldest go first. Only committed records are put
here, so anything it returns below the committed tail is part of the log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from bifrost.limits import RECORD_OVERHEAD_BYTES

DEFAULT_MAX_RECORDS = 4096
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class RecordCache:
    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._payloads: deque[bytes] = deque()
        self._first = 0  # offset of _payloads[0]
        self._bytes = 0

    @property
    def first(self) -> int:
        return self._first

    @property
    def end(self) -> int:
        """One past the newest cached offset."""
        return self._first + len(self._payloads)

    def put(self, first: int, payloads: Sequence[bytes]) -> None:
        """Committed records ``first``, ``first + 1``, ...; a batch that does not follow the
        cached ones (commits are in offset order, so only after a gap the cache never saw)
        starts the cache afresh."""
        if first != self.end or not self._payloads:
            self._payloads.clear()
            self._bytes = 0
            self._first = first
        self._payloads.extend(payloads)
        self._bytes += sum(map(len, payloads))
        while self._payloads and (len(self._payloads) > self._max_records or self._bytes > self._max_bytes):
            self._drop_oldest()

    def trim(self, trim_point: int) -> None:
        """Records up to and including ``trim_point`` are gone from the log: readers get a trim
        gap for them from the log-servers, never the cached copy."""
        while self._payloads and self._first <= trim_point:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._bytes -= len(self._payloads.popleft())
        self._first += 1

    def get(self, first: int, end: int, max_bytes: int) -> tuple[bytes, ...]:
        """Records ``first`` .. ``end - 1`` as far as cached and within ``max_bytes`` (counted as
        on the wire); empty unless ``first`` itself is cached."""
        end = min(end, self.end)
        if first < self._first or first >= end:
            return ()
        out: list[bytes] = []
        size = 0
        payloads = self._payloads
        # deque indexing is O(distance from an end); readers ask for the newest records.
        for i in range(first - self._first, end - self._first):
            p = payloads[i]
            size += len(p) + RECORD_OVERHEAD_BYTES
            if size > max_bytes:
                break
            out.append(p)
        return tuple(out)

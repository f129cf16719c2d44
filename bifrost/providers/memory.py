"""In-memory loglets and their provider: the contract with nothing underneath, for tests of the
layers above (see `bifrost.memory_bifrost`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from bifrost.core._types import GenerationalNodeId, LogletParams, NodeId
from bifrost.errors import LogletSealed
from bifrost.loglet import LogletEntry, LogletProvider, TailState
from bifrost.providers._reading import read_loglet, wait_for_offset
from bifrost.tail_watch import TailWatch


class MemoryLoglet:
    def __init__(self, loglet_id: int) -> None:
        self._id = loglet_id
        self._records: dict[int, bytes] = {}
        self._tail = TailWatch()
        self._trim_point = 0

    @property
    def loglet_id(self) -> int:
        return self._id

    def enqueue_batch(
        self, payloads: Sequence[bytes], *, appender: int = 0, first_seq: int = 0, prev_seq: int = 0
    ) -> asyncio.Future[int]:
        # In-process: a batch is never resent, so the appender's sequence numbers are not needed.
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        tail = self._tail.state
        if tail.sealed:
            fut.set_exception(LogletSealed(tail.offset))
            return fut
        for i, payload in enumerate(payloads):
            self._records[tail.offset + i] = payload
        self._tail.advance(tail.offset + len(payloads))
        fut.set_result(tail.offset + len(payloads) - 1)
        return fut

    async def find_tail(self) -> TailState:
        return self._tail.state

    async def wait_for_tail(self, offset: int) -> TailState:
        return await wait_for_offset(self._tail, offset)

    async def seal(self) -> int:
        self._tail.advance(self._tail.state.offset, sealed=True)
        return self._tail.state.offset

    def mark_sealed(self, tail: int) -> None:
        """A single copy's own seal is where the chain ends it: nothing to learn."""

    async def trim(self, offset: int) -> None:
        offset = min(offset, self._tail.state.offset - 1)
        for o in range(self._trim_point + 1, offset + 1):
            self._records.pop(o, None)
        self._trim_point = max(self._trim_point, offset)

    async def get_trim_point(self) -> int:
        return self._trim_point

    def read(self, from_offset: int) -> AsyncIterator[LogletEntry]:
        return read_loglet(from_offset, lambda: self._trim_point, self._tail, self._fetch)

    def _fetch(self, first: int, end: int) -> list[tuple[int, bytes]]:
        return [(o, self._records[o]) for o in range(first, min(end, first + 256)) if o in self._records]


class MemoryProvider(LogletProvider):
    """Loglets in this process's memory; one node, never dead."""

    def __init__(self, me: GenerationalNodeId | None = None) -> None:
        self.me = me or GenerationalNodeId(1, 1)
        self._loglets: dict[int, MemoryLoglet] = {}

    def loglet(self, params: LogletParams) -> MemoryLoglet:
        loglet = self._loglets.get(params.loglet_id)
        if loglet is None:
            loglet = self._loglets[params.loglet_id] = MemoryLoglet(params.loglet_id)
        return loglet

    def is_dead(self, node: NodeId) -> bool:
        return False

    def is_stale(self, process: GenerationalNodeId) -> bool:
        return False

    async def close(self) -> None:
        pass

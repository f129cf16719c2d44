"""An in-memory loglet: the contract with nothing underneath, for tests of the layers above."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from bifrost.errors import LogletSealed
from bifrost.loglet import LogletEntry, TailState
from bifrost.providers._reading import read_loglet
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

    def enqueue_batch(self, payloads: Sequence[bytes]) -> asyncio.Future[int]:
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

    async def seal(self) -> None:
        self._tail.advance(self._tail.state.offset, sealed=True)

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

"""The partition leader's timer service: fires each durable timer at its time, through the log.

Timers live in the partition's timers table (written by the state machine, on every replica);
the leader keeps them in a heap, loaded when it takes over and kept up to date by the
RegisterTimer/DeleteTimer actions. A due timer becomes a `TimerFired` proposal: the state
machine applies it (and deletes the row) on every replica. A timer is proposed once per
leadership; if the proposal is lost the leader steps down and the next one loads it again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from processor.core import TimerFired, TimerKey

log = logging.getLogger(__name__)


class TimerService:
    def __init__(
        self, propose: Callable[[TimerFired], Awaitable[object]], wall_clock_ms: Callable[[], float]
    ) -> None:
        self._propose = propose
        self._now = wall_clock_ms
        self._heap: list[TimerKey] = []
        self._deleted: set[TimerKey] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, timers: Iterable[TimerKey]) -> None:
        self._heap = list(timers)
        heapq.heapify(self._heap)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def register(self, timer: TimerKey) -> None:
        self._deleted.discard(timer)
        heapq.heappush(self._heap, timer)
        self._wake.set()

    def delete(self, timer: TimerKey) -> None:
        self._deleted.add(timer)

    async def _run(self) -> None:
        while True:
            while self._heap and self._heap[0] in self._deleted:
                self._deleted.discard(heapq.heappop(self._heap))
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            due_in = (self._heap[0].wake_up_ms - self._now()) / 1000
            if due_in > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), due_in)
                except TimeoutError:
                    pass
                continue
            timer = heapq.heappop(self._heap)
            try:
                await self._propose(TimerFired(timer))
            except Exception as e:  # the leader steps down on a failed proposal; nothing to add
                log.info("timer not proposed", extra={"error": repr(e)})
                return


def wall_clock_ms() -> float:
    return time.time() * 1000

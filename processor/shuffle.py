"""The partition leader's shuffle: delivers outbox messages to their partitions' logs.

An outbox row is written by the state machine together with the change that produced it (a
call, a one-way call, a call's result). The leader appends each one to the target partition's
log as an `Invoke` or a `Respond`, with dedup ForeignPartition(this partition, outbox index): the
target drops any copy whose index it has seen, so a redelivery (after a leader change, or a
retried append) is harmless. Because the target keeps only the highest index per source,
messages to one target must arrive in index order and none may be skipped: delivery to a target
is sequential, and a failed append is retried with the same index until it succeeds. Delivered
rows are truncated through the own log (`TruncateOutbox`), in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from processor.core import (
    Envelope,
    ForeignPartition,
    OutboxMessage,
    TruncateOutbox,
    delivery,
    encode_envelope,
)
from processor.ids import partition_for_key

log = logging.getLogger(__name__)

_RETRY_S = 0.2


class Shuffle:
    def __init__(
        self,
        partition: int,
        num_partitions: int,
        append: Callable[[int, list[bytes]], Awaitable[int]],
        propose: Callable[[TruncateOutbox], Awaitable[object]],
        wall_clock_ms: Callable[[], float],
    ) -> None:
        self._partition = partition
        self._num = num_partitions
        self._append = append
        self._propose = propose
        self._now = wall_clock_ms
        self._queue: asyncio.Queue[tuple[int, OutboxMessage]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._seen = -1

    def start(self, pending: Iterable[tuple[int, OutboxMessage]]) -> None:
        for index, message in pending:
            self.add(index, message)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def add(self, index: int, message: OutboxMessage) -> None:
        if index > self._seen:  # the table scan and the actions may name a row twice
            self._seen = index
            self._queue.put_nowait((index, message))

    async def _run(self) -> None:
        while True:
            index, message = await self._queue.get()
            command = delivery(message)
            target = partition_for_key(message.partition_key, self._num)
            record = encode_envelope(
                Envelope(command, int(self._now()), ForeignPartition(self._partition, index))
            )
            while True:
                try:
                    await self._append(target, [record])
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the target's log is unavailable: same index again later
                    log.info("outbox delivery retried", extra={"target": target, "error": repr(e)})
                    await asyncio.sleep(_RETRY_S)
            try:
                await self._propose(TruncateOutbox(index))
            except Exception as e:  # the leader steps down on a failed proposal
                log.info("outbox truncation not proposed", extra={"error": repr(e)})
                return

"""Group the items of an async stream into batches of what is ready, for one message per batch.

A follow-mode ``LogRead`` sent one gRPC message per record: on both ends a message costs far more
than a record (about 0.1 ms of CPU each side), so at a few thousand records a second two
followers took a whole core of this 2-core machine and fell behind for good, and the appends
waited for CPU. ``ready_batches`` reads the source in a task of its own and hands the consumer,
each time it asks, every item already read: batches grow with load and a lone record still
leaves at once.

The task reads ahead of the consumer by at most ``budget`` (the items' summed ``cost``) plus one
item, so a consumer that stops asking stops the reading. A batch costs at most ``budget``,
except an item costing more on its own, which goes alone. An error of the source reaches the
consumer after the items read before it; closing the batches stops the source.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

T = TypeVar("T")


async def ready_batches(
    source: AsyncIterator[T], cost: Callable[[T], int], budget: int
) -> AsyncIterator[list[T]]:
    ready: deque[tuple[T, int]] = deque()
    queued = 0  # cost of the items in ready
    ended: list[BaseException | None] = []  # [] while the source runs, then [None] or [its error]
    item_read = asyncio.Event()
    batch_taken = asyncio.Event()

    async def pump() -> None:
        nonlocal queued
        try:
            async for item in source:
                c = cost(item)
                ready.append((item, c))
                queued += c
                item_read.set()
                while queued >= budget:
                    batch_taken.clear()
                    await batch_taken.wait()
            ended.append(None)
        except Exception as e:  # handed to the consumer, which raises it in its own context
            ended.append(e)
        item_read.set()

    task = asyncio.ensure_future(pump())
    try:
        while True:
            if not ready:
                if ended:
                    if ended[0] is not None:
                        raise ended[0]
                    return
                item_read.clear()
                await item_read.wait()
                continue
            item, used = ready.popleft()
            batch = [item]
            while ready and used + ready[0][1] <= budget:
                item, c = ready.popleft()
                batch.append(item)
                used += c
            queued -= used
            batch_taken.set()
            yield batch
    finally:
        # Cancelling the task closes the source where it waits (its own cleanup runs there).
        task.cancel()

"""Group commit for RocksDB: everything submitted in one event-loop turn shares one synced write.

rocksdict holds the GIL for the whole fsync of a synced write (dependencies-measured.md §5.3),
so a writer thread would not let the loop run meanwhile; it would only add a thread hop per
batch. The writer therefore runs on the loop: ``submit`` queues the operations and schedules one
flush with ``call_soon``; the flush builds one WriteBatch from everything queued since and writes
it with ``sync=True``. While that write blocks the loop, new requests pile up in socket buffers
and join the next batch, so batches grow with load on their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from rocksdict import Rdict, WriteBatch, WriteOptions


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """As the value of an op: delete every key in [op key, end)."""

    end: bytes


# A write set: (key, value) puts; value None deletes the key, DeleteRange a key range.
Ops = Sequence[tuple[bytes, bytes | None | DeleteRange]]


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    write_sets: int = 0
    ops: int = 0
    # Histogram of write sets per synced batch, by power-of-two bucket upper bound.
    batch_sizes: dict[int, int] = field(default_factory=dict)

    def record(self, write_sets: int, ops: int) -> None:
        self.batches += 1
        self.write_sets += write_sets
        self.ops += ops
        bucket = 1
        while bucket < write_sets:
            bucket *= 2
        self.batch_sizes[bucket] = self.batch_sizes.get(bucket, 0) + 1


class GroupCommitWriter:
    def __init__(self, db: Rdict, sync: bool = True) -> None:
        self._db = db
        self._opts = WriteOptions()
        self._opts.sync = sync
        self._pending: list[tuple[Ops, asyncio.Future[None]]] = []
        self._scheduled = False
        self._closed = False
        self.stats = WriterStats()

    def submit(self, ops: Ops) -> asyncio.Future[None]:
        """Queue a write set; the future resolves once it is durable, or fails with the write's error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._closed:
            fut.set_exception(RuntimeError("writer is closed"))
            return fut
        self._pending.append((ops, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        batch = WriteBatch(raw_mode=True)
        n_ops = 0
        for ops, _ in pending:
            for key, value in ops:
                if value is None:
                    batch.delete(key)
                elif isinstance(value, DeleteRange):
                    batch.delete_range(key, value.end)
                else:
                    batch.put(key, value)
                n_ops += 1
        try:
            self._db.write(batch, self._opts)
        except Exception as e:  # a failed write fails every write set in it: none is acknowledged
            for _, fut in pending:
                if not fut.done():
                    fut.set_exception(e)
            return
        self.stats.record(len(pending), n_ops)
        for _, fut in pending:
            if not fut.done():
                fut.set_result(None)

    async def close(self) -> None:
        """Flush what is queued, then refuse new writes."""
        self._flush()
        self._closed = True

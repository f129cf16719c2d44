"""Group commit for RocksDB, with the fsync off the event loop.

Everything submitted in one event-loop turn is handed to a writer thread at the end of that
turn; the thread takes every group handed to it since its last sync, writes them as one
WriteBatch (unsynced: quick), then syncs the WAL with ``flush_wal(sync=True)``, which releases
the GIL for the fsync (a synced ``write`` would hold it: dependencies-measured.md §5.3). The
loop keeps running meanwhile (heartbeats, other logs' appends, reads), and requests that arrive
during a sync form the next, larger, group: batches grow with load on their own.

Test hook (chaos): while the file ``fault_file`` holds a number, every sync first sleeps that
many milliseconds (a slow disk). It is read at most every half second, so it costs nothing
when absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rocksdict import Rdict, WriteBatch, WriteOptions


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """As the value of an op: delete every key in [op key, end)."""

    end: bytes


# A write set: (key, value) puts; value None deletes the key, DeleteRange a key range.
Ops = Sequence[tuple[bytes, bytes | None | DeleteRange]]

_FAULT_RECHECK_S = 0.5


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


_Group = list[tuple[Ops, asyncio.Future[None]]]


class GroupCommitWriter:
    def __init__(self, db: Rdict, sync: bool = True, fault_file: Path | None = None) -> None:
        self._db = db
        self._sync = sync
        self._unsynced = WriteOptions()
        self._unsynced.sync = False
        self._fault_file = fault_file
        self._fault_ms = 0
        self._fault_checked = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn: _Group = []  # submitted during the current loop turn
        self._handoff_scheduled = False
        self._cond = threading.Condition()
        self._queued: list[_Group] = []  # handed to the thread, not yet written
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._unresolved: set[asyncio.Future[None]] = set()
        self.stats = WriterStats()

    def submit(self, ops: Ops) -> asyncio.Future[None]:
        """Queue a write set; the future resolves once it is durable, or fails with the write's error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._closed:
            fut.set_exception(RuntimeError("writer is closed"))
            return fut
        if self._thread is None:
            self._loop = loop
            self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._thread.start()
        self._turn.append((ops, fut))
        self._unresolved.add(fut)
        fut.add_done_callback(self._unresolved.discard)
        if not self._handoff_scheduled:
            self._handoff_scheduled = True
            loop.call_soon(self._handoff)
        return fut

    def _handoff(self) -> None:
        self._handoff_scheduled = False
        group, self._turn = self._turn, []
        if group:
            with self._cond:
                self._queued.append(group)
                self._cond.notify()

    # --- the writer thread ---

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queued and not self._stopping:
                    self._cond.wait()
                if not self._queued:
                    return
                groups, self._queued = self._queued, []
            pending = [item for g in groups for item in g]
            error: BaseException | None = None
            n_ops = 0
            try:
                batch = WriteBatch(raw_mode=True)
                put = batch.put
                for ops, _ in pending:
                    n_ops += len(ops)
                    for key, value in ops:
                        if type(value) is bytes:  # nearly every op: a record or a tail
                            put(key, value)
                        elif value is None:
                            batch.delete(key)
                        elif isinstance(value, DeleteRange):
                            batch.delete_range(key, value.end)
                        else:
                            put(key, value)
                self._db.write(batch, self._unsynced)
                if self._sync:
                    self._slow_disk()
                    self._db.flush_wal(True)
            except Exception as e:  # a failed write fails every write set in it: none is acknowledged
                error = e
            if error is None:
                self.stats.record(len(pending), n_ops)
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(_resolve, pending, error)

    def _slow_disk(self) -> None:
        if self._fault_file is None:
            return
        now = time.monotonic()
        if now - self._fault_checked > _FAULT_RECHECK_S:
            self._fault_checked = now
            try:
                self._fault_ms = int(self._fault_file.read_text().strip() or 0)
            except (OSError, ValueError):
                self._fault_ms = 0
        if self._fault_ms > 0:
            time.sleep(self._fault_ms / 1000)

    async def drained(self) -> None:
        """Return once every write set submitted so far is resolved (durable or failed)."""
        while self._unresolved:
            await asyncio.gather(*list(self._unresolved), return_exceptions=True)

    # --- lifecycle ---

    def stop(self) -> None:
        """Write what was handed over, then end the thread (blocking; for reopen and close)."""
        self._handoff()
        self._closed = True
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    async def close(self) -> None:
        """Flush what is queued, then refuse new writes."""
        self._handoff()
        self._closed = True
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        await asyncio.sleep(0)  # let the last resolutions run


def _resolve(pending: _Group, error: BaseException | None) -> None:
    for _, fut in pending:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)

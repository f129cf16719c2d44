"""The sequencer role for one loglet: batches concurrent appends and drives the core sequencer.

Appends made in the same event-loop turn travel as one core ``Append`` (one ``Store`` per
log-server), up to ``SEQUENCER_BATCH_RECORDS`` records costing ``SEQUENCER_BATCH_BYTES``
(bifrost.limits, which sizes the data port's frames to fit); the core's ``Committed`` for that
batch settles each caller with the last offset of its own records.

Callers either get a future (``append``) or pass a callback (``append_then``): a remote append
only turns the outcome into a reply, and a callback called straight from the commit costs one
call, where a future costs an object, a done-callback and a loop turn per append.

Committed batches go into the record cache, for readers on this node and for the tail updates
pushed to readers on others.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from bifrost.core import (
    Append,
    AppendError,
    AppendFailed,
    Committed,
    Sequencer,
    SequencerConfig,
    SequencerState,
)
from bifrost.core._types import LogletParams
from bifrost.errors import LogletSealed, LogletWriteUnavailable, LogUnavailable
from bifrost.limits import (
    RECORD_OVERHEAD_BYTES,
    SEQUENCER_BATCH_BYTES,
    SEQUENCER_BATCH_RECORDS,
    batch_cost,
)
from bifrost.loglet import TailState
from bifrost.replicated.record_cache import RecordCache
from bifrost.replicated.runtime import CoreDriver, Network, now_ms
from bifrost.tail_watch import TailWatch

# Uncommitted records this sequencer holds at most; past it appends are refused at once (the
# appender retries after a backoff) rather than queued without bound.
MAX_INFLIGHT_RECORDS = 65536

# settle(last_offset, None) once the append is committed, or settle(0, error) once it failed;
# called exactly once, from the event loop, and must not raise.
Settle = Callable[[int, BaseException | None], None]


def _settle_future(fut: asyncio.Future[int], last_offset: int, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(last_offset)
    else:
        fut.set_exception(error)


class SequencerService:
    def __init__(self, params: LogletParams, network: Network) -> None:
        self.params = params
        # Stores merge batches up to the same limits as one batch: every Store fits a frame.
        config = SequencerConfig(
            max_store_records=SEQUENCER_BATCH_RECORDS,
            max_store_bytes=SEQUENCER_BATCH_BYTES,
            record_overhead_bytes=RECORD_OVERHEAD_BYTES,
        )
        self._core = Sequencer(params, config, now_ms=now_ms())
        self._driver = CoreDriver(self._core, network, self._on_output)
        self._queued: list[tuple[Sequence[bytes], Settle]] = []
        self._queued_records = 0
        self._flush_scheduled = False
        self._batch_ids = itertools.count(1)
        # batch id -> (its records, (records up to and including each caller's, settle))
        self._waiters: dict[int, tuple[tuple[bytes, ...], list[tuple[int, Settle]]]] = {}
        self.tail = TailWatch()
        self.cache = RecordCache()
        self.batches_sent = 0
        self.records_sent = 0
        self.overloaded = 0

    @property
    def stores_sent(self) -> int:
        return self._core.stores_sent

    @property
    def state(self) -> SequencerState:
        return self._core.state

    @property
    def sealed(self) -> bool:
        return self._core.state is SequencerState.SEALED

    @property
    def known_global_tail(self) -> int:
        return self._core.known_global_tail

    @property
    def tail_state(self) -> TailState:
        return TailState(self._core.known_global_tail, self.sealed)

    def append(self, payloads: Sequence[bytes]) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.append_then(payloads, partial(_settle_future, fut))
        return fut

    def append_then(self, payloads: Sequence[bytes], settle: Settle) -> None:
        """Append; ``settle`` gets the outcome (see ``Settle``), possibly before this returns."""
        core = self._core
        if core.state is SequencerState.SEALED:
            settle(0, LogletSealed(core.known_global_tail))
            return
        inflight = core.next_offset - core.known_global_tail + self._queued_records
        if inflight + len(payloads) > MAX_INFLIGHT_RECORDS and inflight > 0:
            self.overloaded += 1
            settle(0, LogUnavailable(f"sequencer of {self.params} has {inflight} records in flight"))
            return
        self._queued.append((payloads, settle))
        self._queued_records += len(payloads)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        self._queued_records = 0
        i, n = 0, len(queued)
        while i < n:
            batch: list[bytes] = []
            waiters: list[tuple[int, Settle]] = []
            size = 0
            while i < n:
                payloads, settle = queued[i]
                nbytes = batch_cost(payloads)
                if batch and (
                    len(batch) + len(payloads) > SEQUENCER_BATCH_RECORDS
                    or size + nbytes > SEQUENCER_BATCH_BYTES
                ):
                    break
                i += 1
                batch.extend(payloads)
                size += nbytes
                waiters.append((len(batch), settle))
            batch_id = next(self._batch_ids)
            records = tuple(batch)
            self._waiters[batch_id] = (records, waiters)
            self.batches_sent += 1
            self.records_sent += len(batch)
            self._driver.feed(Append(batch_id, records))

    def _on_output(self, out: Any) -> None:
        if isinstance(out, Committed):
            records, waiters = self._waiters.pop(out.batch_id, ((), []))
            self.cache.put(out.first_offset, records)
            first = out.first_offset - 1
            for count, settle in waiters:
                settle(first + count, None)
            self.tail.advance(out.last_offset + 1)
        elif isinstance(out, AppendFailed):
            tail = self._core.known_global_tail
            error: Exception
            if out.reason is AppendError.SEALED:
                error = LogletSealed(tail)
            elif out.reason is AppendError.WRITE_UNAVAILABLE:
                error = LogletWriteUnavailable(
                    f"too few log-servers of {self.params} can write (disk faults); the loglet must be replaced"
                )
            else:
                error = LogUnavailable(f"sequencer cannot append: {out.reason.value}")
            for _, settle in self._waiters.pop(out.batch_id, ((), []))[1]:
                settle(0, error)
            if self.sealed:
                self.tail.advance(tail, sealed=True)
        else:
            raise TypeError(f"unexpected sequencer output {out!r}")

    def hint(self, node: int, alive: bool) -> None:
        self._driver.hint(node, alive)

    def close(self) -> None:
        self._driver.close()
        waiters = [settle for _, ws in self._waiters.values() for _, settle in ws]
        waiters += [settle for _, settle in self._queued]
        self._waiters.clear()
        self._queued.clear()
        self._queued_records = 0
        for settle in waiters:
            settle(0, LogUnavailable("sequencer stopped"))

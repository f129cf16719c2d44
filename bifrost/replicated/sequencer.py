"""The sequencer role for one loglet: batches concurrent appends and drives the core sequencer.

Appends made in the same event-loop turn travel as one core ``Append`` (one ``Store`` per
log-server), up to ``SEQUENCER_BATCH_RECORDS`` records costing ``SEQUENCER_BATCH_BYTES``
(bifrost.limits, which sizes the data port's frames to fit); the core's ``Committed`` for that
batch resolves each caller with the last offset of its own records.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from bifrost.core import Append, AppendError, AppendFailed, Committed, Sequencer, SequencerState
from bifrost.core._types import LogletParams
from bifrost.errors import LogletSealed, LogletWriteUnavailable, LogUnavailable
from bifrost.limits import SEQUENCER_BATCH_BYTES, SEQUENCER_BATCH_RECORDS, batch_cost
from bifrost.loglet import TailState
from bifrost.replicated.runtime import CoreDriver, Network, now_ms
from bifrost.tail_watch import TailWatch

# Uncommitted records this sequencer holds at most; past it appends are refused at once (the
# appender retries after a backoff) rather than queued without bound.
MAX_INFLIGHT_RECORDS = 65536


class SequencerService:
    def __init__(self, params: LogletParams, network: Network) -> None:
        self.params = params
        self._core = Sequencer(params, now_ms=now_ms())
        self._driver = CoreDriver(self._core, network, self._on_output)
        self._queued: list[tuple[Sequence[bytes], asyncio.Future[int]]] = []
        self._flush_scheduled = False
        self._batch_ids = itertools.count(1)
        self._waiters: dict[int, list[tuple[int, asyncio.Future[int]]]] = {}
        self.tail = TailWatch()
        self.batches_sent = 0
        self.records_sent = 0
        self.overloaded = 0

    @property
    def state(self) -> SequencerState:
        return self._core.state

    @property
    def sealed(self) -> bool:
        return self._core.state is SequencerState.SEALED

    @property
    def tail_state(self) -> TailState:
        return TailState(self._core.known_global_tail, self.sealed)

    def append(self, payloads: Sequence[bytes]) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.sealed:
            fut.set_exception(LogletSealed(self._core.known_global_tail))
            return fut
        inflight = (
            self._core.next_offset - self._core.known_global_tail + sum(len(p) for p, _ in self._queued)
        )
        if inflight + len(payloads) > MAX_INFLIGHT_RECORDS and inflight > 0:
            self.overloaded += 1
            fut.set_exception(LogUnavailable(f"sequencer of {self.params} has {inflight} records in flight"))
            return fut
        self._queued.append((payloads, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        while queued:
            batch: list[bytes] = []
            waiters: list[tuple[int, asyncio.Future[int]]] = []
            size = 0
            while queued:
                payloads, fut = queued[0]
                nbytes = batch_cost(payloads)
                if batch and (
                    len(batch) + len(payloads) > SEQUENCER_BATCH_RECORDS
                    or size + nbytes > SEQUENCER_BATCH_BYTES
                ):
                    break
                queued.pop(0)
                batch.extend(payloads)
                size += nbytes
                waiters.append((len(batch), fut))
            batch_id = next(self._batch_ids)
            self._waiters[batch_id] = waiters
            self.batches_sent += 1
            self.records_sent += len(batch)
            self._driver.feed(Append(batch_id, tuple(batch)))

    def _on_output(self, out: Any) -> None:
        if isinstance(out, Committed):
            for count, fut in self._waiters.pop(out.batch_id, []):
                if not fut.done():
                    fut.set_result(out.first_offset + count - 1)
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
            for _, fut in self._waiters.pop(out.batch_id, []):
                if not fut.done():
                    fut.set_exception(error)
            if self.sealed:
                self.tail.advance(tail, sealed=True)
        else:
            raise TypeError(f"unexpected sequencer output {out!r}")

    def hint(self, node: int, alive: bool) -> None:
        self._driver.hint(node, alive)

    def close(self) -> None:
        self._driver.close()
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.set_exception(LogUnavailable("sequencer stopped"))
        self._waiters.clear()
        for _, fut in self._queued:
            if not fut.done():
                fut.set_exception(LogUnavailable("sequencer stopped"))
        self._queued.clear()

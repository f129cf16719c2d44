"""The shell of one log's ordered appender on one node (the policy is `bifrost.core.Appender`).

It turns the core's outputs into I/O: enqueue a tagged batch into a loglet (this node's
sequencer, or the remote one with the appender's sequence numbers), resolve callers' futures,
and bring a newer tail when asked (`Bifrost.bring_tail`: the facade core decides how). Every
outcome goes back into the core as an input, never decided here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bifrost.core import (
    Appender,
    AppenderConfig,
    BatchAcked,
    BatchRefused,
    Enqueue,
    NewBatch,
    RefusalReason,
    Rejected,
    RejectReason,
    Resolved,
    SetTimer,
    TailUnavailable,
    Tick,
    WantTail,
)
from bifrost.errors import (
    LogletSealed,
    LogletWriteUnavailable,
    LogSealed,
    LogUnavailable,
    NoWritableNodeset,
    OutOfOrder,
    SequencerGone,
)
from bifrost.record import tag
from bifrost.replicated.runtime import now_ms
from metadata import MetadataUnavailable, UnknownOutcome

if TYPE_CHECKING:
    from bifrost.bifrost import Bifrost

log = logging.getLogger(__name__)

# Records (and bytes) one log's appender on one node may have in flight: a caller past them
# waits for acknowledgements instead of queueing without bound.
MAX_INFLIGHT_RECORDS = 8192
MAX_INFLIGHT_BYTES = 32 * 1024 * 1024


class LogAppender:
    def __init__(
        self, bifrost: Bifrost, log_id: int, appender_id: int, config: AppenderConfig | None = None
    ) -> None:
        self._bifrost = bifrost
        self._log_id = log_id
        self._appender_id = appender_id
        self._core = Appender(config, now_ms=now_ms())
        self._batch_ids = itertools.count(1)
        self._futures: dict[int, asyncio.Future[int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._feeding = False
        self._queue: list[Any] = []
        self._inflight_records = 0
        self._inflight_bytes = 0
        self._room = asyncio.Event()
        self._room.set()

    @property
    def reappended_records(self) -> int:
        return self._core.reappended_records

    async def append(self, records: Sequence[bytes]) -> int:
        """The LSN of the batch's first record, once the whole batch is committed. Waits first
        while too much is in flight (a batch alone may exceed the limit)."""
        size = sum(len(r) for r in records)
        while self._inflight_records and (
            self._inflight_records + len(records) > MAX_INFLIGHT_RECORDS
            or self._inflight_bytes + size > MAX_INFLIGHT_BYTES
        ):
            self._room.clear()
            await self._room.wait()
        self._inflight_records += len(records)
        self._inflight_bytes += size
        batch_id = next(self._batch_ids)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._futures[batch_id] = fut
        try:
            self._feed(NewBatch(batch_id, tuple(records)))
            return await fut
        finally:
            self._inflight_records -= len(records)
            self._inflight_bytes -= size
            self._room.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in self._tasks:
            task.cancel()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(LogUnavailable("bifrost is closing"))
        self._futures.clear()

    # --- the loop: feed, execute ---

    def _feed(self, inp: Any) -> None:
        self._queue.append(inp)
        if self._feeding:
            return  # an output's handler fed us re-entrantly: the loop below gets to it
        self._feeding = True
        try:
            while self._queue:
                nxt = self._queue.pop(0)
                for out in self._core.step(Tick(now_ms())) + self._core.step(nxt):
                    self._execute(out)
        finally:
            self._feeding = False

    def _execute(self, out: Any) -> None:
        if isinstance(out, Enqueue):
            self._enqueue(out)
        elif isinstance(out, Resolved):
            fut = self._futures.pop(out.batch_id, None)
            if fut is not None and not fut.done():
                fut.set_result(out.first_lsn)
        elif isinstance(out, Rejected):
            fut = self._futures.pop(out.batch_id, None)
            if fut is not None and not fut.done():
                error: Exception
                if out.reason is RejectReason.LOG_SEALED:
                    error = LogSealed(f"log {self._log_id}: {out.detail}; reconfigure it to append")
                elif out.reason is RejectReason.UNAVAILABLE and out.detail.startswith(
                    NoWritableNodeset.__name__
                ):
                    error = NoWritableNodeset(out.detail.split(": ", 1)[1])
                else:
                    error = LogUnavailable(f"append to log {self._log_id} gave up: {out.detail}")
                fut.set_exception(error)
        elif isinstance(out, WantTail):
            self._spawn(self._bring_tail(out))
        elif isinstance(out, SetTimer):
            if self._timer is not None:
                self._timer.cancel()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, (out.at_ms - now_ms()) / 1000), self._feed, Tick(now_ms()))
        else:
            raise TypeError(f"unexpected appender output {out!r}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, out: Enqueue) -> None:
        tagged = [tag(self._appender_id, out.first_seq + i, p) for i, p in enumerate(out.payloads)]
        loglet = self._bifrost.provider.loglet(out.params)
        fut = loglet.enqueue_batch(
            tagged, appender=self._appender_id, first_seq=out.first_seq, prev_seq=out.prev_seq
        )
        lid = out.params.loglet_id

        def done(f: asyncio.Future[int]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                self._feed(BatchAcked(out.batch_id, lid, f.result()))
            else:
                self._feed(BatchRefused(out.batch_id, lid, self._reason(exc, out), str(exc)))

        fut.add_done_callback(done)

    def _reason(self, exc: BaseException, out: Enqueue) -> RefusalReason:
        if isinstance(exc, LogletSealed):
            return RefusalReason.SEALED
        if isinstance(exc, LogletWriteUnavailable):
            return RefusalReason.WRITE_UNAVAILABLE
        if isinstance(exc, OutOfOrder):
            return RefusalReason.OUT_OF_ORDER
        if isinstance(exc, SequencerGone) or self._bifrost.sequencer_is_gone(out.params):
            return RefusalReason.SEQUENCER_GONE
        return RefusalReason.UNREACHABLE

    async def _bring_tail(self, want: WantTail) -> None:
        # What to do for a newer tail (create, reconfigure, wait) is the facade core's decision.
        try:
            tail = await self._bifrost.bring_tail(self._log_id, want.after_version, want.reconfigure)
        except (LogUnavailable, MetadataUnavailable, UnknownOutcome) as e:
            tail = TailUnavailable(str(e))
        if isinstance(tail, TailUnavailable):
            log.info("append waits for the log", extra={"log": self._log_id, "error": tail.detail})
        self._feed(tail)

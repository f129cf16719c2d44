"""Bifrost: the virtual log. Each log is a chain of segments (loglets) kept in the metadata store.

LSNs start at 1 and are dense across segments: a record at offset ``o`` of a segment based at
``b`` has LSN ``b + o - 1``; a new segment starts at the sealed tail of the one before.

This module is a shell: the decisions are in `bifrost.core` and run the same way in the seeded
simulation (tests/sim). Per log and node, `LogFacade` keeps the chain this node knows and runs
find-tail, wait-for-tail, trim, seal and reconfiguration; `Appender` orders appends; each read
walks the chain with a `ReadWalk`. Here they are fed and their I/O is done: the metadata store
(chains, watched), and the loglets of one `LogletProvider` (memory, local or replicated).

**Appends.** Each log has one ordered appender per node (`bifrost.core.Appender`, shell
`bifrost.appender`): batches keep their call order, and a batch resent to the same segment
(a lost request or reply) is written once: the sequencer recognises it by the appender's
sequence numbers. Across a reconfiguration appends are at-least-once: a batch that met a sealed
segment is appended again, in order, to the next one, while the sealed segment may still hold it
(repair keeps everything an f-majority stored), so a reader can see it twice, at two LSNs.
Every record carries its appender's tag (`bifrost.record`), so ``read(..., dedup=True)`` drops
such copies. ``reappended_records`` counts records appended again after a seal.

Reconfiguration: when the tail segment's sequencer is dead (failure detector, or it is an
earlier incarnation of this node), an appender seals it, finds its sealed tail (repairing it
onto a write quorum), and writes a new segment with itself as sequencer by compare-and-set on
the chain; concurrent reconfigurers race and the losers adopt the winner's chain.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from bifrost.appender import LogAppender
from bifrost.chain_store import LogsConfig, cas_chain, chain_key, decode_chain, load_chain, load_logs_config
from bifrost.core import (
    BringTail,
    Call,
    CallDone,
    CallFailed,
    CallRequest,
    CancelCall,
    Chain,
    ChainIs,
    ChainSeen,
    ChainState,
    CreateFirstSegment,
    Emit,
    FacadeOutput,
    Failure,
    FindTail,
    GetChain,
    LogEntry,
    LogFacade,
    LogletEnd,
    LogletFindTail,
    LogletGap,
    LogletRecord,
    LogletSeal,
    LogletTail,
    LogletTrim,
    LogletWaitForTail,
    LogRecord,
    LogTrimGap,
    MarkSealed,
    OpDone,
    OpFailed,
    OpInput,
    ReadChain,
    ReadDone,
    ReadLoglet,
    ReadWalk,
    Reconfigure,
    SealLog,
    SetTimer,
    Tail,
    TailUnavailable,
    Tick,
    TrimLog,
    WaitChainChange,
    WaitForTail,
    WantChain,
    WriteChain,
    nodeset_needs_change,
)
from bifrost.core._types import LogletParams, NodeId
from bifrost.errors import (
    BatchTooLarge,
    InvalidLsn,
    LogUnavailable,
    NoWritableNodeset,
    RecordTooLarge,
    SequencerGone,
    UnknownLog,
)
from bifrost.limits import DEFAULT_MAX_RECORD_BYTES, batch_cost, max_batch_cost
from bifrost.loglet import LogletProvider, Record
from bifrost.policy import WATCH_RETRY_S
from bifrost.record import untag
from bifrost.replicated.runtime import now_ms
from metadata import (
    MetadataStore,
    MetadataUnavailable,
    PreconditionFailed,
    RecordFormatError,
    UnknownOutcome,
)

__all__ = ["Bifrost", "BifrostStats", "LogEntry", "LogRecord", "LogTrimGap"]

log = logging.getLogger(__name__)


# Upper bounds (seconds) of the append latency histogram buckets.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class BifrostStats:
    appended_records: int = 0
    reconfigurations: int = 0
    # Append latency: counts per bucket of LATENCY_BUCKETS_S (last = +Inf), and their sum.
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds


# --- failures: the cores' values <-> this component's exceptions ---------------------------

_FAILURE_OF: tuple[tuple[type[BaseException], Failure], ...] = (
    # most specific first
    (SequencerGone, Failure.SEQUENCER_GONE),
    (NoWritableNodeset, Failure.NO_WRITABLE_NODESET),
    (InvalidLsn, Failure.INVALID_LSN),
    (LogUnavailable, Failure.UNAVAILABLE),
    (PreconditionFailed, Failure.CONFLICT),
    (MetadataUnavailable, Failure.METADATA_UNAVAILABLE),
    (UnknownOutcome, Failure.UNKNOWN_OUTCOME),
    (RecordFormatError, Failure.BAD_CHAIN),
)

_ERROR_OF: dict[Failure, Callable[[str], Exception]] = {
    Failure.UNAVAILABLE: LogUnavailable,
    Failure.SEQUENCER_GONE: SequencerGone,
    Failure.NO_WRITABLE_NODESET: NoWritableNodeset,
    Failure.INVALID_LSN: InvalidLsn,
    Failure.METADATA_UNAVAILABLE: MetadataUnavailable,
    Failure.UNKNOWN_OUTCOME: UnknownOutcome,
    Failure.CONFLICT: LogUnavailable,  # settled inside the core; never ends an operation
    Failure.BAD_CHAIN: RecordFormatError,
}


def failure_of(exc: BaseException) -> Failure:
    for kind, failure in _FAILURE_OF:
        if isinstance(exc, kind):
            return failure
    # Anything else is a fault of that call (a closed connection, a store that failed): the
    # operation may retry it as any unavailability.
    log.warning("bifrost call failed unexpectedly", exc_info=exc)
    return Failure.UNAVAILABLE


# --- one log's facade on this node ----------------------------------------------------------


class _Membership:
    """The facade core's view of the cluster, read from the provider and the node's callbacks."""

    def __init__(self, bifrost: Bifrost) -> None:
        self._bifrost = bifrost

    def sequencer_gone(self, params: LogletParams) -> bool:
        return self._bifrost.sequencer_is_gone(params)

    def writable_nodes(self) -> list[NodeId]:
        return self._bifrost._live_nodes()

    def live_nodes(self) -> list[NodeId]:
        return self._bifrost._all_live_nodes()

    def spare_nodes(self) -> list[NodeId]:
        return self._bifrost._spare_nodes()


class _LogShell:
    """Feeds one log's `LogFacade` and does the I/O it asks for."""

    def __init__(self, bifrost: Bifrost, log_id: int, config: LogsConfig) -> None:
        self._bifrost = bifrost
        self._log_id = log_id
        self.core = LogFacade(
            log_id,
            bifrost.provider.me,
            config.replication,
            _Membership(bifrost),
            bifrost._rng,
            nodeset_size=config.nodeset_size,
            now_ms=now_ms(),
        )
        self._ops = itertools.count(1)
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._calls: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._queue: deque[Any] = deque()
        self._feeding = False

    async def run(self, make: Callable[[int], OpInput]) -> Any:
        op = next(self._ops)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[op] = fut
        self.feed(make(op))
        return await fut

    def feed(self, inp: Any) -> None:
        self._queue.append(inp)
        if self._feeding:
            return  # fed re-entrantly by an output's handler: the loop below gets to it
        self._feeding = True
        try:
            while self._queue:
                nxt = self._queue.popleft()
                for out in self.core.step(Tick(now_ms())) + self.core.step(nxt):
                    self._execute(out)
        finally:
            self._feeding = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in self._calls.values():
            task.cancel()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(LogUnavailable("bifrost is closing"))
        self._futures.clear()

    def _execute(self, out: FacadeOutput) -> None:
        if isinstance(out, Call):
            task = asyncio.ensure_future(self._call(out.call_id, out.request))
            self._calls[out.call_id] = task
        elif isinstance(out, OpDone):
            fut = self._futures.pop(out.op, None)
            if fut is not None and not fut.done():
                fut.set_result(out.value)
        elif isinstance(out, OpFailed):
            fut = self._futures.pop(out.op, None)
            if fut is not None and not fut.done():
                fut.set_exception(_ERROR_OF[out.failure](out.detail))
        elif isinstance(out, MarkSealed):
            self._bifrost.provider.loglet(out.params).mark_sealed(out.end_offset)
        elif isinstance(out, CancelCall):
            task = self._calls.pop(out.call_id, None)
            if task is not None:
                task.cancel()
        elif isinstance(out, SetTimer):
            if self._timer is not None:
                self._timer.cancel()
            delay = max(0.0, (out.at_ms - now_ms()) / 1000)
            self._timer = asyncio.get_running_loop().call_later(delay, self.feed, Tick(out.at_ms))
        else:
            raise TypeError(f"unexpected facade output {out!r}")

    async def _call(self, call_id: int, req: CallRequest) -> None:
        try:
            value = await self._perform(req)
        except asyncio.CancelledError:
            return
        except Exception as e:
            self._calls.pop(call_id, None)
            self.feed(CallFailed(call_id, failure_of(e), str(e)))
            return
        self._calls.pop(call_id, None)
        self.feed(CallDone(call_id, value))

    async def _perform(self, req: CallRequest) -> Any:
        store, provider = self._bifrost._store, self._bifrost.provider
        match req:
            case ReadChain():
                return ChainState(*await load_chain(store, self._log_id))
            case WriteChain(chain=chain, expected_version=expected):
                return await cas_chain(store, chain, expected)
            case LogletFindTail(params=params):
                state = await provider.loglet(params).find_tail()
                return LogletTail(state.offset, state.sealed)
            case LogletWaitForTail(params=params, offset=offset):
                state = await provider.loglet(params).wait_for_tail(offset)
                return LogletTail(state.offset, state.sealed)
            case LogletSeal(params=params):
                return await provider.loglet(params).seal()
            case LogletTrim(params=params, offset=offset):
                await provider.loglet(params).trim(offset)
                return None
        raise TypeError(f"unexpected facade call {req!r}")


class Bifrost:
    def __init__(
        self,
        store: MetadataStore,
        provider: LogletProvider,
        live_nodes: Callable[[], list[int]],
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        rng: random.Random | None = None,
        all_live_nodes: Callable[[], list[int]] | None = None,
        spare_nodes: Callable[[], list[int]] | None = None,
    ) -> None:
        self._store = store
        self._provider = provider
        # Live log-servers that can join a nodeset; and all live ones, whatever their disks.
        self._live_nodes = live_nodes
        self._all_live_nodes = all_live_nodes or live_nodes
        self._spare_nodes: Callable[[], list[int]] = spare_nodes or list
        self._max_record_bytes = max_record_bytes
        self._rng = rng or random.Random()
        self._config: LogsConfig | None = None
        self._logs: dict[int, _LogShell] = {}
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._appenders: dict[int, LogAppender] = {}
        # Random per instance: a restarted process is a new appender, whose sequence numbers
        # never collide with the old one's.
        self.appender_id = self._rng.getrandbits(63) | 1
        self._stats = BifrostStats()

    @property
    def me(self) -> int:
        return self._provider.me.node

    @property
    def provider(self) -> LogletProvider:
        return self._provider

    @property
    def stats(self) -> BifrostStats:
        self._stats.reconfigurations = sum(shell.core.reconfigurations for shell in self._logs.values())
        return self._stats

    async def close(self) -> None:
        for appender in self._appenders.values():
            appender.close()
        for shell in self._logs.values():
            shell.close()
        for task in self._watchers.values():
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        self._watchers.clear()

    # --- configuration and chains ---

    async def logs_config(self) -> LogsConfig:
        if self._config is None:
            self._config = await load_logs_config(self._store)
            if self._config is None:
                raise LogUnavailable("no logs are provisioned in this cluster yet")
        return self._config

    async def _log(self, log_id: int) -> _LogShell:
        """This log's facade here, following its chain's changes from the first use on."""
        shell = self._logs.get(log_id)
        if shell is None:
            config = await self.logs_config()
            if log_id not in config.log_ids:
                raise UnknownLog(log_id)
            shell = self._logs.get(log_id)
            if shell is None:
                shell = self._logs[log_id] = _LogShell(self, log_id, config)
                self._watchers[log_id] = asyncio.ensure_future(self._watch_chain(log_id, shell))
        return shell

    async def chain(self, log_id: int, refresh: bool = False) -> tuple[Chain | None, int | None]:
        shell = await self._log(log_id)
        if not refresh and shell.core.loaded:
            return shell.core.chain, shell.core.version
        state: ChainState = await shell.run(lambda op: GetChain(op, refresh))
        return state.chain, state.version

    async def _watch_chain(self, log_id: int, shell: _LogShell) -> None:
        """Follow chain changes made by other nodes (readers learn where segments end). A value
        that is not a chain is logged and skipped: the last good chain stays in force."""
        key = chain_key(log_id)
        while True:
            try:
                async for found in self._store.watch(key):
                    if found is None:
                        continue
                    try:
                        chain = decode_chain(key, found.value)
                    except RecordFormatError as e:
                        log.error("ignoring a bad chain in the metadata store", extra={"error": str(e)})
                        continue
                    shell.feed(ChainSeen(chain, found.version))
            except (MetadataUnavailable, UnknownOutcome) as e:
                log.info("chain watch interrupted", extra={"log": log_id, "error": str(e)})
                await asyncio.sleep(WATCH_RETRY_S)

    async def names_loglet(self, params: LogletParams) -> bool:
        """Whether ``params`` are exactly those of the tail segment of their log's chain, as this
        node knows it or, failing that, as the metadata store has it now. The only params a
        request from the network may start a sequencer for."""
        log_id = params.loglet_id >> 32
        try:
            config = await self.logs_config()
        except LogUnavailable:
            return False
        if log_id not in config.log_ids:
            return False
        for refresh in (False, True):
            chain, _ = await self.chain(log_id, refresh=refresh)
            if chain is not None and chain.tail.params == params:
                return True
        return False

    async def wait_chain_change(self, log_id: int, version: int | None) -> tuple[Chain | None, int | None]:
        """The chain once it is newer than ``version`` (or as read again after a while)."""
        shell = await self._log(log_id)
        state: ChainState = await shell.run(lambda op: WaitChainChange(op, version))
        return state.chain, state.version

    # --- appends ---

    async def append(self, log_id: int, records: Sequence[bytes]) -> int:
        """Append a batch; return the LSN of its first record once the whole batch is committed."""
        if not records:
            raise ValueError("an append needs at least one record")
        for r in records:
            if len(r) > self._max_record_bytes:
                raise RecordTooLarge(len(r), self._max_record_bytes)
        cost, limit = batch_cost(records), max_batch_cost(self._max_record_bytes)
        if cost > limit:
            raise BatchTooLarge(len(records), cost, limit)
        await self._log(log_id)
        started = asyncio.get_running_loop().time()
        appender = self._appenders.get(log_id)
        if appender is None:
            appender = self._appenders[log_id] = LogAppender(self, log_id, self.appender_id)
        first = await appender.append(records)
        self._stats.appended_records += len(records)
        self._stats.observe_latency(asyncio.get_running_loop().time() - started)
        return first

    async def bring_tail(self, log_id: int, after_version: int | None, reconfigure: bool) -> Tail | TailUnavailable:
        """A tail for the log's appender (its `WantTail`): see `bifrost.core.BringTail`."""
        shell = await self._log(log_id)
        result: Tail | TailUnavailable = await shell.run(lambda op: BringTail(op, after_version, reconfigure))
        return result

    @property
    def reappended_records(self) -> int:
        return sum(a.reappended_records for a in self._appenders.values())

    async def nodeset_needs_change(self, params: LogletParams) -> str | None:
        """Why the open loglet ``params`` should move to a new nodeset (see the core's rule)."""
        config = await self.logs_config()
        live = sorted(set(self._live_nodes()))
        return nodeset_needs_change(params.nodeset, live, config.replication, target=config.nodeset_size)

    def sequencer_is_gone(self, params: LogletParams) -> bool:
        seq = params.sequencer
        if seq.node == self.me:
            return seq != self._provider.me  # an earlier incarnation of this node
        return self._provider.is_dead(seq.node) or self._provider.is_stale(seq)

    async def create_first_segment(self, log_id: int) -> None:
        shell = await self._log(log_id)
        await shell.run(CreateFirstSegment)

    # --- reconfiguration ---

    async def reconfigure(self, log_id: int, expected_version: int | None = None) -> Chain:
        """Seal the tail segment and start a new one sequenced by this node.

        With ``expected_version``, do nothing if the chain already moved past that version
        (someone else reconfigured): the caller just retries on the newer chain.
        """
        shell = await self._log(log_id)
        won = shell.core.reconfigurations
        chain: Chain | None = await shell.run(lambda op: Reconfigure(op, expected_version))
        if chain is None:
            raise LogUnavailable(f"log {log_id} has no segment yet")
        if shell.core.reconfigurations > won:
            log.info("reconfigured", extra={"log": log_id, "chain": chain.describe()})
        return chain

    # --- tail, trim, seal ---

    async def find_tail(self, log_id: int) -> tuple[int, bool]:
        """(next LSN to be written, whether the log is sealed)."""
        shell = await self._log(log_id)
        result: tuple[int, bool] = await shell.run(FindTail)
        return result

    async def trim(self, log_id: int, up_to_lsn: int) -> None:
        """Drop records up to and including ``up_to_lsn`` (which must be below the tail)."""
        shell = await self._log(log_id)
        await shell.run(lambda op: TrimLog(op, up_to_lsn))

    async def seal(self, log_id: int) -> int:
        """Seal the log: no append succeeds until ``reconfigure``. Returns the sealed tail LSN."""
        shell = await self._log(log_id)
        result: int = await shell.run(SealLog)
        return result

    async def wait_for_tail(self, log_id: int, lsn: int) -> int:
        """Wait until the record at ``lsn`` is committed; return the tail (next LSN) seen then."""
        shell = await self._log(log_id)
        result: int = await shell.run(lambda op: WaitForTail(op, lsn))
        return result

    # --- reads ---

    async def read(
        self, log_id: int, from_lsn: int, to_lsn: int | None = None, *, dedup: bool = False
    ) -> AsyncIterator[LogEntry]:
        """Records from ``from_lsn`` in LSN order, across segments, with trim gaps; up to and
        including ``to_lsn`` if given, else following the tail forever. With ``dedup``, a record
        whose tag was seen before in this read (a copy re-appended after a seal) is skipped."""
        if from_lsn < 1:
            raise InvalidLsn(f"LSNs start at 1, got {from_lsn}")
        walk = ReadWalk(from_lsn, to_lsn, dedup=dedup)
        todo = deque(walk.step(ChainIs(*await self.chain(log_id))))
        while todo:
            out = todo.popleft()
            if isinstance(out, Emit):
                yield out.entry
            elif isinstance(out, ReadDone):
                return
            elif isinstance(out, WantChain):
                if out.newer:
                    state = await self.wait_chain_change(log_id, out.after_version)
                else:
                    state = await self.chain(log_id)
                todo.extend(walk.step(ChainIs(*state)))
            elif isinstance(out, ReadLoglet):
                assert out.segment.params is not None
                async with aclosing(self._provider.loglet(out.segment.params).read(out.from_offset)) as stream:
                    async for entry in stream:
                        if isinstance(entry, Record):
                            appender, seq, payload = untag(entry.payload)
                            step = walk.step(LogletRecord(entry.offset, payload, appender, seq))
                        else:
                            step = walk.step(LogletGap(entry.from_offset, entry.to_offset))
                        for o in step:
                            if isinstance(o, Emit):
                                yield o.entry
                            else:  # ReadDone: past to_lsn
                                return
                # The loglet ended where the chain says it does: the walk goes on in the next segment.
                todo.extend(walk.step(LogletEnd()))

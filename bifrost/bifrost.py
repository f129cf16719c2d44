"""Bifrost: the virtual log. Each log is a chain of segments (loglets) kept in the metadata store.

LSNs start at 1 and are dense across segments: a record at offset ``o`` of a segment based at
``b`` has LSN ``b + o - 1``; a new segment starts at the sealed tail of the one before.

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
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bifrost.appender import LogAppender
from bifrost.chain_store import (
    LogsConfig,
    cas_chain,
    chain_key,
    decode_chain,
    load_chain,
    load_logs_config,
)
from bifrost.core import (
    CasChain,
    CasResult,
    Chain,
    NoSafeTail,
    Reconfiguration,
    Reconfigured,
    Segment,
    nodeset_needs_change,
    select_nodeset,
)
from bifrost.core._types import LogletParams, loglet_id
from bifrost.errors import (
    BatchTooLarge,
    InvalidLsn,
    LogUnavailable,
    NoWritableNodeset,
    RecordTooLarge,
    UnknownLog,
)
from bifrost.limits import DEFAULT_MAX_RECORD_BYTES, batch_cost, max_batch_cost
from bifrost.loglet import Record, TrimGap
from bifrost.policy import CHAIN_WAIT_S, RECONFIGURE_TIMEOUT_S, WATCH_RETRY_S
from bifrost.record import untag
from bifrost.replicated.loglet import no_safe_tail
from bifrost.replicated.provider import ReplicatedProvider
from bifrost.replicated.runtime import CoreDriver, now_ms
from metadata import (
    MetadataStore,
    MetadataUnavailable,
    PreconditionFailed,
    RecordFormatError,
    UnknownOutcome,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LogRecord:
    lsn: int
    payload: bytes
    # The appender's tag (see bifrost.record): equal tags at two LSNs are one re-appended
    # record. Not part of equality: a record is its LSN and its bytes.
    appender: int = field(default=0, compare=False)
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class LogTrimGap:
    """LSNs ``[from_lsn, to_lsn]`` were trimmed."""

    from_lsn: int
    to_lsn: int


LogEntry = LogRecord | LogTrimGap


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


class Bifrost:
    def __init__(
        self,
        store: MetadataStore,
        provider: ReplicatedProvider,
        live_nodes: Callable[[], list[int]],
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        rng: random.Random | None = None,
        all_live_nodes: Callable[[], list[int]] | None = None,
    ) -> None:
        self._store = store
        self._provider = provider
        # Live log-servers that can join a nodeset; and all live ones, whatever their disks.
        self._live_nodes = live_nodes
        self._all_live_nodes = all_live_nodes or live_nodes
        self._max_record_bytes = max_record_bytes
        self._rng = rng or random.Random()
        self._config: LogsConfig | None = None
        self._chains: dict[int, tuple[Chain | None, int | None]] = {}
        self._chain_changed: dict[int, asyncio.Event] = {}
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._reconfig_locks: dict[int, asyncio.Lock] = {}
        self._appenders: dict[int, LogAppender] = {}
        # Random per instance: a restarted process is a new appender, whose sequence numbers
        # never collide with the old one's.
        self.appender_id = self._rng.getrandbits(63) | 1
        self.stats = BifrostStats()

    @property
    def me(self) -> int:
        return self._provider.me.node

    @property
    def provider(self) -> ReplicatedProvider:
        return self._provider

    async def close(self) -> None:
        for appender in self._appenders.values():
            appender.close()
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

    async def _check_log(self, log_id: int) -> LogsConfig:
        config = await self.logs_config()
        if log_id not in config.log_ids:
            raise UnknownLog(log_id)
        return config

    async def chain(self, log_id: int, refresh: bool = False) -> tuple[Chain | None, int | None]:
        await self._check_log(log_id)
        self._ensure_watch(log_id)
        if refresh or log_id not in self._chains:
            self._adopt(log_id, *await load_chain(self._store, log_id))
        return self._chains[log_id]

    def _adopt(self, log_id: int, chain: Chain | None, version: int | None) -> None:
        current = self._chains.get(log_id)
        if current is not None and current[1] is not None and (version is None or version < current[1]):
            return  # never go back to an older chain
        self._chains[log_id] = (chain, version)
        if chain is not None:
            # Every segment but the tail has a known end: its loglet is sealed there.
            for seg, nxt in zip(chain.segments, chain.segments[1:], strict=False):
                if seg.params is not None:
                    self._provider.loglet(seg.params).mark_sealed(seg.offset(nxt.base_lsn))
        event = self._chain_changed.pop(log_id, None)
        if event is not None:
            event.set()

    def _ensure_watch(self, log_id: int) -> None:
        if log_id not in self._watchers:
            self._watchers[log_id] = asyncio.ensure_future(self._watch_chain(log_id))

    async def _watch_chain(self, log_id: int) -> None:
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
                    self._adopt(log_id, chain, found.version)
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

    async def wait_chain_change(self, log_id: int, version: int | None, timeout_s: float) -> None:
        if self._chains.get(log_id, (None, None))[1] != version:
            return
        event = self._chain_changed.setdefault(log_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            self._adopt(log_id, *await load_chain(self._store, log_id))

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
        await self._check_log(log_id)
        started = asyncio.get_running_loop().time()
        appender = self._appenders.get(log_id)
        if appender is None:
            appender = self._appenders[log_id] = LogAppender(self, log_id, self.appender_id)
        first = await appender.append(records)
        self.stats.appended_records += len(records)
        self.stats.observe_latency(asyncio.get_running_loop().time() - started)
        return first

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
        config = await self.logs_config()
        nodeset = self._nodeset(config)
        params = LogletParams(loglet_id(log_id, 0), self._provider.me, config.replication, nodeset)
        try:
            version = await cas_chain(self._store, Chain.new(log_id, params), None)
            self._adopt(log_id, Chain.new(log_id, params), version)
            log.info("log created", extra={"log": log_id, "nodeset": nodeset})
        except PreconditionFailed:
            await self.chain(log_id, refresh=True)

    def _nodeset(self, config: LogsConfig) -> tuple[int, ...]:
        # Only live nodes whose stores can take writes (this one included, if it can).
        live = sorted(set(self._live_nodes()))
        nodeset = select_nodeset(self.me, live, config.replication, self._rng, target=config.nodeset_size)
        if nodeset is None:
            alive = self._all_live_nodes()
            if len(alive) >= config.replication:
                raise NoWritableNodeset(
                    f"only {len(live)} of {len(alive)} live log-servers can take writes, replication "
                    f"{config.replication} needs more (see the nodes' /health for why)"
                )
            raise LogUnavailable(
                f"only {len(alive)} live log-servers, replication {config.replication} needs more"
            )
        return nodeset

    # --- reconfiguration ---

    async def reconfigure(self, log_id: int, expected_version: int | None = None) -> Chain:
        """Seal the tail segment and start a new one sequenced by this node.

        With ``expected_version``, do nothing if the chain already moved past that version
        (someone else reconfigured): the caller just retries on the newer chain.
        """
        lock = self._reconfig_locks.setdefault(log_id, asyncio.Lock())
        async with lock:
            chain, version = await self.chain(log_id, refresh=True)
            if expected_version is not None and version != expected_version:
                assert chain is not None
                return chain
            if chain is None:
                await self.create_first_segment(log_id)
                chain, _ = self._chains[log_id]
                assert chain is not None
                return chain
            config = await self.logs_config()
            nodeset = self._nodeset(config)
            assert version is not None
            if chain.tail.params is None:
                new_chain = chain.append_segment(
                    chain.tail.base_lsn,
                    LogletParams(chain.next_loglet_id(), self._provider.me, config.replication, nodeset),
                )
                await self._cas(log_id, new_chain, version)
                return self._chains[log_id][0] or new_chain
            result = await self._run_reconfiguration(log_id, chain, version, nodeset, config.replication)
            self.stats.reconfigurations += 1 if result.won else 0
            log.info(
                "reconfigured",
                extra={"log": log_id, "won": result.won, "sealed_tail": result.sealed_tail},
            )
            final, _ = await self.chain(log_id, refresh=True)
            assert final is not None
            return final

    async def _cas(self, log_id: int, chain: Chain, version: int) -> bool:
        """Write ``chain`` iff the stored one is still at ``version``; True iff ours is stored.

        The metadata store may be between leaders: an unavailable write is retried, and a write
        of unknown outcome is settled by reading the chain back (ours, or someone else's)."""
        delay = CHAIN_WAIT_S / 10
        while True:
            try:
                new_version = await cas_chain(self._store, chain, version)
            except PreconditionFailed:
                await self.chain(log_id, refresh=True)
                return False
            except (MetadataUnavailable, UnknownOutcome) as e:
                log.info("chain write retried", extra={"log": log_id, "error": str(e)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, CHAIN_WAIT_S)
                try:
                    stored, stored_version = await load_chain(self._store, log_id)
                except (MetadataUnavailable, UnknownOutcome):
                    continue
                if stored_version is not None and stored_version != version:
                    self._adopt(log_id, stored, stored_version)
                    return stored == chain
                continue
            self._adopt(log_id, chain, new_version)
            return True

    async def _run_reconfiguration(
        self, log_id: int, chain: Chain, version: int, nodeset: tuple[int, ...], replication: int
    ) -> Reconfigured:
        tail_params = chain.tail.params
        assert tail_params is not None
        old = self._provider.sequencer(tail_params)
        known = old.tail_state.offset if old is not None else 1
        core = Reconfiguration(
            self._provider.me,
            chain,
            version,
            nodeset,
            replication,
            now_ms=now_ms(),
            known_global_tail=known,
            non_authoritative=self._provider.non_authoritative(tail_params.loglet_id),
        )
        done: asyncio.Future[Reconfigured] = asyncio.get_running_loop().create_future()

        def on_output(out: Any) -> None:
            if isinstance(out, CasChain):
                asyncio.ensure_future(cas(out))
            elif isinstance(out, Reconfigured) and not done.done():
                done.set_result(out)
            elif isinstance(out, NoSafeTail) and not done.done():
                done.set_exception(no_safe_tail(tail_params, out))

        async def cas(out: CasChain) -> None:
            ok = await self._cas(log_id, out.chain, out.expected_version)
            driver.feed(CasResult(ok))

        driver = CoreDriver(core, self._provider.network, on_output)
        for node in tail_params.nodeset:
            if self._provider.is_dead(node):
                driver.hint(node, alive=False)
        driver.kick()
        try:
            return await asyncio.wait_for(done, RECONFIGURE_TIMEOUT_S)
        except TimeoutError:
            # Its f-majority may be down: let the lock go, the next append or watchdog round
            # tries again with what the nodes look like then.
            raise LogUnavailable(
                f"reconfiguration of log {log_id} did not finish within {RECONFIGURE_TIMEOUT_S:g}s"
            ) from None
        finally:
            driver.close()

    # --- tail, trim, seal ---

    async def find_tail(self, log_id: int) -> tuple[int, bool]:
        """(next LSN to be written, whether the log is sealed)."""
        chain, version = await self.chain(log_id)
        if chain is None:
            return 1, False
        if chain.tail.params is not None and self.sequencer_is_gone(chain.tail.params):
            # Only a live sequencer knows an open segment's tail: replace a dead one first.
            chain = await self.reconfigure(log_id, expected_version=version)
        seg = chain.tail
        if seg.params is None:
            return seg.base_lsn, True
        tail = await self._provider.loglet(seg.params).find_tail()
        if tail.sealed:
            # A sealed tail segment whose successor is not in the chain yet: extend the chain,
            # so the tail we report is the one the chain fixes, not this node's own find-tail.
            chain = await self.reconfigure(log_id, expected_version=version)
            seg = chain.tail
            if seg.params is None:
                return seg.base_lsn, True
            tail = await self._provider.loglet(seg.params).find_tail()
        return seg.lsn(tail.offset), False

    async def trim(self, log_id: int, up_to_lsn: int) -> None:
        """Drop records up to and including ``up_to_lsn`` (which must be below the tail)."""
        if up_to_lsn < 1:
            raise InvalidLsn(f"trim point must be >= 1, got {up_to_lsn}")
        tail, _ = await self.find_tail(log_id)
        if up_to_lsn >= tail:
            raise InvalidLsn(f"cannot trim log {log_id} up to {up_to_lsn}: its tail is {tail}")
        chain, version = await self.chain(log_id)
        assert chain is not None and version is not None
        for seg, end in _segments_with_end(chain):
            if seg.params is None or seg.base_lsn > up_to_lsn:
                continue
            last = up_to_lsn if end is None else min(up_to_lsn, end - 1)
            if last >= seg.base_lsn:
                await self._provider.loglet(seg.params).trim(seg.offset(last))
        trimmed = chain.trim_prefix(up_to_lsn)
        if trimmed != chain:
            await self._cas(log_id, trimmed, version)

    async def seal(self, log_id: int) -> int:
        """Seal the log: no append succeeds until ``reconfigure``. Returns the sealed tail LSN."""
        while True:
            chain, version = await self.chain(log_id, refresh=True)
            if chain is None:
                raise LogUnavailable(f"log {log_id} has no segment yet")
            seg = chain.tail
            if seg.params is None:
                return seg.base_lsn
            loglet = self._provider.loglet(seg.params)
            await loglet.seal()
            tail = await loglet.find_tail()
            assert version is not None
            if await self._cas(log_id, chain.seal(seg.lsn(tail.offset)), version):
                return seg.lsn(tail.offset)

    async def wait_for_tail(self, log_id: int, lsn: int) -> int:
        """Wait until the record at ``lsn`` is committed; return the tail (next LSN) seen then."""
        while True:
            chain, version = await self.chain(log_id)
            if chain is None:
                await self.wait_chain_change(log_id, version, timeout_s=CHAIN_WAIT_S)
                continue
            seg = chain.tail
            if lsn < seg.base_lsn:
                return seg.base_lsn  # committed in an earlier, sealed segment
            if seg.params is None:  # the log is sealed before lsn
                await self.wait_chain_change(log_id, version, timeout_s=CHAIN_WAIT_S)
                continue
            try:
                state = await self._provider.loglet(seg.params).wait_for_tail(seg.offset(lsn + 1))
            except LogUnavailable:
                if not self.sequencer_is_gone(seg.params):
                    raise
                await self.reconfigure(log_id, expected_version=version)
                continue
            tail = seg.lsn(state.offset)
            if tail > lsn:
                return tail
            await self.wait_chain_change(log_id, version, timeout_s=CHAIN_WAIT_S)

    # --- reads ---

    async def read(
        self, log_id: int, from_lsn: int, to_lsn: int | None = None, *, dedup: bool = False
    ) -> AsyncIterator[LogEntry]:
        """Records from ``from_lsn`` in LSN order, across segments, with trim gaps; up to and
        including ``to_lsn`` if given, else following the tail forever. With ``dedup``, a record
        whose tag was seen before in this read (a copy re-appended after a seal) is skipped."""
        if from_lsn < 1:
            raise InvalidLsn(f"LSNs start at 1, got {from_lsn}")
        seen: dict[int, int] = {}
        async for entry in self._read(log_id, from_lsn, to_lsn):
            if dedup and isinstance(entry, LogRecord):
                if entry.seq <= seen.get(entry.appender, 0):
                    continue
                seen[entry.appender] = entry.seq
            yield entry

    async def _read(self, log_id: int, from_lsn: int, to_lsn: int | None) -> AsyncIterator[LogEntry]:
        lsn = from_lsn
        while to_lsn is None or lsn <= to_lsn:
            chain, version = await self.chain(log_id)
            if chain is None:
                await self.wait_chain_change(log_id, version, timeout_s=CHAIN_WAIT_S)
                continue
            head = chain.segments[0].base_lsn
            if lsn < head:
                yield LogTrimGap(lsn, head - 1)
                lsn = head
                continue
            seg = chain.find(lsn)
            if seg is None:  # at a seal marker: wait for the next segment
                await self.wait_chain_change(log_id, version, timeout_s=CHAIN_WAIT_S)
                continue
            assert seg.params is not None
            async for entry in self._provider.loglet(seg.params).read(seg.offset(lsn)):
                if isinstance(entry, Record):
                    appender, seq, payload = untag(entry.payload)
                    yield LogRecord(seg.lsn(entry.offset), payload, appender, seq)
                    lsn = seg.lsn(entry.offset) + 1
                elif isinstance(entry, TrimGap):
                    yield LogTrimGap(seg.lsn(entry.from_offset), seg.lsn(entry.to_offset))
                    lsn = seg.lsn(entry.to_offset) + 1
                if to_lsn is not None and lsn > to_lsn:
                    return
            # The loglet ended where the chain says it does: the loop continues in the next
            # segment (chain.find maps the next LSN there).


def _segments_with_end(chain: Chain) -> list[tuple[Segment, int | None]]:
    segs = list(chain.segments)
    return [(s, segs[i + 1].base_lsn if i + 1 < len(segs) else None) for i, s in enumerate(segs)]

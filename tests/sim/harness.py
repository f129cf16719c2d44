"""Deterministic simulation of bifrost: the replicated loglet's cores and, above them, the
facade's cores exactly as `bifrost.bifrost` runs them.

One `random.Random(seed)` draws the whole run ("swarm"): cluster size, replication, network
delay/loss/duplication, partitions, crash and restart rates, disk latency, metadata faults,
workload. All nodes run in one thread over a virtual millisecond clock and an event heap
ordered by (time, seq).

Each node has a durable disk (`MemoryLogStore`) and a process: a `LogServer` core, the
`Sequencer` of every loglet it sequences, seal/find-tail/trim tasks and `ReadStream`s, and
its Bifrost: one `LogFacade` and one ordered `Appender` for the log, a `ReadWalk` per read.
What the shells in `bifrost/` do is done here, on the simulated network and metadata store:
the appender's batches go to the local sequencer or, as remote appends, through the sequencer
node's ledger (`bifrost.replicated.provider._Ledger`, the real one) so a resent batch is
written once; the facade's calls (read or compare-and-set the chain, find-tail, seal, trim,
wait-for-tail of a loglet) run as the replicated loglet runs them. A crash loses the process
(every core, every unsynced write, its callers' pending appends); the disk survives; a restart
bumps the generation and starts a new appender (new id).

The workload: clients append pipelined batches through their node's appender; tail readers
follow the log with `ReadWalk`s; tail waiters call wait-for-tail; a trimmer trims; an operator
sometimes seals the log and later reconfigures it; the watchdog (lowest live node) replaces
dead sequencers, and random nodes reconfigure for no reason. The metadata store sometimes
fails a request or loses the reply of a chain write (unknown outcome).

Invariants are checked as events happen (see `Checker`), then a liveness phase heals the
cluster and every pending append must complete; finally every node reads the whole log.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bifrost.core import (
    Append,
    Appender,
    AppenderConfig,
    AppendError,
    AppendFailed,
    BatchAcked,
    BatchRefused,
    BringTail,
    Cached,
    Call,
    CallDone,
    CallFailed,
    CancelCall,
    Chain,
    ChainIs,
    ChainSeen,
    ChainState,
    Committed,
    Consumed,
    CreateFirstSegment,
    Deliver,
    DeliverTrimGap,
    Emit,
    Enqueue,
    FacadeConfig,
    Failure,
    FindTail,
    FindTailTask,
    GenerationalNodeId,
    GetChain,
    LogFacade,
    LogletEnd,
    LogletFindTail,
    LogletGap,
    LogletParams,
    LogletRecord,
    LogletSeal,
    LogletTail,
    LogletTrim,
    LogletWaitForTail,
    LogRecord,
    LogServer,
    LogTrimGap,
    MarkSealed,
    MemoryLogStore,
    NewBatch,
    NodeAlive,
    NodeDead,
    NoSafeTail,
    OpDone,
    OpFailed,
    Persist,
    Persisted,
    PutRecords,
    ReadChain,
    ReadDone,
    ReaderConfig,
    ReaderState,
    ReadLoglet,
    ReadStream,
    ReadWalk,
    Reconfigure,
    RefusalReason,
    Rejected,
    Reply,
    Request,
    Resolved,
    Response,
    SealLog,
    Send,
    Sequencer,
    SequencerConfig,
    SequencerState,
    SetTail,
    SetTimer,
    TailFound,
    TaskConfig,
    Tick,
    Trim,
    TrimDone,
    TrimLog,
    TrimTask,
    WaitChainChange,
    WaitForTail,
    WantChain,
    WantTail,
    WriteChain,
    describe,
    loglet_id,
)
from bifrost.limits import TAIL_PUSH_BYTES
from bifrost.record import tag, untag
from bifrost.replicated.messages import AppendRequest
from bifrost.replicated.provider import _Ledger
from bifrost.replicated.record_cache import RecordCache

LOG_ID = 7
REMOTE_TIMEOUT_MS = 300
TAIL_POLL_MS = 20


# isinstance with a tuple: a union (A | B) is built anew at every call of a hot path.
_SEQUENCER_OUTCOMES = (Committed, AppendFailed)


class InvariantViolation(AssertionError):
    pass


@dataclass(frozen=True)
class SwarmConfig:
    nodes: int
    replication: int
    initial_nodeset: tuple[int, ...]
    """Empty: the log has no chain at the start (the first appender creates it)."""
    clients: int
    pipeline: int
    """Batches a client has in flight at once (its appender keeps their order)."""
    batch_max: int
    append_every_ms: tuple[int, int]
    net_delay_ms: tuple[int, int]
    drop_rate: float
    dup_rate: float
    partition_every_ms: int  # 0 = never
    crash_every_ms: int  # 0 = never
    restart_after_ms: tuple[int, int]
    disk_latency_ms: tuple[int, int]
    detect_ms: int
    spurious_reconfig_rate: float
    metadata_fail_rate: float
    tail_readers: int
    tail_waiters: int
    trim_every_ms: int  # 0 = never
    operator_seal_every_ms: int  # 0 = never
    safety_ms: int
    liveness_ms: int

    @staticmethod
    def draw(rng: random.Random) -> SwarmConfig:
        n = rng.randint(1, 5)
        r = rng.randint(1, min(3, n))
        size = rng.randint(r, n)
        nodeset = tuple(sorted(rng.sample(range(1, n + 1), size))) if rng.random() < 0.7 else ()
        faulty = rng.random() < 0.85
        return SwarmConfig(
            nodes=n,
            replication=r,
            initial_nodeset=nodeset,
            clients=rng.randint(1, 3),
            pipeline=rng.choice((1, 1, 2, 4)),
            batch_max=rng.randint(1, 3),
            append_every_ms=(10, rng.choice((40, 80, 150))),
            net_delay_ms=(1, rng.choice((3, 10, 30))),
            drop_rate=rng.choice((0.0, 0.01, 0.05, 0.15)) if faulty else 0.0,
            dup_rate=rng.choice((0.0, 0.02, 0.1)) if faulty else 0.0,
            partition_every_ms=rng.choice((0, 0, 400, 1000)) if faulty else 0,
            crash_every_ms=rng.choice((0, 300, 700, 1500)) if faulty else 0,
            restart_after_ms=(50, rng.choice((200, 800))),
            disk_latency_ms=(1, rng.choice((2, 8, 20))),
            detect_ms=rng.choice((50, 200)),
            spurious_reconfig_rate=rng.choice((0.0, 0.0, 0.02, 0.1)),
            metadata_fail_rate=rng.choice((0.0, 0.0, 0.05, 0.2)) if faulty else 0.0,
            tail_readers=rng.randint(0, 2),
            tail_waiters=rng.randint(0, 1),
            trim_every_ms=rng.choice((0, 0, 300, 700)),
            operator_seal_every_ms=rng.choice((0, 0, 0, 600)),
            safety_ms=1500,
            liveness_ms=15_000,
        )

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


# --- the workload's parties ---------------------------------------------------------------


@dataclass
class ClientBatch:
    client: int
    node: int
    payloads: tuple[bytes, ...]
    appender: int = 0  # the appender id that took it, and its first sequence number there
    first_seq: int = 0
    outcome: str = "pending"  # acked | rejected | lost (its process crashed)


@dataclass
class TailReader:
    name: str
    node: int
    lsn: int = 1  # next LSN to deliver; survives crashes (a processor's applied LSN does)
    walk: ReadWalk | None = None
    generation: int = 0  # of the process running `walk`
    read: _Read | None = None


@dataclass
class TailWaiter:
    name: str
    node: int
    lsn: int = 1
    busy: bool = False


class _AppendFailed(Exception):
    """A sequencer append's failure as the ledger keeps it: its reason (`AppendError` value)."""


class _LedgerSequencer:
    """What `_Ledger.admit` needs of a sequencer: ``append_then(payloads, settle)``."""

    def __init__(self, sim: Simulation, ns: NodeState, params: LogletParams) -> None:
        self._sim, self._ns, self._params = sim, ns, params

    def append_then(self, payloads: tuple[bytes, ...], settle: Callable[[int, BaseException | None], None]) -> None:
        def done(last: int | None, error: str | None) -> None:
            settle(last or 0, None if error is None else _AppendFailed(error))

        self._sim.sequencer_append(self._ns, self._params, payloads, done)


# --- per-node state -------------------------------------------------------------------------


@dataclass
class Component:
    core: Any
    last_tick: int = -1
    on_output: Callable[[Any], None] | None = None  # tasks and read streams: outputs go here
    on_done: Callable[[], None] | None = None  # a read stream that reached its end
    loglet: int = 0  # the loglet a read stream reads
    timer_at: int = -1
    inbox: deque[Any] = field(default_factory=deque)
    busy: bool = False


@dataclass
class Fed:
    """How a shell feeds a Bifrost core (`bifrost.appender`, `bifrost.bifrost`'s log shell): one
    input at a time, after a Tick when the clock moved; an input an output's handler feeds back is
    queued behind the outputs still to execute (else a SetTimer could be executed after a later
    one). Only the latest SetTimer (``timer``) is live: earlier ones fire as no-ops."""

    tick: int = -1
    timer: int = -1
    inbox: deque[Any] = field(default_factory=deque)
    busy: bool = False

    def feed(self, core: Any, now: int, inp: Any, execute: Callable[[Any], None]) -> None:
        self.inbox.append(inp)
        if self.busy:
            return
        self.busy = True
        try:
            while self.inbox:
                nxt = self.inbox.popleft()
                outs = []
                if self.tick < now:
                    self.tick = now
                    outs = core.step(Tick(now))
                for o in outs + core.step(nxt):
                    execute(o)
        finally:
            self.busy = False


class Membership:
    """`LogFacade`'s view of the cluster from one node: the simulated failure detector."""

    def __init__(self, sim: Simulation, ns: NodeState) -> None:
        self._sim, self._ns = sim, ns

    def sequencer_gone(self, params: LogletParams) -> bool:
        return self._sim.sequencer_gone(self._ns, params)

    def writable_nodes(self) -> list[int]:
        return self.live_nodes()

    def spare_nodes(self) -> list[int]:
        live = self.live_nodes()
        return [n for n in self._sim.nodes if n not in live]

    def live_nodes(self) -> list[int]:
        # A node counts itself live whatever its failure detector says (node/log_role.py).
        return sorted({self._ns.node, *self._sim.live_nodes()})


@dataclass
class NodeState:
    node: int
    disk: MemoryLogStore = field(default_factory=MemoryLogStore)
    generation: int = 1
    alive: bool = True
    dead_since: int = 0
    log_server: LogServer | None = None
    components: dict[Any, Component] = field(default_factory=dict)
    disk_busy_until: int = 0
    next_id: int = 1
    # the process's Bifrost
    facade: LogFacade | None = None
    facade_fed: Fed = field(default_factory=lambda: Fed())
    ops: dict[int, Callable[[bool, Any], None]] = field(default_factory=dict)
    calls: dict[int, Any] = field(default_factory=dict)  # facade call id -> component key, if any
    appender: Appender | None = None
    appender_fed: Fed = field(default_factory=lambda: Fed())
    appender_id: int = 0
    batches: dict[int, ClientBatch] = field(default_factory=dict)  # appender batch id -> batch
    seq_waiters: dict[int, Callable[[int | None, str | None], None]] = field(default_factory=dict)
    seq_batches: dict[int, tuple[bytes, ...]] = field(default_factory=dict)  # batch id -> records
    caches: dict[int, RecordCache] = field(default_factory=dict)  # loglet -> its sequencer's cache
    remote: dict[int, tuple[int, LogletParams]] = field(default_factory=dict)  # rid -> (batch id, loglet)
    ledgers: dict[tuple[int, int], _Ledger] = field(default_factory=dict)
    sealed_at: dict[int, int] = field(default_factory=dict)  # loglet -> end (MarkSealed)
    found_tail: dict[int, int] = field(default_factory=dict)  # loglet -> sealed tail found here
    watchdog_busy: bool = False

    @property
    def gid(self) -> GenerationalNodeId:
        return GenerationalNodeId(self.node, self.generation)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


# --- invariants ---------------------------------------------------------------------------


class Checker:
    """Safety invariants, checked as the run goes (DESIGN.md 'Safety invariants')."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.assigned: dict[tuple[int, int], bytes] = {}  # (loglet, offset) -> tagged payload
        self.assigned_tags: dict[tuple[int, int], int] = {}  # (loglet, appender) -> last seq
        self.acked_lsn: dict[int, bytes] = {}
        self.acked_payload: dict[bytes, int] = {}
        self.observed_lsn: dict[int, bytes] = {}
        self.max_global_tail: dict[int, int] = {}
        self.max_acked_offset: dict[int, int] = {}
        self.sealed_tail: dict[int, int] = {}
        self.durable_prefix: dict[int, int] = {}
        self.local_tails: dict[tuple[int, int], int] = {}
        self.segments: dict[int, Any] = {}  # every loglet segment ever in the chain (bases never move)
        # A sealed loglet's tail as a find-tail found it (after repair onto a write quorum):
        # readers may deliver below it before the chain records where the loglet ends.
        self.found_tail: dict[int, int] = {}
        self.max_delivered: dict[int, int] = {}  # loglet -> highest offset a reader delivered
        self.max_trim = 0  # the highest trim point any trim asked for

    def fail(self, what: str) -> None:
        raise InvariantViolation(what)

    def on_assign(self, lid: int, first: int, payloads: tuple[bytes, ...]) -> None:
        for i, p in enumerate(payloads):
            key = (lid, first + i)
            if key in self.assigned:
                self.fail(f"offset {key} assigned twice: {self.assigned[key]!r} and {p!r}")
            self.assigned[key] = p
            appender, seq, _ = untag(p)
            # Exactly once within a segment, and in the appender's order.
            last = self.assigned_tags.get((lid, appender), 0)
            if seq <= last:
                self.fail(f"loglet {lid} took {appender}/{seq} after {appender}/{last} (a duplicate or out of order)")
            self.assigned_tags[(lid, appender)] = seq

    def on_disk_write(self, node: int, writes: tuple[Any, ...], disk: MemoryLogStore) -> None:
        for w in writes:
            if isinstance(w, PutRecords):
                for i, p in enumerate(w.payloads):
                    want = self.assigned.get((w.loglet_id, w.first_offset + i))
                    if want != p:
                        self.fail(
                            f"N{node} persisted {p!r} at {w.loglet_id}@{w.first_offset + i}, "
                            f"the sequencer assigned {want!r}"
                        )
        for lid in dict.fromkeys(w.loglet_id for w in writes):
            t = disk.load_loglet(lid).local_tail
            if t < self.local_tails.get((node, lid), 1):
                self.fail(f"N{node} durable local tail of {lid} went back to {t}")
            self.local_tails[(node, lid)] = t

    def on_global_tail(self, lid: int, tail: int) -> None:
        prev = self.max_global_tail.get(lid, 1)
        if tail < prev:
            self.fail(f"sequencer global tail of {lid} went back {prev} -> {tail}")
        self.max_global_tail[lid] = tail

    def copies(self, lid: int, offset: int, nodeset: tuple[int, ...]) -> int:
        want = self.assigned.get((lid, offset))
        if want is None:
            return 0
        return sum(1 for n in nodeset if self.sim.nodes[n].disk.records(lid).get(offset) == want)

    def on_committed(self, params: LogletParams, c: Committed) -> None:
        lid = params.loglet_id
        sealed = self.sealed_tail.get(lid)
        if sealed is not None and c.last_offset >= sealed:
            self.fail(f"ack of {lid}@[{c.first_offset},{c.last_offset}] past its sealed tail {sealed}")
        # Committed = durable on a write quorum, together with the whole prefix before it.
        p = self.durable_prefix.get(lid, 1)
        while p <= c.last_offset:
            if self.copies(lid, p, params.nodeset) < params.replication:
                self.fail(
                    f"ack of {lid}@[{c.first_offset},{c.last_offset}] but offset {p} is on "
                    f"{self.copies(lid, p, params.nodeset)} disks < R={params.replication}"
                )
            p += 1
        self.durable_prefix[lid] = p
        self.max_acked_offset[lid] = max(self.max_acked_offset.get(lid, 0), c.last_offset)
        seg = self.segments.get(lid)
        if seg is None:
            self.fail(f"a commit in loglet {lid}, which no chain ever had")
        for off in range(c.first_offset, c.last_offset + 1):
            self.observe(seg.lsn(off), self.assigned[(lid, off)], "commit")

    def on_resolved(self, b: ClientBatch, first_lsn: int) -> None:
        """The appender acknowledged the batch at ``first_lsn``: that LSN holds its first copy."""
        for i, p in enumerate(b.payloads):
            tagged = tag(b.appender, b.first_seq + i, p)
            lsn = first_lsn + i
            if self.acked_lsn.setdefault(lsn, tagged) != tagged:
                self.fail(f"LSN {lsn} acknowledged with {self.acked_lsn[lsn]!r} and {tagged!r}")
            if tagged in self.acked_payload:
                self.fail(f"{tagged!r} acknowledged twice (LSNs {self.acked_payload[tagged]} and {lsn})")
            self.acked_payload[tagged] = lsn
            self.observe(lsn, tagged, "ack")

    def on_chain(self, old: Chain | None, new: Chain) -> None:
        for seg in new.segments:
            if seg.params is not None:
                known = self.segments.setdefault(seg.params.loglet_id, seg)
                if known != seg:
                    self.fail(f"loglet {seg.params.loglet_id} moved from {known} to {seg}")
        if old is None:
            return
        # History is only ever cut at the front (trim) and changed at the tail.
        kept = [s for s in old.segments[:-1] if s.base_lsn >= new.segments[0].base_lsn]
        if list(new.segments[: len(kept)]) != kept:
            self.fail(f"chain rewrote history: {old.describe()} -> {new.describe()}")
        old_tail = old.tail
        if old_tail.params is None or old_tail == new.tail:
            return  # a trim, or the extension of a seal marker
        end = new.end_lsn(old_tail) if old_tail in new.segments else new.tail.base_lsn
        assert end is not None
        lid = old_tail.params.loglet_id
        sealed = old_tail.offset(end)
        if self.max_acked_offset.get(lid, 0) >= sealed:
            self.fail(f"loglet {lid} sealed at {sealed} below acked offset {self.max_acked_offset[lid]}")
        if self.max_delivered.get(lid, 0) >= sealed:
            self.fail(f"loglet {lid} sealed at {sealed}, but a reader delivered offset {self.max_delivered[lid]}")
        self.sealed_tail[lid] = sealed
        # Every offset below the sealed tail must be durable on a write quorum (repair did it).
        for off in range(self.durable_prefix.get(lid, 1), sealed):
            if self.copies(lid, off, old_tail.params.nodeset) < old_tail.params.replication:
                self.fail(f"loglet {lid} sealed at {sealed} but offset {off} is not on a write quorum")

    def observe(self, lsn: int, payload: bytes, who: str) -> None:
        if self.observed_lsn.setdefault(lsn, payload) != payload:
            self.fail(f"LSN {lsn} seen as {self.observed_lsn[lsn]!r} and as {payload!r} (by {who})")

    def on_loglet_deliver(self, reader: str, params: LogletParams, offset: int, payload: bytes) -> None:
        lid = params.loglet_id
        sealed = self.sealed_tail.get(lid)
        bound = sealed if sealed is not None else max(self.max_global_tail.get(lid, 1), self.found_tail.get(lid, 1))
        if offset >= bound:
            self.fail(f"{reader} delivered {lid}@{offset} at/past the global tail {bound}")
        self.max_delivered[lid] = max(self.max_delivered.get(lid, 0), offset)
        if self.assigned.get((lid, offset)) != payload:
            self.fail(
                f"{reader} delivered {payload!r} at {lid}@{offset}, assigned {self.assigned.get((lid, offset))!r}"
            )

    def on_entry(self, reader: str, expected_lsn: int, entry: LogRecord | LogTrimGap) -> int:
        """A read's next entry: gapless, records as observed, gaps only where trims asked."""
        if isinstance(entry, LogTrimGap):
            if entry.from_lsn != expected_lsn or entry.to_lsn > self.max_trim:
                self.fail(f"{reader} got trim gap {entry} at {expected_lsn}; trims reached {self.max_trim}")
            return entry.to_lsn + 1
        if entry.lsn < expected_lsn:
            self.fail(f"{reader} went back to LSN {entry.lsn} (expected {expected_lsn})")
        if entry.lsn > expected_lsn and not self.sim.dedup_reader(reader):
            self.fail(f"{reader} skipped from {expected_lsn} to {entry.lsn}")
        self.observe(entry.lsn, tag(entry.appender, entry.seq, entry.payload), reader)
        return entry.lsn + 1

    def first_copies(self) -> dict[bytes, int]:
        """The LSN of each record's first copy in the log (trimmed or not)."""
        first: dict[bytes, int] = {}
        for (lid, off), p in self.assigned.items():
            seg = self.segments.get(lid)
            end = self.sealed_tail.get(lid, self.max_global_tail.get(lid, 1))
            if seg is not None and off < end and seg.lsn(off) < first.get(p, 1 << 62):
                first[p] = seg.lsn(off)
        return first

    def committed(self, lsn: int) -> bool:
        seg = self.sim.chain.find(lsn)
        if seg is None or seg.params is None:
            return lsn < self.sim.chain.tail.base_lsn
        lid = seg.params.loglet_id
        off = seg.offset(lsn)
        return off < max(self.max_global_tail.get(lid, 1), self.sealed_tail.get(lid, 1))


# --- the simulation -----------------------------------------------------------------------


class Simulation:
    def __init__(
        self,
        seed: int,
        config: SwarmConfig | None = None,
        *,
        log_server_factory: Callable[[int, MemoryLogStore], LogServer] = LogServer,
        trace: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config or SwarmConfig.draw(self.rng)
        self.log_server_factory = log_server_factory
        self.trace_enabled = trace
        self.trace: list[str] = []
        self.now = 0
        self._seq = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.events = 0
        self.faults = True
        self.accepting = True
        self.blocked: set[tuple[int, int]] = set()
        self.nodes: dict[int, NodeState] = {n: NodeState(n) for n in range(1, self.config.nodes + 1)}
        self.detected_dead: dict[int, bool] = {n: False for n in self.nodes}
        self.check = Checker(self)
        self.seq_config = SequencerConfig(store_timeout_ms=300, retry_backoff_ms=50)
        self.task_config = TaskConfig(request_timeout_ms=300, retry_backoff_ms=50, repair_batch_records=8)
        self.reader_config = ReaderConfig(request_timeout_ms=300, poll_interval_ms=100, batch_records=16)
        self.facade_config = FacadeConfig(chain_wait_ms=300, reconfigure_timeout_ms=3000, cas_retry_min_ms=20)
        # Longer than the liveness phase: an append never gives up in a run.
        self.appender_config = AppenderConfig(deadline_ms=60_000, seal_grace_ms=200, retry_min_ms=10, retry_max_ms=200)
        # the metadata store: one versioned chain, compare-and-set
        self.chain: Chain | None = None
        self.chain_version: int | None = None
        if self.config.initial_nodeset:
            first = LogletParams(
                loglet_id(LOG_ID, 0), self.nodes[1].gid, self.config.replication, self.config.initial_nodeset
            )
            self._store_chain(Chain.new(LOG_ID, first))
        for ns in self.nodes.values():
            self._start_process(ns)
        # workload
        self.batches: list[ClientBatch] = []
        self.client_node = {c: self.randint(1, self.config.nodes) for c in range(self.config.clients)}
        self.client_inflight = {c: 0 for c in range(self.config.clients)}
        self.client_seq = {c: 0 for c in range(self.config.clients)}
        # what the run exercised (see SimResult)
        self.reconfigurations = 0
        self.trims = 0
        self.operator_seals = 0
        self.remote_appends = 0
        self.cached_records = 0  # records handed to read streams from a sequencer's cache
        self.resends_answered = 0  # remote resends the ledger answered instead of appending again
        self.reappended = 0
        self.lost_chain_replies = 0
        self.cas_conflicts = 0
        self.sealed_by_operator = False
        self._operator_op: _OperatorOp | None = None
        self.tail_readers = [
            TailReader(f"reader{i}", self.randint(1, self.config.nodes)) for i in range(self.config.tail_readers)
        ]
        self.tail_waiters = [
            TailWaiter(f"waiter{i}", self.randint(1, self.config.nodes)) for i in range(self.config.tail_waiters)
        ]
        self.final_log: dict[int, bytes] = {}
        self._dedup_readers: set[str] = set()

    # --- event plumbing ---

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def randint(self, lo: int, hi: int) -> int:
        """``rng.randint``, at a fraction of its cost (the hot path draws many)."""
        return lo + int(self.rng.random() * (hi - lo + 1))

    def log(self, msg: str) -> None:
        self.trace.append(f"{self.now:>6} {msg}")

    def run_until(self, t_end: int, stop: Callable[[], bool] | None = None) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t_end:
            if stop is not None and stop():
                return
            t, _, fn, args = heapq.heappop(heap)
            self.now = t
            self.events += 1
            if self.events > 600_000:
                raise InvariantViolation("runaway simulation: too many events")
            fn(*args)
        if stop is None or not stop():
            self.now = max(self.now, t_end)

    def live_nodes(self) -> list[int]:
        return [n for n, ns in self.nodes.items() if ns.alive and not self.detected_dead[n]]

    def sequencer_gone(self, ns: NodeState, params: LogletParams) -> bool:
        """`Bifrost.sequencer_is_gone` as node ``ns`` sees it."""
        seq = params.sequencer
        if seq.node == ns.node:
            return seq != ns.gid
        return self.detected_dead[seq.node] or self.nodes[seq.node].generation > seq.generation

    def dedup_reader(self, name: str) -> bool:
        return name in self._dedup_readers

    # --- network ---

    def send(self, src: int, dst: int, fn: Callable[..., None], *args: Any) -> None:
        """Deliver ``fn(*args)`` at node ``dst`` after the network's delay (maybe never, or twice)."""
        lo, hi = self.config.net_delay_ms
        if src == dst:
            self.at(self.now, fn, *args)
            return
        if self.faults:
            if (src, dst) in self.blocked or self.rng.random() < self.config.drop_rate:
                return
            if self.rng.random() < self.config.dup_rate:
                self.at(self.now + self.randint(lo, hi), fn, *args)
        self.at(self.now + self.randint(lo, hi), fn, *args)

    def _ev_request(self, dst: int, src: int, reply_to: tuple[int, int, Any], rid: int, msg: Any) -> None:
        ns = self.nodes[dst]
        if not ns.alive:
            return
        assert ns.log_server is not None
        if self.trace_enabled:
            self.log(f"N{dst} <- N{src} {describe(Request(reply_to, rid, msg))}")
        if isinstance(msg, Trim) and (cache := ns.caches.get(msg.header.loglet_id)) is not None:
            cache.trim(msg.trim_point)
        self._log_server_outputs(ns, ns.log_server.step(Request(reply_to, rid, msg)))

    def _ev_response(self, dst: int, gen: int, comp: Any, src: int, rid: int, msg: Any) -> None:
        ns = self.nodes[dst]
        if ns.alive and ns.generation == gen and comp in ns.components:
            self._feed(ns, comp, Response(src, rid, msg))

    # --- log-server shell ---

    def _log_server_outputs(self, ns: NodeState, outs: list[Any]) -> None:
        for o in outs:
            if self.trace_enabled:
                self.log(f"N{ns.node} ls {describe(o)}")
            if isinstance(o, Persist):
                lo, hi = self.config.disk_latency_ms
                done = max(ns.disk_busy_until, self.now) + self.randint(lo, hi)
                ns.disk_busy_until = done
                self.at(done, self._ev_persisted, ns.node, ns.generation, o)
            elif isinstance(o, Reply):
                src_node, gen, comp = o.to
                self.send(ns.node, src_node, self._ev_response, src_node, gen, comp, ns.node, o.request_id, o.message)

    def _ev_persisted(self, node: int, gen: int, p: Persist) -> None:
        ns = self.nodes[node]
        if not ns.alive or ns.generation != gen:
            return  # the crash lost this unsynced batch
        ns.disk.apply(p.writes)
        self.check.on_disk_write(node, p.writes, ns.disk)
        assert ns.log_server is not None
        self._log_server_outputs(ns, ns.log_server.step(Persisted(p.token)))

    # --- components: sequencers, loglet tasks, read streams ---

    def _feed(self, ns: NodeState, comp: Any, inp: Any) -> None:
        c = ns.components.get(comp)
        if c is None:
            return
        if c.busy:  # fed again by one of its own outputs' handlers: after these outputs
            c.inbox.append(inp)
            return
        c.busy = True
        try:
            self._step(ns, comp, c, inp)
            while c.inbox and ns.components.get(comp) is c:
                self._step(ns, comp, c, c.inbox.popleft())
        finally:
            c.busy = False

    def _step(self, ns: NodeState, comp: Any, c: Component, inp: Any) -> None:
        outs: list[Any]
        if isinstance(inp, Tick):
            c.last_tick = self.now
            outs = c.core.step(inp)
        elif c.last_tick < self.now:
            c.last_tick = self.now
            outs = c.core.step(Tick(self.now)) + c.core.step(inp)
        else:
            outs = c.core.step(inp)
        for o in outs:
            if self.trace_enabled:
                self.log(f"N{ns.node} {comp[0]} {describe(o)}")
            if isinstance(o, Send):
                self.send(ns.node, o.to, self._ev_request, o.to, ns.node, (ns.node, ns.generation, comp), o.request_id, o.message)
            elif isinstance(o, SetTimer):
                # The latest SetTimer replaces earlier ones: those fire as no-ops.
                c.timer_at = max(o.at_ms, self.now)
                self.at(c.timer_at, self._ev_timer, ns.node, ns.generation, comp, c.timer_at)
            elif isinstance(o, _SEQUENCER_OUTCOMES):
                self._on_sequencer_outcome(ns, c.core, o)
            elif c.on_output is not None:
                c.on_output(o)
        if isinstance(c.core, Sequencer):
            self.check.on_global_tail(c.core.params.loglet_id, c.core.known_global_tail)
        elif c.on_done is not None and c.core.state is ReaderState.DONE and ns.components.get(comp) is c:
            del ns.components[comp]
            c.on_done()

    def _ev_timer(self, node: int, gen: int, comp: Any, at: int) -> None:
        ns = self.nodes[node]
        c = ns.components.get(comp)
        if ns.alive and ns.generation == gen and c is not None and c.timer_at == at:
            self._feed(ns, comp, Tick(self.now))

    def _start_component(self, ns: NodeState, key: Any, core: Any, on_output: Callable[[Any], None] | None) -> None:
        ns.components[key] = Component(core, self.now, on_output)
        for n, dead in self.detected_dead.items():
            if dead and not isinstance(core, ReadStream):
                self._feed(ns, key, NodeDead(n))
        self._feed(ns, key, Tick(self.now))

    def sequencer(self, ns: NodeState, params: LogletParams, start: bool) -> Sequencer | None:
        """This process's sequencer for the loglet: started on first use, only where the params
        name this very process (as `ReplicatedProvider.sequencer`)."""
        seq = params.sequencer
        if seq.node != ns.node or seq.generation != ns.generation or not ns.alive:
            return None
        key = ("seq", params.loglet_id)
        c = ns.components.get(key)
        if c is None:
            if not start:
                return None
            self._start_component(ns, key, Sequencer(params, self.seq_config, now_ms=self.now), None)
            c = ns.components[key]
        core: Sequencer = c.core
        return core

    def sequencer_append(
        self, ns: NodeState, params: LogletParams, payloads: tuple[bytes, ...], done: Callable[[int | None, str | None], None]
    ) -> None:
        seq = self.sequencer(ns, params, start=True)
        assert seq is not None
        bid = ns.new_id()
        ns.seq_waiters[bid] = done
        ns.seq_batches[bid] = payloads
        if seq.state is SequencerState.OPEN:
            self.check.on_assign(params.loglet_id, seq.next_offset, payloads)
        self._feed(ns, ("seq", params.loglet_id), Append(bid, payloads))

    def _on_sequencer_outcome(self, ns: NodeState, seq: Sequencer, o: Committed | AppendFailed) -> None:
        done = ns.seq_waiters.pop(o.batch_id, None)
        records = ns.seq_batches.pop(o.batch_id, ())
        if isinstance(o, Committed):
            self.check.on_committed(seq.params, o)
            ns.caches.setdefault(seq.params.loglet_id, RecordCache()).put(o.first_offset, records)
            if done is not None:
                done(o.last_offset, None)
        elif done is not None:
            done(None, o.reason.value)

    # --- the appender (bifrost/appender.py's part) ---

    def _feed_appender(self, ns: NodeState, inp: Any) -> None:
        if ns.appender is not None:
            ns.appender_fed.feed(ns.appender, self.now, inp, lambda o: self._appender_output(ns, o))

    def _appender_output(self, ns: NodeState, o: Any) -> None:
        if self.trace_enabled:
            self.log(f"N{ns.node} appender {o}")
        if isinstance(o, Enqueue):
            self._enqueue(ns, o)
        elif isinstance(o, Resolved):
            b = ns.batches.pop(o.batch_id)
            b.outcome = "acked"
            self.check.on_resolved(b, o.first_lsn)
            self.client_inflight[b.client] -= 1
        elif isinstance(o, Rejected):
            b = ns.batches.pop(o.batch_id)
            b.outcome = "rejected"
            self.client_inflight[b.client] -= 1
            if not self.faults and not self.sealed_by_operator:
                self.check.fail(f"append rejected after healing: {o}")
        elif isinstance(o, WantTail):
            self.start_op(ns, lambda op, o=o: BringTail(op, o.after_version, o.reconfigure), self._on_tail(ns))
        elif isinstance(o, SetTimer):
            ns.appender_fed.timer = o.at_ms
            self.at(o.at_ms, self._ev_appender_timer, ns.node, ns.generation, o.at_ms)

    def _on_tail(self, ns: NodeState) -> Callable[[bool, Any], None]:
        return lambda ok, value: self._feed_appender(ns, value)

    def _ev_appender_timer(self, node: int, gen: int, at: int) -> None:
        ns = self.nodes[node]
        if ns.alive and ns.generation == gen and ns.appender_fed.timer == at:
            self._feed_appender(ns, Tick(self.now))

    def _enqueue(self, ns: NodeState, o: Enqueue) -> None:
        tagged = tuple(tag(ns.appender_id, o.first_seq + i, p) for i, p in enumerate(o.payloads))
        b = ns.batches.get(o.batch_id)
        if b is not None and b.appender == 0:
            b.appender, b.first_seq = ns.appender_id, o.first_seq
        lid = o.params.loglet_id
        seq = self.sequencer(ns, o.params, start=True)
        if seq is not None:  # this process sequences it: in call order, nothing lost
            if seq.state is SequencerState.SEALED:
                self._feed_appender(ns, BatchRefused(o.batch_id, lid, RefusalReason.SEALED))
                return

            def local_done(last: int | None, error: str | None) -> None:
                self._on_append_result(ns, o.batch_id, o.params, last, error)

            self.sequencer_append(ns, o.params, tagged, local_done)
            return
        dst = o.params.sequencer.node
        if self.detected_dead[dst]:
            self._feed_appender(ns, BatchRefused(o.batch_id, lid, self._unreachable(ns, o.params)))
            return
        rid = ns.new_id()
        ns.remote[rid] = (o.batch_id, o.params)
        req = AppendRequest(o.params, tagged, ns.appender_id, o.first_seq, o.prev_seq)
        self.send(ns.node, dst, self._ev_remote_append, dst, ns.node, ns.generation, rid, req)
        self.at(self.now + REMOTE_TIMEOUT_MS, self._ev_remote_timeout, ns.node, ns.generation, rid)

    def _unreachable(self, ns: NodeState, params: LogletParams) -> RefusalReason:
        gone = self.sequencer_gone(ns, params)
        return RefusalReason.SEQUENCER_GONE if gone else RefusalReason.UNREACHABLE

    def _on_append_result(
        self, ns: NodeState, batch_id: int, params: LogletParams, last: int | None, error: str | None
    ) -> None:
        lid = params.loglet_id
        if last is not None:
            self._feed_appender(ns, BatchAcked(batch_id, lid, last))
            return
        reason = {
            AppendError.SEALED.value: RefusalReason.SEALED,
            AppendError.WRITE_UNAVAILABLE.value: RefusalReason.WRITE_UNAVAILABLE,
            "out-of-order": RefusalReason.OUT_OF_ORDER,
            "not-sequencer": RefusalReason.SEQUENCER_GONE,
        }.get(error or "")
        self._feed_appender(ns, BatchRefused(batch_id, lid, reason or self._unreachable(ns, params), error or ""))

    def _ev_remote_append(self, dst: int, src: int, gen: int, rid: int, req: AppendRequest) -> None:
        """The sequencer node's provider: `ReplicatedProvider._remote_append` over its ledger."""
        ns = self.nodes[dst]
        if not ns.alive:
            return

        def reply(last: int | None, error: str | None) -> None:
            self.send(dst, src, self._ev_remote_reply, src, gen, rid, last, error)

        params = req.params
        if params.sequencer != ns.gid:
            reply(None, "not-sequencer")
            return
        # A request may start a sequencer only for the chain's tail (names_loglet, refreshed).
        start = self.chain is not None and self.chain.tail.params == params
        seq = self.sequencer(ns, params, start=start)
        if seq is None:
            reply(None, "not-sequencer")
            return
        ledger = ns.ledgers.setdefault((params.loglet_id, req.appender), _Ledger())
        self.remote_appends += 1
        self.resends_answered += req.first_seq in ledger.results
        outcome = ledger.admit(req, _LedgerSequencer(self, ns, params))  # type: ignore[arg-type]
        if outcome is None:
            reply(None, "out-of-order")
            return
        outcome.then(lambda last, error: reply(None, str(error)) if error is not None else reply(last, None))

    def _ev_remote_reply(self, node: int, gen: int, rid: int, last: int | None, error: str | None) -> None:
        ns = self.nodes[node]
        if not ns.alive or ns.generation != gen:
            return
        pending = ns.remote.pop(rid, None)
        if pending is not None:  # else timed out already, or a duplicate
            self._on_append_result(ns, pending[0], pending[1], last, error)

    def _ev_remote_timeout(self, node: int, gen: int, rid: int) -> None:
        ns = self.nodes[node]
        if not ns.alive or ns.generation != gen:
            return
        pending = ns.remote.pop(rid, None)
        if pending is not None:
            batch_id, params = pending
            self._feed_appender(ns, BatchRefused(batch_id, params.loglet_id, self._unreachable(ns, params), "no answer"))

    # --- the facade (bifrost/bifrost.py's part) ---

    def start_op(self, ns: NodeState, make: Callable[[int], Any], done: Callable[[bool, Any], None]) -> None:
        op = ns.new_id()
        ns.ops[op] = done
        self._feed_facade(ns, make(op))

    def _feed_facade(self, ns: NodeState, inp: Any) -> None:
        if ns.facade is not None:
            ns.facade_fed.feed(ns.facade, self.now, inp, lambda o: self._facade_output(ns, o))

    def _facade_output(self, ns: NodeState, o: Any) -> None:
        if self.trace_enabled:
            self.log(f"N{ns.node} facade {describe(o)}")
        if isinstance(o, Call):
            self._call(ns, o.call_id, o.request)
        elif isinstance(o, OpDone | OpFailed):
            done = ns.ops.pop(o.op)
            done(isinstance(o, OpDone), o.value if isinstance(o, OpDone) else o)
        elif isinstance(o, MarkSealed):
            ns.sealed_at[o.params.loglet_id] = o.end_offset
            self._end_read_streams(ns, o.params.loglet_id, o.end_offset)
        elif isinstance(o, CancelCall):
            key = ns.calls.pop(o.call_id, None)
            if key is not None:
                ns.components.pop(key, None)
        elif isinstance(o, SetTimer):
            ns.facade_fed.timer = o.at_ms
            self.at(o.at_ms, self._ev_facade_timer, ns.node, ns.generation, o.at_ms)

    def _ev_facade_timer(self, node: int, gen: int, at: int) -> None:
        ns = self.nodes[node]
        if ns.alive and ns.generation == gen and ns.facade_fed.timer == at:
            self._feed_facade(ns, Tick(self.now))

    def _call_done(self, ns: NodeState, gen: int, call_id: int, value: Any) -> None:
        if ns.alive and ns.generation == gen:
            ns.calls.pop(call_id, None)
            self._feed_facade(ns, CallDone(call_id, value))

    def _call_failed(self, ns: NodeState, gen: int, call_id: int, failure: Failure, detail: str) -> None:
        if ns.alive and ns.generation == gen:
            ns.calls.pop(call_id, None)
            self._feed_facade(ns, CallFailed(call_id, failure, detail))

    def _call(self, ns: NodeState, cid: int, req: Any) -> None:
        gen = ns.generation
        if isinstance(req, ReadChain | WriteChain):
            self._metadata_call(ns, gen, cid, req)
        elif isinstance(req, LogletFindTail):
            self._loglet_find_tail(
                ns, req.params, lambda t: self._call_done(ns, gen, cid, t), lambda f, d: self._call_failed(ns, gen, cid, f, d), cid
            )
        elif isinstance(req, LogletSeal):
            self._loglet_seal(ns, req.params, lambda t: self._call_done(ns, gen, cid, t), lambda f, d: self._call_failed(ns, gen, cid, f, d), cid)
        elif isinstance(req, LogletTrim):

            def trim_at(t: LogletTail) -> None:
                core = TrimTask(req.params, req.offset, t.offset, self.task_config, now_ms=self.now)
                key = ("task", ns.new_id())
                ns.calls[cid] = key

                def out(o: Any) -> None:
                    if isinstance(o, TrimDone):
                        ns.components.pop(key, None)
                        self._call_done(ns, gen, cid, None)

                self._start_component(ns, key, core, out)

            self._loglet_find_tail(ns, req.params, trim_at, lambda f, d: self._call_failed(ns, gen, cid, f, d), cid)
        elif isinstance(req, LogletWaitForTail):
            self._ev_wait_for_tail(ns.node, gen, cid, req.params, req.offset, self.now + REMOTE_TIMEOUT_MS)
        else:
            raise AssertionError(f"unexpected call {req!r}")

    # the replicated loglet's find-tail, seal and wait-for-tail, as this node runs them

    def _loglet_find_tail(
        self,
        ns: NodeState,
        params: LogletParams,
        ok: Callable[[LogletTail], None],
        failed: Callable[[Failure, str], None],
        cid: int,
    ) -> None:
        lid = params.loglet_id
        if lid in ns.sealed_at:
            ok(LogletTail(ns.sealed_at[lid], True))
            return
        seq = self.sequencer(ns, params, start=True)
        if seq is not None:
            if seq.state is SequencerState.OPEN:
                ok(LogletTail(seq.known_global_tail, False))
            else:
                self._loglet_seal(ns, params, lambda t: ok(LogletTail(t, True)), failed, cid)
            return
        # Remote: the sequencer's node answers with its tail (modelled without a message: the
        # query fails, as a timeout would, when it could not have been answered).
        dst = self.nodes[params.sequencer.node]
        reachable = dst.alive and (ns.node, dst.node) not in self.blocked and (dst.node, ns.node) not in self.blocked
        if not reachable:
            failed(Failure.UNAVAILABLE, f"sequencer N{dst.node} did not answer the tail query")
            return
        start = self.chain is not None and self.chain.tail.params == params
        remote = self.sequencer(dst, params, start=start)
        if remote is None:
            failed(Failure.SEQUENCER_GONE, f"{params.sequencer} no longer runs")
        elif remote.state is not SequencerState.OPEN:
            self._loglet_seal(ns, params, lambda t: ok(LogletTail(t, True)), failed, cid)
        else:
            ok(LogletTail(remote.known_global_tail, False))

    def _loglet_seal(
        self,
        ns: NodeState,
        params: LogletParams,
        ok: Callable[[int], None],
        failed: Callable[[Failure, str], None],
        cid: int,
    ) -> None:
        lid = params.loglet_id
        if lid in ns.sealed_at:
            ok(ns.sealed_at[lid])
            return
        if lid in ns.found_tail:
            ok(ns.found_tail[lid])
            return
        local = self.sequencer(ns, params, start=False)
        core = FindTailTask(
            params, self.task_config, now_ms=self.now, known_global_tail=local.known_global_tail if local else 1
        )
        key = ("task", ns.new_id())
        ns.calls[cid] = key

        def out(o: Any) -> None:
            if isinstance(o, TailFound):
                ns.components.pop(key, None)
                ns.found_tail.setdefault(lid, o.tail)
                self.check.found_tail[lid] = max(self.check.found_tail.get(lid, 1), o.tail)
                ok(ns.found_tail[lid])
            elif isinstance(o, NoSafeTail):
                ns.components.pop(key, None)
                failed(Failure.UNAVAILABLE, f"loglet {lid} cannot be sealed safely")

        self._start_component(ns, key, core, out)

    def _ev_wait_for_tail(self, node: int, gen: int, cid: int, params: LogletParams, offset: int, deadline: int) -> None:
        ns = self.nodes[node]
        if not ns.alive or ns.generation != gen or ns.facade is None:
            return
        lid = params.loglet_id
        if lid in ns.sealed_at:
            self._call_done(ns, gen, cid, LogletTail(ns.sealed_at[lid], True))
            return
        dst = self.nodes[params.sequencer.node]
        seq = self.sequencer(dst, params, start=False)
        reachable = dst.node == node or (
            dst.alive and (ns.node, dst.node) not in self.blocked and (dst.node, ns.node) not in self.blocked
        )
        if seq is not None and reachable:
            deadline = self.now + REMOTE_TIMEOUT_MS  # an answer (pushed tail) came: wait on
            if seq.known_global_tail >= offset or seq.state is not SequencerState.OPEN:
                self._call_done(ns, gen, cid, LogletTail(seq.known_global_tail, seq.state is not SequencerState.OPEN))
                return
        elif self.now >= deadline:
            failure = Failure.SEQUENCER_GONE if dst.alive and reachable else Failure.UNAVAILABLE
            self._call_failed(ns, gen, cid, failure, f"sequencer N{dst.node} of loglet {lid} did not answer")
            return
        self.at(self.now + TAIL_POLL_MS, self._ev_wait_for_tail, node, gen, cid, params, offset, deadline)

    # --- the metadata store ---

    def _store_chain(self, chain: Chain) -> None:
        old = self.chain
        self.check.on_chain(old, chain)
        self.chain = chain
        self.chain_version = (self.chain_version or 0) + 1
        if old is not None and old.tail.params is not None and chain.tail != old.tail and chain.tail.params is not None:
            self.reconfigurations += 1
        if self.trace_enabled:
            self.log(f"chain v{self.chain_version}: {chain.describe()}")
        for ns in self.nodes.values():
            if ns.alive:
                self._watch(ns)

    def _watch(self, ns: NodeState) -> None:
        """The metadata store's watch delivers every change, late but never lost."""
        lo, hi = self.config.net_delay_ms
        assert self.chain is not None and self.chain_version is not None
        self.at(self.now + self.randint(lo, hi), self._ev_watch, ns.node, ns.generation, self.chain, self.chain_version)

    def _ev_watch(self, node: int, gen: int, chain: Chain, version: int) -> None:
        ns = self.nodes[node]
        if ns.alive and ns.generation == gen:
            self._feed_facade(ns, ChainSeen(chain, version))

    def _metadata_call(self, ns: NodeState, gen: int, cid: int, req: ReadChain | WriteChain) -> None:
        lo, hi = self.config.net_delay_ms
        self.at(self.now + self.randint(lo, hi), self._ev_metadata, ns.node, gen, cid, req)

    def _ev_metadata(self, node: int, gen: int, cid: int, req: ReadChain | WriteChain) -> None:
        ns = self.nodes[node]
        lo, hi = self.config.net_delay_ms
        fail = self.faults and self.rng.random() < self.config.metadata_fail_rate
        result: tuple[bool, Any]
        if isinstance(req, ReadChain):
            result = (False, Failure.METADATA_UNAVAILABLE) if fail else (True, ChainState(self.chain, self.chain_version))
        elif fail and self.rng.random() < 0.5:
            result = (False, Failure.METADATA_UNAVAILABLE)  # not applied
        else:
            if req.expected_version == self.chain_version:
                self._store_chain(req.chain)
                result = (True, self.chain_version)
            else:
                result = (False, Failure.CONFLICT)
                self.cas_conflicts += 1
            if fail:
                result = (False, Failure.UNKNOWN_OUTCOME)  # applied or not: the reply is lost
                self.lost_chain_replies += 1
        ok, value = result

        def answer() -> None:
            if ok:
                self._call_done(ns, gen, cid, value)
            else:
                self._call_failed(ns, gen, cid, value, f"metadata: {value.value}")

        self.at(self.now + self.randint(lo, hi), answer)

    # --- processes: start, crash, restart ---

    def _start_process(self, ns: NodeState) -> None:
        ns.log_server = self.log_server_factory(ns.node, ns.disk)
        ns.facade = LogFacade(
            LOG_ID,
            ns.gid,
            self.config.replication,
            Membership(self, ns),
            self.rng,
            self.facade_config,
            now_ms=self.now,
        )
        ns.facade_fed = Fed(tick=self.now)
        ns.appender = Appender(self.appender_config, now_ms=self.now)
        ns.appender_fed = Fed(tick=self.now)
        ns.appender_id = self.rng.getrandbits(63) | 1
        if self.chain is not None:  # the watch starts with the current chain
            self._watch(ns)

    def _ev_crash(self) -> None:
        if self.faults and self.config.crash_every_ms:
            self.at(self.now + self.randint(1, 2 * self.config.crash_every_ms), self._ev_crash)
        alive = [n for n, ns in self.nodes.items() if ns.alive]
        if not self.faults or not alive:
            return
        n = self.rng.choice(alive)
        self.crash(n)
        lo, hi = self.config.restart_after_ms
        self.at(self.now + self.randint(lo, hi), self._ev_restart, n)

    def crash(self, n: int) -> None:
        ns = self.nodes[n]
        if self.trace_enabled:
            self.log(f"N{n} CRASH")
        ns.alive = False
        ns.dead_since = self.now
        ns.log_server = None
        ns.components.clear()
        ns.disk_busy_until = 0
        ns.facade = None
        if ns.appender is not None:
            self.reappended += ns.appender.reappended_records
        ns.appender = None
        ns.facade_fed = Fed()
        ns.appender_fed = Fed()
        for b in ns.batches.values():
            b.outcome = "lost"  # its caller died with the process
            self.client_inflight[b.client] -= 1
        ns.batches.clear()
        ns.ops.clear()
        ns.calls.clear()
        ns.seq_waiters.clear()
        ns.seq_batches.clear()
        ns.caches.clear()
        ns.remote.clear()
        ns.ledgers.clear()
        ns.sealed_at.clear()
        ns.found_tail.clear()
        ns.watchdog_busy = False
        for w in self.tail_waiters:
            if w.node == n:
                w.busy = False

    def _ev_restart(self, n: int) -> None:
        ns = self.nodes[n]
        if ns.alive:
            return
        ns.alive = True
        ns.generation += 1
        self._start_process(ns)
        if self.trace_enabled:
            self.log(f"N{n} RESTART as {ns.gid}")

    def _ev_partition(self) -> None:
        if not self.faults:
            return
        self.at(self.now + self.randint(1, 2 * self.config.partition_every_ms), self._ev_partition)
        self.blocked = set()
        if self.rng.random() < 0.3:
            return  # healed for a while
        if self.rng.random() < 0.5:
            iso = self.randint(1, self.config.nodes)
            for o in self.nodes:
                if o != iso:
                    self.blocked |= {(iso, o), (o, iso)}
        else:
            a, b = self.randint(1, self.config.nodes), self.randint(1, self.config.nodes)
            if a != b:
                self.blocked.add((a, b))

    # --- the failure detector and the watchdog ---

    def _ev_controller(self) -> None:
        self.at(self.now + 50, self._ev_controller)
        for n, ns in self.nodes.items():
            dead = not ns.alive and self.now - ns.dead_since >= self.config.detect_ms
            if dead != self.detected_dead[n]:
                self.detected_dead[n] = dead
                hint = NodeDead(n) if dead else NodeAlive(n)
                for other in self.nodes.values():
                    if other.alive:
                        for key, c in list(other.components.items()):
                            if not isinstance(c.core, ReadStream):
                                self._feed(other, key, hint)
        live = self.live_nodes()
        if not live:
            return
        # The watchdog (node/log_role.py): the lowest live node replaces a gone sequencer.
        ns = self.nodes[min(live)]
        f = ns.facade
        if f is not None and f.chain is not None and f.chain.tail.params is not None and not ns.watchdog_busy:
            if self.sequencer_gone(ns, f.chain.tail.params):
                self._reconfigure(ns, f.version, watchdog=True)
        if self.faults and self.rng.random() < self.config.spurious_reconfig_rate / 4:
            other = self.nodes[self.rng.choice(live)]
            if other.facade is not None and other.facade.loaded:
                self._reconfigure(other, other.facade.version, watchdog=False)

    def _reconfigure(self, ns: NodeState, expected: int | None, watchdog: bool) -> None:
        if watchdog:
            ns.watchdog_busy = True

        def done(ok: bool, value: Any) -> None:
            if watchdog:
                ns.watchdog_busy = False

        self.start_op(ns, lambda op: Reconfigure(op, expected), done)

    # --- clients, trims, operator seals ---

    def _ev_client(self, client: int) -> None:
        lo, hi = self.config.append_every_ms
        self.at(self.now + self.randint(lo, hi), self._ev_client, client)
        if not self.accepting or self.client_inflight[client] >= self.config.pipeline:
            return
        ns = self.nodes[self.client_node[client]]
        if not ns.alive or ns.appender is None:
            return
        self.client_seq[client] += 1
        s = self.client_seq[client]
        k = self.randint(1, self.config.batch_max)
        b = ClientBatch(client, ns.node, tuple(f"c{client}.{s}.{i}".encode() for i in range(k)))
        self.batches.append(b)
        self.client_inflight[client] += 1
        bid = ns.new_id()
        ns.batches[bid] = b
        self._feed_appender(ns, NewBatch(bid, b.payloads))

    def _ev_trim(self) -> None:
        if not self.faults:
            return
        self.at(self.now + self.randint(1, 2 * self.config.trim_every_ms), self._ev_trim)
        live = self.live_nodes()
        acked = max(self.check.acked_lsn, default=0)
        if not live or acked < 1:
            return
        ns = self.nodes[self.rng.choice(live)]
        up_to = self.randint(max(1, acked // 2), acked)
        self.check.max_trim = max(self.check.max_trim, up_to)

        def done(ok: bool, value: Any) -> None:
            self.trims += ok

        self.start_op(ns, lambda op: TrimLog(op, up_to), done)

    def _ev_operator_seal(self) -> None:
        if not self.faults:
            return
        self.at(self.now + self.randint(1, 2 * self.config.operator_seal_every_ms), self._ev_operator_seal)
        live = self.live_nodes()
        if not live or self.sealed_by_operator:
            return
        self.sealed_by_operator = True
        self._operator_op = self._operator(SealLog, self.rng.choice(live))
        self.at(self.now + self.randint(50, 300), self._ev_operator_unseal)

    def _operator(self, make: Callable[[int], Any], node: int) -> _OperatorOp:
        ns = self.nodes[node]
        op = _OperatorOp(ns, ns.generation, make is SealLog)

        def done(ok: bool, value: Any) -> None:
            op.ended, op.ok = True, ok
            self.operator_seals += ok and op.seal

        self.start_op(ns, make, done)
        return op

    def _ev_operator_unseal(self) -> None:
        """Once the seal ended, reconfigure until the chain is open again."""
        if not self.sealed_by_operator:
            return
        self.at(self.now + 100, self._ev_operator_unseal)
        op = self._operator_op
        if op is not None and op.running():
            return
        if self.chain is not None and self.chain.tail.params is not None and op is not None and not op.seal:
            self.sealed_by_operator = False  # reconfigured: the log is open again
            return
        live = self.live_nodes()
        if live:
            self._operator_op = self._operator(lambda op: Reconfigure(op, None), self.rng.choice(live))

    # --- tail waiters ---

    def _ev_waiter(self, idx: int) -> None:
        if idx >= len(self.tail_waiters):
            return  # the final read replaced them
        self.at(self.now + 60, self._ev_waiter, idx)
        w = self.tail_waiters[idx]
        ns = self.nodes[w.node]
        if w.busy or not ns.alive or ns.facade is None:
            return
        w.busy = True
        lsn = w.lsn

        def done(ok: bool, value: Any) -> None:
            w.busy = False
            if not ok:
                return
            if value <= lsn:
                self.check.fail(f"{w.name}: wait_for_tail({lsn}) returned tail {value}")
            if not self.check.committed(lsn):
                self.check.fail(f"{w.name}: wait_for_tail({lsn}) returned, but LSN {lsn} is not committed")
            w.lsn = lsn + self.randint(1, 3)

        self.start_op(ns, lambda op: WaitForTail(op, lsn), done)

    # --- reads: ReadWalk over ReadStreams (Bifrost.read's part) ---

    def start_read(
        self,
        ns: NodeState,
        name: str,
        walk: ReadWalk,
        on_entry: Callable[[LogRecord | LogTrimGap], None],
        on_done: Callable[[], None],
    ) -> _Read:
        read = _Read(self, ns, name, walk, on_entry, on_done)
        read.start()
        return read

    def push_tail(self, ns: NodeState, key: Any) -> None:
        """The replicated loglet feeds its read stream the tail it learns: the chain's end once
        marked sealed, else the sequencer's committed tail (pushed to other nodes) with the
        records its record cache holds from the stream's next offset on."""
        c = ns.components.get(key)
        if c is None:
            return
        if c.loglet in ns.sealed_at:
            self._feed(ns, key, SetTail(ns.sealed_at[c.loglet], final=True))
            return
        seg = self.check.segments.get(c.loglet)
        params = seg.params if seg is not None else None
        if params is not None:
            seq_ns = self.nodes[params.sequencer.node]
            seq = self.sequencer(seq_ns, params, start=False)
            if seq is not None:
                tail = seq.known_global_tail
                cache = seq_ns.caches.get(c.loglet)
                first = c.core.next_offset
                records = cache.get(first, tail, TAIL_PUSH_BYTES) if cache is not None else ()
                self.cached_records += len(records)
                self._feed(ns, key, Cached(first, records, tail))

    def _ev_stream_tail(self, node: int, gen: int, key: Any) -> None:
        ns = self.nodes[node]
        if ns.alive and ns.generation == gen and key in ns.components:
            self.push_tail(ns, key)
            self.at(self.now + 50, self._ev_stream_tail, node, gen, key)

    def _end_read_streams(self, ns: NodeState, lid: int, end: int) -> None:
        for key, c in list(ns.components.items()):
            if key[0] == "rs" and c.loglet == lid and ns.components.get(key) is c:
                self._feed(ns, key, SetTail(end, final=True))

    def _ev_reader(self, idx: int) -> None:
        if idx >= len(self.tail_readers):
            return  # the final read replaced the tailing readers
        self.at(self.now + 100, self._ev_reader, idx)
        r = self.tail_readers[idx]
        ns = self.nodes[r.node]
        if not ns.alive or ns.facade is None or (r.walk is not None and r.generation == ns.generation):
            return
        r.walk, r.generation = ReadWalk(r.lsn), ns.generation

        def entry(e: LogRecord | LogTrimGap) -> None:
            r.lsn = self.check.on_entry(r.name, r.lsn, e)

        r.read = self.start_read(ns, r.name, r.walk, entry, lambda: None)

    # --- phases ---

    def pending(self) -> list[ClientBatch]:
        return [b for b in self.batches if b.outcome == "pending"]

    def settled(self) -> bool:
        chain = self.chain
        if self.pending() or self.sealed_by_operator or chain is None or chain.tail.params is None:
            return False
        seq = chain.tail.params.sequencer
        return (
            self.nodes[seq.node].gid == seq
            and not any(self.detected_dead.values())
            and all(ns.facade is not None and ns.facade.version == self.chain_version for ns in self.nodes.values())
        )

    def run(self) -> SimResult:
        for c in range(self.config.clients):
            self.at(self.randint(0, 20), self._ev_client, c)
        self.at(0, self._ev_controller)
        if self.config.crash_every_ms:
            self.at(self.randint(1, self.config.crash_every_ms), self._ev_crash)
        if self.config.partition_every_ms:
            self.at(self.randint(1, self.config.partition_every_ms), self._ev_partition)
        if self.config.trim_every_ms:
            self.at(self.randint(1, self.config.trim_every_ms), self._ev_trim)
        if self.config.operator_seal_every_ms:
            self.at(self.randint(1, self.config.operator_seal_every_ms), self._ev_operator_seal)
        for i in range(len(self.tail_readers)):
            self.at(50 + i, self._ev_reader, i)
        for i in range(len(self.tail_waiters)):
            self.at(30 + i, self._ev_waiter, i)
        # safety phase: faults on
        self.run_until(self.config.safety_ms)
        # liveness phase: heal, restart everyone, no new appends; all pending must complete
        self.faults = False
        self.accepting = False
        self.blocked = set()
        for n, ns in self.nodes.items():
            if not ns.alive:
                self._ev_restart(n)
        if self.chain is None:
            self.at(self.now, self._ev_create)
        deadline = self.now + self.config.liveness_ms
        self.run_until(deadline, stop=self.settled)
        left = self.pending()
        if left or not self.settled():
            raise InvariantViolation(
                f"liveness: {len(left)} appends still pending {self.config.liveness_ms} ms after healing "
                f"(first: {left[0] if left else None}); chain: {self.chain.describe() if self.chain else None}"
            )
        self.final_read()
        return SimResult(self)

    def _ev_create(self) -> None:
        self.start_op(self.nodes[1], CreateFirstSegment, lambda ok, v: None)

    def final_read(self) -> None:
        """Every node finds the tail, then reads the whole log: every acknowledged record at its
        LSN (unless trimmed); one node reads it with dedup too: each record exactly once."""
        for r in self.tail_readers:
            if r.read is not None:
                r.read.stop()
        self.tail_readers = []
        self.tail_waiters = []
        tails: dict[int, int] = {}

        def find_tail(ns: NodeState) -> None:
            def done(ok: bool, value: Any) -> None:
                if ok:
                    tails[ns.node] = value[0]
                else:  # a caller tries again
                    self.at(self.now + 50, find_tail, ns)

            self.start_op(ns, FindTail, done)

        for ns in self.nodes.values():
            find_tail(ns)
        self.run_until(self.now + 10_000, stop=lambda: len(tails) == len(self.nodes))
        if len(tails) != len(self.nodes) or len(set(tails.values())) != 1:
            raise InvariantViolation(f"find_tail after healing: {tails}; chain {self.chain.describe() if self.chain else None}")
        tail = next(iter(tails.values()))
        first = self.check.first_copies()
        reads: dict[str, list[LogRecord | LogTrimGap]] = {}
        done: set[str] = set()
        dedup_node = self.randint(1, len(self.nodes))
        for n, ns in self.nodes.items():
            for dedup in (False, True) if n == dedup_node else (False,):
                name = f"final-N{n}{'-dedup' if dedup else ''}"
                got = reads[name] = []
                if dedup:
                    self._dedup_readers.add(name)
                if tail <= 1:
                    done.add(name)
                    continue
                self.start_read(ns, name, ReadWalk(1, tail - 1, dedup=dedup), got.append, lambda name=name: done.add(name))
        self.run_until(self.now + 30_000, stop=lambda: len(done) == len(reads))
        if len(done) != len(reads):
            raise InvariantViolation(f"final read did not finish in 30 s: {sorted(set(reads) - done)}")
        for name, entries in reads.items():
            expected = 1
            for e in entries:
                expected = self.check.on_entry(name, expected, e)
            if not self.dedup_reader(name) and expected != tail:
                raise InvariantViolation(f"{name} ended at {expected}, the tail is {tail}")
            got = {e.lsn: tag(e.appender, e.seq, e.payload) for e in entries if isinstance(e, LogRecord)}
            if not self.dedup_reader(name):
                for payload, lsn in self.check.acked_payload.items():
                    if lsn > self.check.max_trim and got.get(lsn) != payload:
                        raise InvariantViolation(f"{name} reads {got.get(lsn)!r} at LSN {lsn}, acked {payload!r}")
                continue
            # With dedup: each record once, at its first copy (a later copy of a record whose
            # first copy was trimmed is dropped too, when the appender's later records came first).
            if len(got) != len(set(got.values())):
                raise InvariantViolation(f"{name} delivered a record twice")
            present = set(got.values())
            for payload in self.check.acked_payload:
                if first[payload] > self.check.max_trim and payload not in present:
                    raise InvariantViolation(f"{name} misses {payload!r} (first copy at LSN {first[payload]})")
        self.final_log = {
            e.lsn: tag(e.appender, e.seq, e.payload) for e in reads["final-N1"] if isinstance(e, LogRecord)
        }


@dataclass
class _OperatorOp:
    ns: NodeState
    generation: int
    seal: bool  # else a reconfiguration
    ended: bool = False
    ok: bool = False

    def running(self) -> bool:
        """Not ended, and its process is still there (a crash ends it unanswered)."""
        return not self.ended and self.ns.alive and self.ns.generation == self.generation


class _Read:
    """One `Bifrost.read` on one node: a `ReadWalk` whose loglet reads are `ReadStream`s."""

    def __init__(
        self,
        sim: Simulation,
        ns: NodeState,
        name: str,
        walk: ReadWalk,
        on_entry: Callable[[LogRecord | LogTrimGap], None],
        on_done: Callable[[], None],
    ) -> None:
        self.sim, self.ns, self.name, self.walk = sim, ns, name, walk
        self.on_entry, self.on_done = on_entry, on_done
        self.gen = ns.generation
        self.key: Any = None
        self.params: LogletParams | None = None
        self.finished = False
        self.delivered = 0  # records delivered and not consumed yet

    def alive(self) -> bool:
        return self.ns.alive and self.ns.generation == self.gen and not self.finished

    def start(self) -> None:
        f = self.ns.facade
        assert f is not None
        if f.loaded:
            self.run(self.walk.step(ChainIs(f.chain, f.version)))
        else:
            self.sim.start_op(self.ns, GetChain, self.chain_came)

    def run(self, outs: list[Any]) -> None:
        for o in outs:
            if not self.alive():
                return
            if isinstance(o, Emit):
                self.on_entry(o.entry)
            elif isinstance(o, ReadDone):
                self.finished = True
                self.ns.components.pop(self.key, None)
                self.on_done()
            elif isinstance(o, WantChain):
                f = self.ns.facade
                assert f is not None
                if o.newer:
                    self.sim.start_op(self.ns, lambda op, v=o.after_version: WaitChainChange(op, v), self.chain_came)
                else:
                    self.run(self.walk.step(ChainIs(f.chain, f.version)))
            elif isinstance(o, ReadLoglet):
                self.open(o)

    def chain_came(self, ok: bool, value: Any) -> None:
        if not self.alive():
            return
        if ok:
            self.run(self.walk.step(ChainIs(value.chain, value.version)))
        else:  # the chain could not be read: ask again a little later
            self.sim.at(self.sim.now + 50, self.run, [WantChain(None, newer=False)])

    def open(self, o: ReadLoglet) -> None:
        params = o.segment.params
        assert params is not None
        ns, sim = self.ns, self.sim
        core = ReadStream(
            params.loglet_id,
            params.nodeset,
            sim.rng,
            sim.reader_config,
            from_offset=o.from_offset,
            preferred=ns.node,
            now_ms=sim.now,
        )
        self.key = key = ("rs", self.name, ns.new_id())
        self.params = params
        ns.components[key] = Component(core, sim.now, self.stream_output, self.stream_done, params.loglet_id)
        sim.push_tail(ns, key)
        if key in ns.components:
            sim._feed(ns, key, Tick(sim.now))
            sim.at(sim.now + 50, sim._ev_stream_tail, ns.node, self.gen, key)

    def stream_output(self, x: Any) -> None:
        if not self.alive():
            return
        assert self.params is not None
        if isinstance(x, Deliver):
            self.sim.check.on_loglet_deliver(self.name, self.params, x.offset, x.payload)
            appender, seq, payload = untag(x.payload)
            outs = self.walk.step(LogletRecord(x.offset, payload, appender, seq))
        elif isinstance(x, DeliverTrimGap):
            outs = self.walk.step(LogletGap(x.offset, x.to))
        else:
            return
        # The consumer takes them a little later: read-ahead is bounded by credit.
        self.delivered += 1
        if self.delivered == 1:
            sim = self.sim
            sim.at(sim.now + sim.randint(0, 5), self.consume, self.key)
        self.run(outs)

    def consume(self, key: Any) -> None:
        if key != self.key:
            return  # that loglet's stream ended (and its count with it): not this one's credit
        n, self.delivered = self.delivered, 0
        if self.alive() and key in self.ns.components:
            self.sim._feed(self.ns, key, Consumed(n))

    def stop(self) -> None:
        """The caller is done with this read."""
        self.finished = True
        self.ns.components.pop(self.key, None)

    def stream_done(self) -> None:
        self.key = None
        self.delivered = 0
        if self.alive():
            self.run(self.walk.step(LogletEnd()))


@dataclass
class SimResult:
    seed: int
    config: SwarmConfig
    acked: int
    duplicates: int
    reconfigurations: int
    trims: int
    operator_seals: int
    remote_appends: int
    cached_records: int
    resends_answered: int
    reappended: int
    lost_chain_replies: int
    cas_conflicts: int
    events: int
    virtual_ms: int

    def __init__(self, sim: Simulation) -> None:
        self.seed = sim.seed
        self.config = sim.config
        self.acked = len(sim.check.acked_payload)
        counts: dict[bytes, int] = {}
        for p in sim.final_log.values():
            counts[p] = counts.get(p, 0) + 1
        self.duplicates = sum(c - 1 for c in counts.values())
        self.reconfigurations = sim.reconfigurations
        self.trims = sim.trims
        self.operator_seals = sim.operator_seals
        self.remote_appends = sim.remote_appends
        self.cached_records = sim.cached_records
        self.resends_answered = sim.resends_answered
        self.reappended = sim.reappended + sum(
            ns.appender.reappended_records for ns in sim.nodes.values() if ns.appender is not None
        )
        self.lost_chain_replies = sim.lost_chain_replies
        self.cas_conflicts = sim.cas_conflicts
        self.events = sim.events
        self.virtual_ms = sim.now


def run_seed(seed: int, **kw: Any) -> SimResult:
    return Simulation(seed, **kw).run()

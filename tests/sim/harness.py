"""Deterministic simulation of bifrost's replicated-loglet cores.

One `random.Random(seed)` draws the whole run ("swarm"): cluster size, replication, network
delay/loss/duplication, partitions, crash and restart rates, disk latency, workload. All nodes
run in one thread over a virtual millisecond clock and an event heap ordered by (time, seq).

Each node has a durable disk (`MemoryLogStore`), a `LogServer` core, the `Sequencer` of every
loglet it sequences, at most one `Reconfiguration`, and tailing `ReadStream`s. A crash loses
every core and every unsynced write; the disk survives; a restart bumps the generation.
Appenders are external clients: they append unique payloads through the tail segment's
sequencer and re-append unacknowledged batches after a seal (at-least-once).

Invariants are checked as events happen (see `Checker`), then a liveness phase heals the
cluster and every pending append must complete; finally every node reads the whole log.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bifrost.core import (
    Append,
    AppendFailed,
    CasChain,
    CasResult,
    Chain,
    Committed,
    Consumed,
    Deliver,
    DeliverTrimGap,
    GenerationalNodeId,
    LogletParams,
    LogServer,
    MemoryLogStore,
    NodeAlive,
    NodeDead,
    Persist,
    Persisted,
    PutRecords,
    ReaderConfig,
    ReaderState,
    ReadStream,
    Reconfiguration,
    Reconfigured,
    Reply,
    Request,
    Response,
    Send,
    Sequencer,
    SequencerConfig,
    SequencerState,
    SetTail,
    SetTimer,
    TaskConfig,
    Tick,
    describe,
    loglet_id,
    select_nodeset,
)

LOG_ID = 7


class InvariantViolation(AssertionError):
    pass


@dataclass(frozen=True)
class SwarmConfig:
    nodes: int
    replication: int
    initial_nodeset: tuple[int, ...]
    clients: int
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
    tail_readers: int
    safety_ms: int
    liveness_ms: int

    @staticmethod
    def draw(rng: random.Random) -> SwarmConfig:
        n = rng.randint(1, 5)
        r = rng.randint(1, min(3, n))
        size = rng.randint(r, n)
        nodeset = tuple(sorted(rng.sample(range(1, n + 1), size)))
        faulty = rng.random() < 0.85
        return SwarmConfig(
            nodes=n,
            replication=r,
            initial_nodeset=nodeset,
            clients=rng.randint(1, 3),
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
            tail_readers=rng.randint(0, 2),
            safety_ms=1500,
            liveness_ms=15_000,
        )

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


# --- per-node components ----------------------------------------------------------------


@dataclass
class Component:
    core: Any
    last_tick: int = -1
    params: LogletParams | None = None  # the loglet a reader reads


@dataclass
class NodeState:
    node: int
    disk: MemoryLogStore = field(default_factory=MemoryLogStore)
    generation: int = 1
    alive: bool = True
    dead_since: int = 0
    log_server: LogServer | None = None
    components: dict[tuple[Any, ...], Component] = field(default_factory=dict)
    disk_busy_until: int = 0

    @property
    def gid(self) -> GenerationalNodeId:
        return GenerationalNodeId(self.node, self.generation)


@dataclass
class ClientBatch:
    client: int
    seq: int
    payloads: tuple[bytes, ...]
    attempt: int | None = None  # global batch id of the attempt in flight
    attempt_node: int | None = None
    attempts: int = 0
    acked: bool = False


@dataclass
class TailReaderState:
    name: str
    node: int
    lsn: int = 1  # next LSN to deliver; survives crashes (a processor's applied LSN does)


# --- invariants ---------------------------------------------------------------------------


class Checker:
    """Safety invariants, checked as the run goes (DESIGN.md 'Safety invariants')."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.assigned: dict[tuple[int, int], bytes] = {}  # (loglet, offset) -> payload
        self.acked_lsn: dict[int, bytes] = {}
        self.acked_payload: dict[bytes, int] = {}
        self.duplicate_acks = 0
        self.observed_lsn: dict[int, bytes] = {}
        self.max_global_tail: dict[int, int] = {}
        self.max_acked_offset: dict[int, int] = {}
        self.sealed_tail: dict[int, int] = {}
        self.durable_prefix: dict[int, int] = {}
        self.local_tails: dict[tuple[int, int], int] = {}

    def fail(self, what: str) -> None:
        raise InvariantViolation(what)

    def on_assign(self, lid: int, first: int, payloads: tuple[bytes, ...]) -> None:
        for i, p in enumerate(payloads):
            key = (lid, first + i)
            if key in self.assigned:
                self.fail(f"offset {key} assigned twice: {self.assigned[key]!r} and {p!r}")
            self.assigned[key] = p

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

    def on_committed(self, params: LogletParams, c: Committed, payloads: tuple[bytes, ...]) -> None:
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
        seg = self.sim.chain.segment_of(lid)
        assert seg is not None, f"ack from loglet {lid} not in the chain"
        for i, payload in enumerate(payloads):
            lsn = seg.lsn(c.first_offset + i)
            if self.acked_lsn.setdefault(lsn, payload) != payload:
                self.fail(f"LSN {lsn} acknowledged with {self.acked_lsn[lsn]!r} and {payload!r}")
            if payload in self.acked_payload:
                self.duplicate_acks += 1
            else:
                self.acked_payload[payload] = lsn
            self.observe(lsn, payload, "ack")

    def on_chain(self, old: Chain, new: Chain) -> None:
        keep = old.segments[:-1]
        if new.segments[: len(keep)] != keep:
            self.fail(f"chain rewrote history: {old.describe()} -> {new.describe()}")
        old_tail = old.tail
        assert old_tail.params is not None
        end = new.end_lsn(old_tail) if old_tail in new.segments else new.tail.base_lsn
        assert end is not None
        lid = old_tail.params.loglet_id
        sealed = old_tail.offset(end)
        if self.max_acked_offset.get(lid, 0) >= sealed:
            self.fail(f"loglet {lid} sealed at {sealed} below acked offset {self.max_acked_offset[lid]}")
        self.sealed_tail[lid] = sealed
        # Every offset below the sealed tail must be durable on a write quorum (repair did it).
        for off in range(self.durable_prefix.get(lid, 1), sealed):
            if self.copies(lid, off, old_tail.params.nodeset) < old_tail.params.replication:
                self.fail(f"loglet {lid} sealed at {sealed} but offset {off} is not on a write quorum")

    def observe(self, lsn: int, payload: bytes, who: str) -> None:
        if self.observed_lsn.setdefault(lsn, payload) != payload:
            self.fail(f"LSN {lsn} seen as {self.observed_lsn[lsn]!r} and as {payload!r} (by {who})")

    def on_deliver(self, reader: str, params: LogletParams, offset: int, payload: bytes) -> None:
        lid = params.loglet_id
        bound = max(self.max_global_tail.get(lid, 1), self.sealed_tail.get(lid, 1))
        if offset >= bound:
            self.fail(f"{reader} delivered {lid}@{offset} at/past the global tail {bound}")
        if self.assigned.get((lid, offset)) != payload:
            self.fail(
                f"{reader} delivered {payload!r} at {lid}@{offset}, assigned {self.assigned.get((lid, offset))!r}"
            )
        seg = self.sim.chain.segment_of(lid)
        assert seg is not None
        end = self.sim.chain.end_lsn(seg)
        lsn = seg.lsn(offset)
        if end is None or lsn < end:
            self.observe(lsn, payload, reader)


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
        self._heap: list[tuple[int, int, str, tuple[Any, ...]]] = []
        self.events = 0
        self.nodes: dict[int, NodeState] = {n: NodeState(n) for n in range(1, self.config.nodes + 1)}
        for ns in self.nodes.values():
            ns.log_server = log_server_factory(ns.node, ns.disk)
        self.faults = True
        self.blocked: dict[tuple[int, int], bool] = {}
        self.detected_dead: dict[int, bool] = {n: False for n in self.nodes}
        self.check = Checker(self)
        self.seq_config = SequencerConfig(store_timeout_ms=300, retry_backoff_ms=50)
        self.task_config = TaskConfig(request_timeout_ms=300, retry_backoff_ms=50, repair_batch_records=8)
        self.reader_config = ReaderConfig(request_timeout_ms=300, poll_interval_ms=100, batch_records=16)
        # metadata store: one versioned chain, compare-and-set
        first = LogletParams(
            loglet_id(LOG_ID, 0), self.nodes[1].gid, self.config.replication, self.config.initial_nodeset
        )
        self.chain = Chain.new(LOG_ID, first)
        self.chain_version = 1
        self._start_sequencer(self.nodes[1], first)
        # workload
        self.batches: list[ClientBatch] = []
        self.client_seq: dict[int, int] = {c: 0 for c in range(self.config.clients)}
        self.client_pending: dict[int, ClientBatch | None] = {c: None for c in range(self.config.clients)}
        self.attempts: dict[int, ClientBatch] = {}
        self._next_attempt = 1
        self.accepting = True
        self.reconfigurations = 0
        self.tail_readers = [
            TailReaderState(f"reader{i}", self.rng.randint(1, self.config.nodes))
            for i in range(self.config.tail_readers)
        ]

    # --- event plumbing ---

    def at(self, t: int, kind: str, *data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, data))

    def log(self, msg: str) -> None:
        if self.trace_enabled:
            self.trace.append(f"{self.now:>6} {msg}")

    def run_until(self, t_end: int, stop: Callable[[], bool] | None = None) -> None:
        while self._heap and self._heap[0][0] <= t_end:
            if stop is not None and stop():
                return
            t, _, kind, data = heapq.heappop(self._heap)
            self.now = t
            self.events += 1
            if self.events > 400_000:
                raise InvariantViolation("runaway simulation: too many events")
            getattr(self, "_ev_" + kind)(*data)
        if stop is None or not stop():
            self.now = max(self.now, t_end)

    # --- network ---

    def send(self, src: int, dst: int, payload: tuple[Any, ...]) -> None:
        lo, hi = self.config.net_delay_ms
        local = src == dst
        if self.faults and not local:
            if self.blocked.get((src, dst)) or self.rng.random() < self.config.drop_rate:
                return
            if self.rng.random() < self.config.dup_rate:
                self.at(self.now + self.rng.randint(lo, hi), "deliver", dst, payload)
        self.at(self.now + (0 if local else self.rng.randint(lo, hi)), "deliver", dst, payload)

    def _ev_deliver(self, dst: int, payload: tuple[Any, ...]) -> None:
        ns = self.nodes[dst]
        if not ns.alive:
            return
        kind = payload[0]
        if kind == "req":
            _, src, sender, rid, msg = payload
            assert ns.log_server is not None
            self.log(f"N{dst} <- N{src} {describe(Request(sender, rid, msg))}")
            self._log_server_outputs(ns, ns.log_server.step(Request(sender, rid, msg)))
        else:
            _, src, gen, comp, rid, msg = payload
            if gen != ns.generation or comp not in ns.components:
                return
            self._feed(ns, comp, Response(src, rid, msg))

    # --- log-server shell ---

    def _log_server_outputs(self, ns: NodeState, outs: list[Any]) -> None:
        for o in outs:
            self.log(f"N{ns.node} ls {describe(o)}")
            if isinstance(o, Persist):
                lo, hi = self.config.disk_latency_ms
                done = max(ns.disk_busy_until, self.now) + self.rng.randint(lo, hi)
                ns.disk_busy_until = done
                self.at(done, "persisted", ns.node, ns.generation, o)
            elif isinstance(o, Reply):
                src_node, gen, comp = o.to
                self.send(ns.node, src_node, ("resp", ns.node, gen, comp, o.request_id, o.message))

    def _ev_persisted(self, node: int, gen: int, p: Persist) -> None:
        ns = self.nodes[node]
        if not ns.alive or ns.generation != gen:
            return  # the crash lost this unsynced batch
        ns.disk.apply(p.writes)
        self.check.on_disk_write(node, p.writes, ns.disk)
        assert ns.log_server is not None
        self._log_server_outputs(ns, ns.log_server.step(Persisted(p.token)))

    # --- components (sequencers, reconfigurations, readers) ---

    def _feed(self, ns: NodeState, comp: tuple[Any, ...], inp: Any) -> None:
        c = ns.components.get(comp)
        if c is None:
            return
        outs: list[Any] = []
        if c.last_tick < self.now and not isinstance(inp, Tick):
            c.last_tick = self.now
            outs += c.core.step(Tick(self.now))
        if isinstance(inp, Tick):
            c.last_tick = self.now
        outs += c.core.step(inp)
        self._component_outputs(ns, comp, c, outs)

    def _component_outputs(self, ns: NodeState, comp: tuple[Any, ...], c: Component, outs: list[Any]) -> None:
        for o in outs:
            self.log(f"N{ns.node} {comp[0]} {describe(o)}")
            if isinstance(o, Send):
                self.send(
                    ns.node, o.to, ("req", ns.node, (ns.node, ns.generation, comp), o.request_id, o.message)
                )
            elif isinstance(o, SetTimer):
                self.at(max(o.at_ms, self.now), "timer", ns.node, ns.generation, comp)
            elif isinstance(o, Committed | AppendFailed):
                self._on_append_outcome(ns, c.core, o)
            elif isinstance(o, CasChain):
                self._on_cas(ns, comp, o)
            elif isinstance(o, Reconfigured):
                ns.components.pop(comp, None)
            elif isinstance(o, Deliver | DeliverTrimGap):
                assert c.params is not None
                self._on_deliver(comp, c.params, o)
        delivered = sum(1 for o in outs if isinstance(o, Deliver | DeliverTrimGap))
        if delivered:
            # The reader's consumer takes them a little later: read-ahead is bounded by credit.
            self.at(self.now + self.rng.randint(0, 5), "consume", ns.node, ns.generation, comp, delivered)
        if isinstance(c.core, Sequencer):
            self.check.on_global_tail(c.core.params.loglet_id, c.core.known_global_tail)

    def _ev_timer(self, node: int, gen: int, comp: tuple[Any, ...]) -> None:
        ns = self.nodes[node]
        if ns.alive and ns.generation == gen:
            self._feed(ns, comp, Tick(self.now))

    def _ev_consume(self, node: int, gen: int, comp: tuple[Any, ...], records: int) -> None:
        ns = self.nodes[node]
        if ns.alive and ns.generation == gen and comp in ns.components:
            self._feed(ns, comp, Consumed(records))

    def _start_sequencer(self, ns: NodeState, params: LogletParams) -> None:
        seq = Sequencer(params, self.seq_config, now_ms=self.now)
        comp = ("seq", params.loglet_id)
        ns.components[comp] = Component(seq, self.now)
        for n, dead in self.detected_dead.items():
            if dead:
                self._feed(ns, comp, NodeDead(n))

    def sequencer_for(self, params: LogletParams) -> Sequencer | None:
        ns = self.nodes[params.sequencer.node]
        if not ns.alive or ns.generation != params.sequencer.generation:
            return None
        c = ns.components.get(("seq", params.loglet_id))
        return c.core if c is not None else None

    # --- clients ---

    def _ev_client(self, client: int) -> None:
        lo, hi = self.config.append_every_ms
        self.at(self.now + self.rng.randint(lo, hi), "client", client)
        b = self.client_pending[client]
        if b is None:
            if not self.accepting:
                return
            self.client_seq[client] += 1
            s = self.client_seq[client]
            k = self.rng.randint(1, self.config.batch_max)
            b = ClientBatch(client, s, tuple(f"c{client}.{s}.{i}".encode() for i in range(k)))
            self.client_pending[client] = b
            self.batches.append(b)
        if b.attempt is None:
            self._submit(b)

    def _submit(self, b: ClientBatch) -> None:
        params = self.chain.tail.params
        if params is None:
            return
        seq = self.sequencer_for(params)
        if seq is None or seq.state is not SequencerState.OPEN:
            return  # wait for reconfiguration
        aid = self._next_attempt
        self._next_attempt += 1
        b.attempt, b.attempt_node = aid, params.sequencer.node
        b.attempts += 1
        self.attempts[aid] = b
        self.check.on_assign(params.loglet_id, seq.next_offset, b.payloads)
        ns = self.nodes[params.sequencer.node]
        self._feed(ns, ("seq", params.loglet_id), Append(aid, b.payloads))

    def _on_append_outcome(self, ns: NodeState, seq: Sequencer, o: Committed | AppendFailed) -> None:
        b = self.attempts.pop(o.batch_id)
        if isinstance(o, Committed):
            self.check.on_committed(seq.params, o, b.payloads)
            if not b.acked:
                b.acked = True
                self.client_pending[b.client] = None
        if b.attempt == o.batch_id:
            b.attempt = None
            b.attempt_node = None

    # --- metadata CAS and reconfiguration ---

    def _on_cas(self, ns: NodeState, comp: tuple[Any, ...], o: CasChain) -> None:
        ok = o.expected_version == self.chain_version
        if ok:
            old = self.chain
            self.check.on_chain(old, o.chain)
            self.chain = o.chain
            self.chain_version += 1
            self.reconfigurations += 1
            new = o.chain.tail.params
            assert new is not None
            self.log(f"chain v{self.chain_version}: {o.chain.describe()}")
            if new.sequencer == ns.gid:
                self._start_sequencer(ns, new)
        self._feed(ns, comp, CasResult(ok))

    def _ev_controller(self) -> None:
        self.at(self.now + 50, "controller")
        # failure detector: a node is dead after detect_ms without it
        for n, ns in self.nodes.items():
            dead = not ns.alive and self.now - ns.dead_since >= self.config.detect_ms
            if dead != self.detected_dead[n]:
                self.detected_dead[n] = dead
                hint = NodeDead(n) if dead else NodeAlive(n)
                for other in self.nodes.values():
                    if other.alive:
                        for comp in list(other.components):
                            if comp[0] != "reader":
                                self._feed(other, comp, hint)
        params = self.chain.tail.params
        if params is None:
            return
        seq = self.sequencer_for(params)
        needed = seq is None and (
            self.detected_dead[params.sequencer.node]
            or self.nodes[params.sequencer.node].generation != params.sequencer.generation
        )
        needed = needed or (seq is not None and seq.state is SequencerState.SEALED)
        if self.faults and not needed and self.rng.random() < self.config.spurious_reconfig_rate / 4:
            needed = True
        if not needed:
            return
        live = [n for n, ns in self.nodes.items() if ns.alive and not self.detected_dead[n]]
        candidates = [n for n in live if not any(c[0] == "reconf" for c in self.nodes[n].components)]
        if not candidates:
            return
        me = self.rng.choice(candidates)
        nodeset = select_nodeset(me, live, self.config.replication, self.rng)
        if nodeset is None:
            return
        ns = self.nodes[me]
        core = Reconfiguration(
            ns.gid,
            self.chain,
            self.chain_version,
            nodeset,
            self.config.replication,
            self.task_config,
            now_ms=self.now,
        )
        comp = ("reconf", self.chain_version)
        ns.components[comp] = Component(core, self.now)
        self.log(f"N{me} starts reconfiguration of {params} -> {core.new_params}")
        self._feed(ns, comp, Tick(self.now))

    # --- faults ---

    def _ev_crash(self) -> None:
        if self.faults and self.config.crash_every_ms:
            self.at(self.now + self.rng.randint(1, 2 * self.config.crash_every_ms), "crash")
        alive = [n for n, ns in self.nodes.items() if ns.alive]
        if not self.faults or not alive:
            return
        n = self.rng.choice(alive)
        self.crash(n)
        lo, hi = self.config.restart_after_ms
        self.at(self.now + self.rng.randint(lo, hi), "restart", n)

    def crash(self, n: int) -> None:
        ns = self.nodes[n]
        self.log(f"N{n} CRASH")
        ns.alive = False
        ns.dead_since = self.now
        ns.log_server = None
        ns.components.clear()
        ns.disk_busy_until = 0
        for b in self.batches:
            if b.attempt is not None and b.attempt_node == n:
                self.attempts.pop(b.attempt, None)
                b.attempt = None  # connection loss fails the pending commit

    def _ev_restart(self, n: int) -> None:
        ns = self.nodes[n]
        if ns.alive:
            return
        ns.alive = True
        ns.generation += 1
        ns.log_server = self.log_server_factory(n, ns.disk)
        self.log(f"N{n} RESTART as {ns.gid}")

    def _ev_partition(self) -> None:
        if not self.faults:
            return
        self.at(self.now + self.rng.randint(1, 2 * self.config.partition_every_ms), "partition")
        self.blocked = {}
        if self.rng.random() < 0.3:
            return  # healed for a while
        if self.rng.random() < 0.5:
            iso = self.rng.randint(1, self.config.nodes)
            for o in self.nodes:
                if o != iso:
                    self.blocked[(iso, o)] = self.blocked[(o, iso)] = True
        else:
            a, b = self.rng.randint(1, self.config.nodes), self.rng.randint(1, self.config.nodes)
            if a != b:
                self.blocked[(a, b)] = True

    # --- tailing readers ---

    def _ev_reader(self, idx: int) -> None:
        if idx >= len(self.tail_readers):
            return  # the final read replaced the tailing readers
        self.at(self.now + 100, "reader", idx)
        r = self.tail_readers[idx]
        ns = self.nodes[r.node]
        if not ns.alive:
            return
        comp = ("reader", r.name)
        c = ns.components.get(comp)
        seg = self.chain.find(r.lsn)
        if c is None:
            if seg is None or seg.params is None:
                return
            core = ReadStream(
                seg.params.loglet_id,
                seg.params.nodeset,
                self.rng,
                self.reader_config,
                from_offset=seg.offset(r.lsn),
                preferred=r.node,
                now_ms=self.now,
            )
            c = ns.components[comp] = Component(core, self.now, seg.params)
        params = c.params
        assert params is not None
        cur = self.chain.segment_of(params.loglet_id)
        if cur is None:
            ns.components.pop(comp)
            return
        end = self.chain.end_lsn(cur)
        if end is not None:
            self._feed(ns, comp, SetTail(cur.offset(end), final=True))
        if c.core.state is ReaderState.DONE:
            ns.components.pop(comp, None)
        else:
            self._feed(ns, comp, Tick(self.now))

    def _on_deliver(self, comp: tuple[Any, ...], params: LogletParams, o: Deliver | DeliverTrimGap) -> None:
        seg = self.chain.segment_of(params.loglet_id)
        assert seg is not None
        if isinstance(o, Deliver):
            self.check.on_deliver(comp[1], params, o.offset, o.payload)
            for r in self.tail_readers:
                if r.name == comp[1]:
                    r.lsn = seg.lsn(o.offset) + 1
            if comp[1] in self.final_reads:
                self.final_reads[comp[1]].append((seg.lsn(o.offset), o.payload))
        else:
            self.check.fail(f"{comp[1]} got a trim gap {o}, but nothing is trimmed")

    # --- phases ---

    final_reads: dict[str, list[tuple[int, bytes]]] = {}

    def settled(self) -> bool:
        tail = self.chain.tail.params
        seq = self.sequencer_for(tail) if tail is not None else None
        return seq is not None and seq.state is SequencerState.OPEN and not self.pending()

    def pending(self) -> list[ClientBatch]:
        return [b for b in self.batches if not b.acked]

    def run(self) -> SimResult:
        self.final_reads = {}
        for c in range(self.config.clients):
            self.at(self.rng.randint(0, 20), "client", c)
        self.at(0, "controller")
        if self.config.crash_every_ms:
            self.at(self.rng.randint(1, self.config.crash_every_ms), "crash")
        if self.config.partition_every_ms:
            self.at(self.rng.randint(1, self.config.partition_every_ms), "partition")
        for i in range(len(self.tail_readers)):
            self.at(50 + i, "reader", i)
        # safety phase: faults on
        self.run_until(self.config.safety_ms)
        # liveness phase: heal, restart everyone, no new appends; all pending must complete
        self.faults = False
        self.accepting = False
        self.blocked = {}
        for n, ns in self.nodes.items():
            if not ns.alive:
                self._ev_restart(n)
        deadline = self.now + self.config.liveness_ms
        self.run_until(deadline, stop=self.settled)
        left = self.pending()
        if left or not self.settled():
            raise InvariantViolation(
                f"liveness: {len(left)} appends still pending {self.config.liveness_ms} ms after healing "
                f"(first: {left[0]}); chain: {self.chain.describe()}"
            )
        self.final_read()
        return SimResult(self)

    def final_read(self) -> None:
        """Every node reads the whole log: every acked payload at its LSN, nothing else differs."""
        tail_params = self.chain.tail.params
        assert tail_params is not None
        seq = self.sequencer_for(tail_params)
        assert seq is not None, "no live sequencer for the tail after the liveness phase"
        for r in self.tail_readers:
            self.nodes[r.node].components.pop(("reader", r.name), None)
        self.tail_readers = []
        self.final_reads = {}
        readers: list[tuple[NodeState, tuple[Any, ...]]] = []
        for n, ns in self.nodes.items():
            for seg in self.chain.segments:
                if seg.params is None:
                    continue
                end = self.chain.end_lsn(seg)
                end_off = seg.offset(end) if end is not None else seq.known_global_tail
                if end_off <= 1:
                    continue
                name = f"final-N{n}-{seg.index}"
                core = ReadStream(
                    seg.params.loglet_id,
                    seg.params.nodeset,
                    self.rng,
                    self.reader_config,
                    preferred=n,
                    now_ms=self.now,
                )
                comp = ("reader", name)
                ns.components[comp] = Component(core, self.now, seg.params)
                self.final_reads[name] = []
                readers.append((ns, comp))
                self._feed(ns, comp, SetTail(end_off, final=True))

        def done() -> bool:
            return all(ns.components[comp].core.state is ReaderState.DONE for ns, comp in readers)

        self.run_until(self.now + 30_000, stop=done)
        if not done():
            stuck = [
                f"{comp[1]}: next={ns.components[comp].core.next_offset} tail={ns.components[comp].core.known_tail}"
                for ns, comp in readers
                if ns.components[comp].core.state is not ReaderState.DONE
            ]
            raise InvariantViolation(
                f"final read did not finish in 30 s: {stuck}; chain {self.chain.describe()}"
            )
        per_node: dict[int, dict[int, bytes]] = {}
        for name, got in self.final_reads.items():
            node = int(name.split("-")[1][1:])
            for lsn, p in got:
                per_node.setdefault(node, {})[lsn] = p
        for node, log in per_node.items():
            for payload, lsn in self.check.acked_payload.items():
                if log.get(lsn) != payload:
                    raise InvariantViolation(
                        f"N{node} reads {log.get(lsn)!r} at LSN {lsn}, acked {payload!r}"
                    )
        self.final_log = per_node.get(1, {})


@dataclass
class SimResult:
    seed: int
    config: SwarmConfig
    acked: int
    duplicates: int
    reconfigurations: int
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
        self.events = sim.events
        self.virtual_ms = sim.now


def run_seed(seed: int, **kw: Any) -> SimResult:
    return Simulation(seed, **kw).run()

"""The sequencer core: one per loglet, on the node (and generation) named in its params.

    step(Append | Response | Tick | NodeDead | NodeAlive) -> [Send | Committed | AppendFailed | SetTimer]

Rules (reference §3.2):

* Offsets are assigned densely from 1, in `Append` order; a sequencer only ever starts on an
  empty loglet (a restarted node has a new generation and never sequences the old loglet).
* Each batch goes to every member of the nodeset ("flood"). A server is sent batch k only when
  it reported a local tail past k's first offset (it stored k-1) or k-1 is globally committed:
  so any write quorum that stored k holds, or did not need, everything before k.
* The batches a server may be sent, and those right behind them that it has not been sent,
  travel as one `Store` (up to `max_store_records`/`max_store_bytes`): the rule above allows
  one store in flight per server, so without this every batch queued behind that store
  would wait one more round trip and fsync per batch ahead of it. A merged store that meets
  a CONFLICT is resent batch by batch to that server, so the conflict lands on its own batch.
* A batch commits when a write quorum reports it durable (Stored OK). The known global tail is
  then raised to its end (never lowered); because of the rule above it covers a fully
  committed prefix even when quorums complete out of order. Every Store carries the known
  global tail, which is how log-servers learn it.
* `Committed` goes out strictly in append order, only for batches below the global tail.
* Stores that time out, or are refused with a retryable status, are retried per server
  (`store_timeout_ms`, `retry_backoff_ms`), forever, while the loglet is open. A server that
  answers CONFLICT holds another record at one of the batch's offsets: it never gets that
  batch again (the batch can only commit on the others).
* A server that answers DISABLED (its disk failed) is retried with backoff, but while the
  servers neither dead, sealed nor disabled cannot form a write quorum, every unacknowledged
  batch fails at once with `AppendError.WRITE_UNAVAILABLE` instead of waiting, and so does
  every later Append (state UNAVAILABLE): offsets were handed out that may never commit, so
  the loglet can only be sealed and replaced by one on healthy disks.
* Servers that answer SEALED (or SEALING) are sealed for good. Once sealed servers form an
  f-majority the sequencer is SEALED: every unacknowledged batch and every later Append fails
  with `AppendError.SEALED`, and no further `Committed` is ever emitted (the first sealed tail
  bounds the acknowledgements).

States and transitions (missing entry -> LocalProtocolError, state FAILED):

    state        Append         Response              Tick     NodeDead/NodeAlive
    OPEN         assign, send   ack/commit/seal ->*   retry    graylist / ungraylist
    SEALED       AppendFailed   track servers         -        track
    UNAVAILABLE  AppendFailed   track servers         -        track
    (*) -> SEALED when sealed servers form an f-majority; -> UNAVAILABLE when the writable ones
        cannot form a write quorum
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._io import NodeAlive, NodeDead, Response, Send, SetTimer, Tick, describe_io
from ._messages import RequestHeader, Status, Store, Stored
from ._quorum import NodeSetChecker
from ._types import MAX_OFFSET, LogletParams, NodeId


class SequencerState(enum.Enum):
    OPEN = "open"
    SEALED = "sealed"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


class AppendError(enum.Enum):
    SEALED = "sealed"
    RECONFIGURATION_NEEDED = "reconfiguration-needed"
    WRITE_UNAVAILABLE = "write-unavailable"
    """The servers that can still take writes (not dead, sealed or refusing with DISABLED) are
    too few for a write quorum, and storage faults are part of why."""


@dataclass(frozen=True, slots=True)
class Append:
    batch_id: int
    payloads: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Committed:
    batch_id: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True)
class AppendFailed:
    batch_id: int
    reason: AppendError


SequencerInput = Append | Response | Tick | NodeDead | NodeAlive
SequencerOutput = Send | Committed | AppendFailed | SetTimer


@dataclass(frozen=True, slots=True)
class SequencerConfig:
    store_timeout_ms: int = 2000
    retry_backoff_ms: int = 100
    # A Store merges batches up to these (the shell passes bifrost.limits' values, which size
    # the data port's frames); a single batch above them goes alone.
    max_store_records: int = 1000
    max_store_bytes: int = 1024 * 1024
    # What one record costs towards max_store_bytes beyond its payload (framing, per record).
    record_overhead_bytes: int = 32


def describe_sequencer_output(out: SequencerOutput) -> str:
    match out:
        case Committed(batch_id=b, first_offset=f, last_offset=last):
            return f"committed batch={b} [{f},{last}]"
        case AppendFailed(batch_id=b, reason=r):
            return f"append-failed batch={b} {r.value}"
        case _:
            return describe_io(out)


_RETRYABLE_REFUSALS = (
    Status.DROPPED,
    Status.DISABLED,
    Status.SEQUENCER_MISMATCH,
    Status.MALFORMED,
    Status.OUT_OF_BOUNDS,
)


class _Batch:
    __slots__ = (
        "acked",
        "batch_id",
        "conflicts",
        "cost",
        "deadline",
        "done",
        "first",
        "last",
        "payloads",
        "retry_at",
        "rids",
        "solo",
    )

    def __init__(self, batch_id: int, first: int, payloads: tuple[bytes, ...], cost: int) -> None:
        self.batch_id = batch_id
        self.first = first
        self.last = first + len(payloads) - 1
        self.payloads = payloads
        self.cost = cost
        self.acked: list[NodeId] = []
        self.conflicts: list[NodeId] = []
        self.deadline: dict[NodeId, int] = {}  # outstanding store per server
        self.retry_at: dict[NodeId, int] = {}  # backoff after a refusal
        self.solo: list[NodeId] = []  # servers that get this batch in a store of its own
        self.rids: list[int] = []  # the stores that carry it
        self.done = False  # acknowledged or failed: replies about it no longer matter


class _Server:
    __slots__ = ("dead", "disabled", "local_tail", "sealed")

    def __init__(self) -> None:
        self.local_tail = 1
        self.sealed = False
        self.dead = False
        self.disabled = False


class Sequencer:
    def __init__(
        self, params: LogletParams, config: SequencerConfig | None = None, *, now_ms: int = 0
    ) -> None:
        self._params = params
        self._config = config or SequencerConfig()
        self._now = now_ms
        self._state = SequencerState.OPEN
        self._next_offset = 1
        self._global_tail = 1
        self._batches: deque[_Batch] = deque()  # unacknowledged, in offset order
        self._requests: dict[int, tuple[tuple[_Batch, ...], NodeId]] = {}
        self._next_rid = 1
        self._servers: dict[NodeId, _Server] = {n: _Server() for n in params.nodeset}
        self._timer: int | None = None
        self._out: list[SequencerOutput] = []
        self.stores_sent = 0
        """Stores sent (to all servers): against the batches appended, how much stores merged."""

    # --- read-only introspection ---

    @property
    def params(self) -> LogletParams:
        return self._params

    @property
    def state(self) -> SequencerState:
        return self._state

    @property
    def known_global_tail(self) -> int:
        return self._global_tail

    @property
    def next_offset(self) -> int:
        return self._next_offset

    @property
    def pending_batches(self) -> int:
        return len(self._batches)

    # --- the funnel ---

    def step(self, inp: SequencerInput) -> list[SequencerOutput]:
        handler = _TABLE.get((self._state, type(inp)))
        if handler is None:
            prev = self._state
            self._state = SequencerState.FAILED
            raise LocalProtocolError(
                f"sequencer {self._params}: no transition for {type(inp).__name__} in {prev}"
            )
        self._out = []
        handler(self, inp)
        if self._state is SequencerState.OPEN:
            self._pump()
        self._arm_timer()
        out, self._out = self._out, []
        return out

    # --- handlers ---

    def _on_append(self, inp: Append) -> None:
        if not inp.payloads or self._next_offset + len(inp.payloads) - 1 > MAX_OFFSET:
            self._out.append(AppendFailed(inp.batch_id, AppendError.RECONFIGURATION_NEEDED))
            return
        overhead = self._config.record_overhead_bytes
        cost = sum(len(p) for p in inp.payloads) + overhead * len(inp.payloads)
        self._batches.append(_Batch(inp.batch_id, self._next_offset, inp.payloads, cost))
        self._next_offset += len(inp.payloads)

    def _on_append_sealed(self, inp: Append) -> None:
        self._out.append(AppendFailed(inp.batch_id, AppendError.SEALED))

    def _on_append_unavailable(self, inp: Append) -> None:
        self._out.append(AppendFailed(inp.batch_id, AppendError.WRITE_UNAVAILABLE))

    def _on_response(self, inp: Response) -> None:
        entry = self._requests.pop(inp.request_id, None)
        msg = inp.message
        if entry is None or not isinstance(msg, Stored):
            return  # late duplicate, or a reply for batches already acknowledged
        batches, node = entry
        srv = self._servers[node]
        h = msg.header
        srv.local_tail = max(srv.local_tail, h.local_tail)
        for batch in batches:
            batch.deadline.pop(node, None)
        newly_sealed = not srv.sealed and (h.sealed or h.status in (Status.SEALED, Status.SEALING))
        if newly_sealed:
            srv.sealed = True
        srv.disabled = h.status is Status.DISABLED
        if h.status is Status.OK:
            for batch in batches:
                if not batch.done and node not in batch.acked:
                    batch.acked.append(node)
            if self._state is SequencerState.OPEN:
                self._maybe_commit(batches)
        elif h.status is Status.CONFLICT:
            if len(batches) > 1:
                # Which batch holds the conflicting offset is unknown: ask again one by one.
                for batch in batches:
                    if node not in batch.solo:
                        batch.solo.append(node)
            elif node not in batches[0].conflicts:
                batches[0].conflicts.append(node)
        elif h.status in _RETRYABLE_REFUSALS:
            for batch in batches:
                batch.retry_at[node] = self._now + self._config.retry_backoff_ms
        if self._state is SequencerState.OPEN and newly_sealed:
            self._check_sealed()
        if self._state is SequencerState.OPEN and srv.disabled:
            self._check_writable()

    def _on_tick(self, inp: Tick) -> None:
        self._now = max(self._now, inp.now_ms)

    def _on_tick_sealed(self, inp: Tick) -> None:
        self._now = max(self._now, inp.now_ms)

    def _on_node_dead(self, inp: NodeDead) -> None:
        if inp.node in self._servers:
            self._servers[inp.node].dead = True

    def _on_node_alive(self, inp: NodeAlive) -> None:
        srv = self._servers.get(inp.node)
        if srv is not None and srv.dead:
            srv.dead = False
            for b in self._batches:
                b.retry_at.pop(inp.node, None)
                b.deadline.pop(inp.node, None)

    # --- internals ---

    def _checker(self) -> NodeSetChecker[bool]:
        return NodeSetChecker(self._params.nodeset, self._params.replication, False)

    def _maybe_commit(self, batches: tuple[_Batch, ...]) -> None:
        for batch in batches:
            if batch.done or batch.last < self._global_tail or len(batch.acked) < self._params.replication:
                continue  # (no write quorum has fewer than R nodes)
            chk = self._checker()
            for n in batch.acked:
                chk.set_attribute(n, True)
            # A later batch may have its quorum when an earlier one has not (its other acks came
            # in other stores): by the hole rule its quorum holds the earlier ones too.
            if chk.check_write_quorum(bool):
                self._global_tail = max(self._global_tail, batch.last + 1)
        while self._batches and self._batches[0].last < self._global_tail:
            done = self._batches.popleft()
            self._forget(done)
            self._out.append(Committed(done.batch_id, done.first, done.last))

    def _check_sealed(self) -> None:
        chk = self._checker()
        for n, s in self._servers.items():
            chk.set_attribute(n, s.sealed)
        if chk.check_fmajority(bool).passed:
            self._state = SequencerState.SEALED
            self._fail_all(AppendError.SEALED)

    def _check_writable(self) -> None:
        chk = self._checker()
        for n, srv in self._servers.items():
            chk.set_attribute(n, not (srv.dead or srv.sealed or srv.disabled))
        if chk.check_write_quorum(bool):
            return
        self._state = SequencerState.UNAVAILABLE
        self._fail_all(AppendError.WRITE_UNAVAILABLE)

    def _fail_all(self, reason: AppendError) -> None:
        for b in self._batches:
            b.done = True
            self._out.append(AppendFailed(b.batch_id, reason))
        self._batches.clear()
        self._requests.clear()  # every outstanding store carried only these batches

    def _forget(self, batch: _Batch) -> None:
        batch.done = True
        for rid in batch.rids:
            entry = self._requests.get(rid)
            if entry is not None and all(b.done for b in entry[0]):
                del self._requests[rid]

    def _pump(self) -> None:
        now = self._now
        cfg = self._config
        for node in self._params.nodeset:
            srv = self._servers[node]
            if srv.dead or srv.sealed:
                continue
            run: list[_Batch] = []
            records = cost = 0
            for b in self._batches:
                if (
                    node in b.acked
                    or node in b.conflicts
                    or b.deadline.get(node, -1) > now
                    or b.retry_at.get(node, -1) > now
                ):
                    if run:
                        break  # the store must be contiguous: the run ends here
                    continue
                if not run:
                    if srv.local_tail < b.first and self._global_tail < b.first:
                        continue  # would leave a hole on that server: wait for k-1
                elif (
                    node in b.solo
                    or node in run[0].solo
                    or records + len(b.payloads) > cfg.max_store_records
                    or cost + b.cost > cfg.max_store_bytes
                ):
                    break  # the rest waits for this store (it would start past its end)
                run.append(b)
                records += len(b.payloads)
                cost += b.cost
            if run:
                self._send_store(node, tuple(run))

    def _send_store(self, node: NodeId, run: tuple[_Batch, ...]) -> None:
        rid = self._next_rid
        self._next_rid += 1
        self.stores_sent += 1
        self._requests[rid] = (run, node)
        deadline = self._now + self._config.store_timeout_ms
        for b in run:
            b.deadline[node] = deadline
            b.retry_at.pop(node, None)
            b.rids.append(rid)
        payloads = run[0].payloads if len(run) == 1 else tuple(p for b in run for p in b.payloads)
        store = Store(
            RequestHeader(self._params.loglet_id, self._global_tail),
            run[0].first,
            self._params.sequencer,
            payloads,
        )
        self._out.append(Send(node, rid, store))

    def _arm_timer(self) -> None:
        at: int | None = None
        if self._state is SequencerState.OPEN:
            for b in self._batches:
                for t in (*b.deadline.values(), *b.retry_at.values()):
                    if t > self._now and (at is None or t < at):
                        at = t
        if at is not None and at != self._timer:
            self._out.append(SetTimer(at))
        self._timer = at


_Handler = Callable[[Sequencer, object], None]

_TABLE: dict[tuple[SequencerState, type], _Handler] = {
    (SequencerState.OPEN, Append): Sequencer._on_append,
    (SequencerState.OPEN, Response): Sequencer._on_response,
    (SequencerState.OPEN, Tick): Sequencer._on_tick,
    (SequencerState.OPEN, NodeDead): Sequencer._on_node_dead,
    (SequencerState.OPEN, NodeAlive): Sequencer._on_node_alive,
    (SequencerState.SEALED, Append): Sequencer._on_append_sealed,
    (SequencerState.SEALED, Response): Sequencer._on_response,
    (SequencerState.SEALED, Tick): Sequencer._on_tick_sealed,
    (SequencerState.SEALED, NodeDead): Sequencer._on_node_dead,
    (SequencerState.SEALED, NodeAlive): Sequencer._on_node_alive,
    (SequencerState.UNAVAILABLE, Append): Sequencer._on_append_unavailable,
    (SequencerState.UNAVAILABLE, Response): Sequencer._on_response,
    (SequencerState.UNAVAILABLE, Tick): Sequencer._on_tick_sealed,
    (SequencerState.UNAVAILABLE, NodeDead): Sequencer._on_node_dead,
    (SequencerState.UNAVAILABLE, NodeAlive): Sequencer._on_node_alive,
}  # type: ignore[dict-item]

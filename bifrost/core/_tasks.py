"""Seal, find-tail (with repair) and trim as cores: the control-plane tasks of a replicated loglet.

Both are re-entrant and safe to run concurrently with each other, with the sequencer and with
copies of themselves on other nodes: they only send idempotent requests (Seal, GetLogletInfo,
GetRecords, repair Stores of records that already exist) and decide on quorums.

`SealTask`: send Seal to the whole nodeset; done when the sealed nodes form an f-majority.
After that no write quorum can form any more: nothing new can be committed.

`TrimTask`: clip the point below the known global tail, send Trim to the whole nodeset; done
when the servers that trimmed form a write quorum (servers drop records at or below the point).

`FindTailTask` (the sealed find-tail that reconfiguration needs):

    GATHER   GetLogletInfo to every node; a node that answers unsealed gets a Seal. Once the
             sealed responders form an f-majority, candidate = max local tail among them and
             global = max known global tail heard. Every committed offset lives on a write
             quorum, which meets that f-majority, so candidate >= every committed offset + 1.
             Only authoritative nodes count here: a node whose store lost data (given as
             `non_authoritative`) may lack committed records, so its "sealed at tail t" is no
             evidence. When the authoritative nodes can never form an f-majority, the task
             says so at once (`NoSafeTail`) instead of waiting forever.
    READ     if candidate > global: read [global, candidate) from the sealed responder with
             the highest local tail (it has no holes there: holes only sit below a server's
             own known global tail, and global is the max of those), rotating on failure.
    REPAIR   re-store those records with IGNORE_SEAL|REPAIR, in order per server, until each
             chunk is durable on a write quorum (a server whose local tail already passes a
             chunk counts as holding it).
    DONE     output TailFound(candidate).

    state    Response                  Tick            (missing -> LocalProtocolError, FAILED)
    GATHER   record / seal -> READ|DONE retry
    READ     collect      -> REPAIR    retry/rotate
    REPAIR   ack          -> DONE      retry
    DONE     ignore                    -

Two overlapping runs can pick different candidates (one may see a server that the other did
not, before repair made it a quorum); both are safe, and the chain's compare-and-set keeps one.
A run that starts after another finished sees that run's repaired quorum and never reports a
lower tail.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._io import NodeAlive, NodeDead, Response, Send, SetTimer, Tick, describe_io
from ._messages import (
    Data,
    GetLogletInfo,
    GetRecords,
    LogletInfo,
    Records,
    RequestHeader,
    RequestMessage,
    ResponseHeader,
    Seal,
    Sealed,
    Status,
    Store,
    Stored,
    StoreFlags,
    Trim,
    TrimGap,
    Trimmed,
)
from ._quorum import NodeSetChecker
from ._types import LogletParams, NodeId

TaskInput = Response | Tick | NodeDead | NodeAlive


@dataclass(frozen=True, slots=True)
class TaskConfig:
    request_timeout_ms: int = 1000
    retry_backoff_ms: int = 100
    repair_batch_records: int = 64
    read_limit_bytes: int = 256 * 1024


@dataclass(frozen=True, slots=True)
class SealDone:
    """The loglet is sealed on an f-majority; `max_local_tail` over the sealed nodes heard."""

    max_local_tail: int


@dataclass(frozen=True, slots=True)
class TailFound:
    """The loglet is sealed and every offset below `tail` is durable on a write quorum."""

    tail: int


@dataclass(frozen=True, slots=True)
class NoSafeTail:
    """The loglet's tail cannot be decided safely: too many of its nodes lost their data."""

    non_authoritative: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class TrimDone:
    """Nodes that trimmed up to `trim_point` form a write quorum."""

    trim_point: int


TaskOutput = Send | SetTimer | SealDone | TailFound | TrimDone | NoSafeTail


def describe_task_output(out: TaskOutput) -> str:
    match out:
        case SealDone(max_local_tail=t):
            return f"seal-done max_local_tail={t}"
        case TailFound(tail=t):
            return f"tail-found sealed tail={t}"
        case TrimDone(trim_point=p):
            return f"trim-done trim_point={p}"
        case NoSafeTail(non_authoritative=ns):
            return "no-safe-tail non-authoritative=" + ",".join(f"N{n}" for n in ns)
        case _:
            return describe_io(out)


class _Fanout:
    """Request bookkeeping shared by the tasks: one outstanding request per node, timeouts,
    backoff, dead-node hints."""

    def __init__(self, params: LogletParams, config: TaskConfig, now_ms: int) -> None:
        self.params = params
        self.config = config
        self.now = now_ms
        self.next_rid = 1
        self.pending: dict[int, NodeId] = {}
        self.deadline: dict[NodeId, int] = {}
        self.retry_at: dict[NodeId, int] = {}
        self.dead: dict[NodeId, bool] = {}
        self.out: list[TaskOutput] = []
        self._timer: int | None = None

    def can_send(self, node: NodeId) -> bool:
        if self.dead.get(node, False):
            return False
        return self.deadline.get(node, -1) <= self.now and self.retry_at.get(node, -1) <= self.now

    def send(self, node: NodeId, msg: RequestMessage) -> None:
        rid = self.next_rid
        self.next_rid += 1
        self.pending[rid] = node
        self.deadline[node] = self.now + self.config.request_timeout_ms
        self.retry_at.pop(node, None)
        self.out.append(Send(node, rid, msg))

    def take(self, inp: Response) -> NodeId | None:
        node = self.pending.pop(inp.request_id, None)
        if node is not None:
            self.deadline.pop(node, None)
        return node

    def backoff(self, node: NodeId) -> None:
        self.retry_at[node] = self.now + self.config.retry_backoff_ms

    def reset(self) -> None:
        """New phase: earlier requests' replies no longer count."""
        self.pending.clear()
        self.deadline.clear()
        self.retry_at.clear()

    def arm_timer(self, active: bool) -> None:
        at: int | None = None
        if active:
            for t in (*self.deadline.values(), *self.retry_at.values()):
                if t > self.now and (at is None or t < at):
                    at = t
        if at is not None and at != self._timer:
            self.out.append(SetTimer(at))
        self._timer = at

    def hint(self, inp: NodeDead | NodeAlive) -> None:
        self.dead[inp.node] = isinstance(inp, NodeDead)
        if isinstance(inp, NodeAlive):
            self.deadline.pop(inp.node, None)
            self.retry_at.pop(inp.node, None)

    def header(self, global_tail: int) -> RequestHeader:
        return RequestHeader(self.params.loglet_id, global_tail)


# --- seal -------------------------------------------------------------------------------


class SealState(enum.Enum):
    SEALING = "sealing"
    DONE = "done"
    FAILED = "failed"


class SealTask:
    def __init__(
        self,
        params: LogletParams,
        config: TaskConfig | None = None,
        *,
        now_ms: int = 0,
        known_global_tail: int = 1,
    ) -> None:
        self._f = _Fanout(params, config or TaskConfig(), now_ms)
        self._global = known_global_tail
        self._state = SealState.SEALING
        self._sealed_tail: dict[NodeId, int] = {}

    @property
    def state(self) -> SealState:
        return self._state

    def step(self, inp: TaskInput) -> list[TaskOutput]:
        if (self._state, type(inp)) not in _SEAL_TABLE:
            prev, self._state = self._state, SealState.FAILED
            raise LocalProtocolError(f"seal task: no transition for {type(inp).__name__} in {prev}")
        f = self._f
        f.out = []
        if isinstance(inp, Tick):
            f.now = max(f.now, inp.now_ms)
        elif isinstance(inp, NodeDead | NodeAlive):
            f.hint(inp)
        elif self._state is SealState.SEALING:
            self._on_response(inp)
        if self._state is SealState.SEALING:
            for n in f.params.nodeset:
                if n not in self._sealed_tail and f.can_send(n):
                    f.send(n, Seal(f.header(self._global), f.params.sequencer))
        f.arm_timer(self._state is SealState.SEALING)
        out, f.out = f.out, []
        return out

    def _on_response(self, inp: Response) -> None:
        f = self._f
        node = f.take(inp)
        if node is None:
            return
        m = inp.message
        if isinstance(m, Sealed) and m.header.status is Status.OK:
            self._sealed_tail[node] = m.header.local_tail
            self._global = max(self._global, m.header.known_global_tail)
        else:
            f.backoff(node)
            return
        chk: NodeSetChecker[bool] = NodeSetChecker(f.params.nodeset, f.params.replication, False)
        for n in self._sealed_tail:
            chk.set_attribute(n, True)
        if chk.check_fmajority(bool).passed:
            self._state = SealState.DONE
            f.out.append(SealDone(max(self._sealed_tail.values())))


_SEAL_TABLE = {
    (s, t) for s in (SealState.SEALING, SealState.DONE) for t in (Response, Tick, NodeDead, NodeAlive)
}


# --- trim -------------------------------------------------------------------------------


class TrimState(enum.Enum):
    TRIMMING = "trimming"
    DONE = "done"
    FAILED = "failed"


class TrimTask:
    """Trim the loglet up to `trim_point`, clipped below the known global tail (a trim never
    touches uncommitted offsets). Done once the servers that confirmed form a write quorum;
    the others catch up on their own (Trim is idempotent), as in Restate's TrimTask."""

    def __init__(
        self,
        params: LogletParams,
        trim_point: int,
        known_global_tail: int,
        config: TaskConfig | None = None,
        *,
        now_ms: int = 0,
    ) -> None:
        self._f = _Fanout(params, config or TaskConfig(), now_ms)
        self._global = known_global_tail
        self._point = min(trim_point, known_global_tail - 1)
        self._state = TrimState.TRIMMING
        self._trimmed: list[NodeId] = []
        self._started = False

    @property
    def state(self) -> TrimState:
        return self._state

    @property
    def trim_point(self) -> int:
        return self._point

    def step(self, inp: TaskInput) -> list[TaskOutput]:
        if self._state is TrimState.FAILED or not isinstance(inp, Response | Tick | NodeDead | NodeAlive):
            self._state = TrimState.FAILED
            raise LocalProtocolError(f"trim task: no transition for {type(inp).__name__}")
        f = self._f
        f.out = []
        if self._point < 1 and not self._started:
            self._started = True
            self._state = TrimState.DONE
            return [TrimDone(self._point)]  # nothing committed to trim: a no-op, said so
        self._started = True
        if isinstance(inp, Tick):
            f.now = max(f.now, inp.now_ms)
        elif isinstance(inp, NodeDead | NodeAlive):
            f.hint(inp)
        elif self._state is TrimState.TRIMMING:
            node = f.take(inp)
            if node is not None:
                m = inp.message
                if isinstance(m, Trimmed) and m.header.status is Status.OK:
                    if node not in self._trimmed:
                        self._trimmed.append(node)
                else:
                    f.backoff(node)
                chk: NodeSetChecker[bool] = NodeSetChecker(f.params.nodeset, f.params.replication, False)
                for n in self._trimmed:
                    chk.set_attribute(n, True)
                if chk.check_write_quorum(bool):
                    self._state = TrimState.DONE
                    f.out.append(TrimDone(self._point))
        if self._state is TrimState.TRIMMING:
            for n in f.params.nodeset:
                if n not in self._trimmed and f.can_send(n):
                    f.send(n, Trim(f.header(self._global), self._point))
        f.arm_timer(self._state is TrimState.TRIMMING)
        out, f.out = f.out, []
        return out


# --- find tail + repair -----------------------------------------------------------------


class FindTailState(enum.Enum):
    GATHER = "gather"
    READ = "read"
    REPAIR = "repair"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class _Chunk:
    first: int
    payloads: tuple[bytes, ...]
    holders: list[NodeId]

    @property
    def last(self) -> int:
        return self.first + len(self.payloads) - 1


class FindTailTask:
    def __init__(
        self,
        params: LogletParams,
        config: TaskConfig | None = None,
        *,
        now_ms: int = 0,
        known_global_tail: int = 1,
        non_authoritative: frozenset[NodeId] = frozenset(),
    ) -> None:
        self._f = _Fanout(params, config or TaskConfig(), now_ms)
        self._non_auth = non_authoritative
        self._impossible = not self._checker().can_reach_fmajority()
        self._state = FindTailState.GATHER
        self._global = known_global_tail
        self._info: dict[NodeId, ResponseHeader] = {}
        self._candidate = 0
        self._sources: list[NodeId] = []
        self._records: dict[int, bytes] = {}
        self._read_from = 0
        self._chunks: list[_Chunk] = []
        self._local_tail: dict[NodeId, int] = {}

    @property
    def state(self) -> FindTailState:
        return self._state

    @property
    def candidate(self) -> int:
        return self._candidate

    def step(self, inp: TaskInput) -> list[TaskOutput]:
        handler = _FIND_TAIL_TABLE.get((self._state, type(inp)))
        if handler is None:
            prev, self._state = self._state, FindTailState.FAILED
            raise LocalProtocolError(f"find-tail task: no transition for {type(inp).__name__} in {prev}")
        f = self._f
        f.out = []
        if self._state is FindTailState.GATHER and self._impossible:
            self._state = FindTailState.DONE
            return [NoSafeTail(tuple(sorted(self._non_auth)))]
        handler(self, inp)
        self._pump()
        f.arm_timer(self._state is not FindTailState.DONE)
        out, f.out = f.out, []
        return out

    # --- handlers ---

    def _on_tick(self, inp: Tick) -> None:
        self._f.now = max(self._f.now, inp.now_ms)

    def _on_hint(self, inp: NodeDead | NodeAlive) -> None:
        self._f.hint(inp)

    def _ignore(self, inp: object) -> None:
        pass

    def _on_gather_response(self, inp: Response) -> None:
        f = self._f
        node = f.take(inp)
        m = inp.message
        if node is None or not isinstance(m, LogletInfo | Sealed) or m.header.status is not Status.OK:
            if node is not None:
                f.backoff(node)
            return
        self._info[node] = m.header
        self._global = max(self._global, m.header.known_global_tail)
        if isinstance(m, LogletInfo):
            # Only committed offsets are ever trimmed: the tail is past a trim point, and the
            # trimmed offsets need (and allow) no repair.
            self._global = max(self._global, m.trim_point + 1)
        sealed = [n for n, h in self._info.items() if h.sealed and n not in self._non_auth]
        chk = self._checker()
        for n in sealed:
            chk.set_attribute(n, True)
        if not chk.check_fmajority(bool).passed:
            return
        self._candidate = max(self._info[n].local_tail for n in sealed)
        self._local_tail = {n: h.local_tail for n, h in self._info.items()}
        f.reset()
        if self._candidate <= self._global:
            self._finish()
            return
        self._sources = sorted(sealed, key=lambda n: (-self._info[n].local_tail, n))
        self._read_from = self._global
        self._state = FindTailState.READ

    def _on_read_response(self, inp: Response) -> None:
        f = self._f
        node = f.take(inp)
        m = inp.message
        if node is None:
            return
        progressed = False
        if isinstance(m, Records):
            for e in m.entries:
                if isinstance(e, Data) and e.offset == self._read_from and e.offset < self._candidate:
                    self._records[e.offset] = e.payload
                    self._read_from += 1
                    progressed = True
                elif isinstance(e, TrimGap) and e.offset <= self._read_from <= e.to:
                    # Trimmed meanwhile, so committed: nothing to repair up to there.
                    self._read_from = e.to + 1
                    self._global = max(self._global, min(e.to + 1, self._candidate))
                    progressed = True
        if not progressed:
            self._rotate(node)
        if self._read_from >= self._candidate:
            self._start_repair()

    def _on_repair_response(self, inp: Response) -> None:
        f = self._f
        node = f.take(inp)
        m = inp.message
        if node is None or not isinstance(m, Stored):
            return
        self._local_tail[node] = max(self._local_tail.get(node, 1), m.header.local_tail)
        if m.header.status is not Status.OK:
            f.backoff(node)
        self._note_holders()
        if all(self._has_quorum(c) for c in self._chunks):
            self._finish()

    # --- internals ---

    def _checker(self) -> NodeSetChecker[bool]:
        p = self._f.params
        return NodeSetChecker(p.nodeset, p.replication, False, non_authoritative=self._non_auth)

    def _rotate(self, node: NodeId) -> None:
        if self._sources and self._sources[0] == node:
            self._sources.append(self._sources.pop(0))
        self._f.backoff(node)

    def _start_repair(self) -> None:
        self._f.reset()
        size = self._f.config.repair_batch_records
        offs = list(range(self._global, self._candidate))
        for i in range(0, len(offs), size):
            part = offs[i : i + size]
            self._chunks.append(_Chunk(part[0], tuple(self._records[o] for o in part), []))
        self._records.clear()
        self._state = FindTailState.REPAIR
        self._note_holders()
        if all(self._has_quorum(c) for c in self._chunks):
            self._finish()

    def _note_holders(self) -> None:
        # A server holds every offset in [global, its local tail): it has no holes above the
        # global tail this task uses (the max any responder knew).
        for c in self._chunks:
            for n, t in self._local_tail.items():
                if t > c.last and n not in c.holders:
                    c.holders.append(n)

    def _has_quorum(self, c: _Chunk) -> bool:
        chk: NodeSetChecker[bool] = NodeSetChecker(self._f.params.nodeset, self._f.params.replication, False)
        for n in c.holders:
            chk.set_attribute(n, True)
        return chk.check_write_quorum(bool)

    def _finish(self) -> None:
        self._state = FindTailState.DONE
        self._f.reset()
        self._f.out.append(TailFound(self._candidate))

    def _pump(self) -> None:
        f = self._f
        p = f.params
        if self._state is FindTailState.GATHER:
            for n in p.nodeset:
                if not f.can_send(n):
                    continue
                h = self._info.get(n)
                if h is None:
                    f.send(n, GetLogletInfo(f.header(self._global)))
                elif not h.sealed:
                    f.send(n, Seal(f.header(self._global), p.sequencer))
        elif self._state is FindTailState.READ:
            for n in [n for n in self._sources if f.deadline.get(n, f.now + 1) <= f.now]:
                del f.deadline[n]  # a lost request or reply: the next source, after a backoff
                self._rotate(n)
            if any(n in f.deadline for n in self._sources):
                return
            for n in list(self._sources):
                if f.can_send(n):
                    f.send(
                        n,
                        GetRecords(
                            f.header(self._global),
                            self._read_from,
                            self._candidate - 1,
                            f.config.read_limit_bytes,
                        ),
                    )
                    return
                if not f.dead.get(n, False):
                    return  # backing off on the preferred source: wait rather than hop
                self._sources.append(self._sources.pop(0))
        elif self._state is FindTailState.REPAIR:
            for n in p.nodeset:
                if not f.can_send(n):
                    continue
                tail = self._local_tail.get(n, 1)
                for c in self._chunks:
                    if n in c.holders:
                        continue
                    if tail < c.first and c.first != self._global:
                        break  # in order per server: it must hold the previous chunk first
                    f.send(
                        n,
                        Store(
                            f.header(self._global),
                            c.first,
                            p.sequencer,
                            c.payloads,
                            StoreFlags.IGNORE_SEAL | StoreFlags.REPAIR,
                        ),
                    )
                    break


_FtHandler = Callable[[FindTailTask, object], None]

_FIND_TAIL_TABLE: dict[tuple[FindTailState, type], _FtHandler] = {
    **{
        (s, Tick): FindTailTask._on_tick
        for s in (FindTailState.GATHER, FindTailState.READ, FindTailState.REPAIR, FindTailState.DONE)
    },
    **{
        (s, t): FindTailTask._on_hint
        for s in (FindTailState.GATHER, FindTailState.READ, FindTailState.REPAIR, FindTailState.DONE)
        for t in (NodeDead, NodeAlive)
    },
    (FindTailState.GATHER, Response): FindTailTask._on_gather_response,
    (FindTailState.READ, Response): FindTailTask._on_read_response,
    (FindTailState.REPAIR, Response): FindTailTask._on_repair_response,
    (FindTailState.DONE, Response): FindTailTask._ignore,
}  # type: ignore[dict-item]

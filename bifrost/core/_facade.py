"""The Bifrost facade's policy for one log on one node, as a core.

    step(GetChain | WaitChainChange | FindTail | WaitForTail | TrimLog | SealLog | Reconfigure
         | CreateFirstSegment | BringTail | ChainSeen | CallDone | CallFailed | Tick)
        -> [Call | CancelCall | MarkSealed | SetTimer | OpDone | OpFailed]

The shell starts an operation with an input carrying its ``op`` id and gets exactly one
`OpDone(op, value)` or `OpFailed(op, failure, detail)` back, in some later step. Meanwhile the
operation asks for I/O with `Call(call_id, request)`: read or compare-and-set the chain in the
metadata store, or find-tail / seal / trim / wait-for-tail on one loglet. The shell runs each
call and feeds `CallDone(call_id, value)` or `CallFailed(call_id, failure, detail)`; a call
whose deadline passed is cancelled (`CancelCall`) and its late result ignored.

The chain this node knows is kept here: `ChainSeen` (the metadata watch) and every read adopt a
chain, never an older version; every segment but the tail ends where the next one starts, and
`MarkSealed` tells the shell so (reads of that loglet end there, not at a tail this node found).

Decisions, per operation (each is a generator below that yields its I/O and receives the
result, so that it reads like the procedure it is; `step` resumes the right one):

- ``FindTail``: a dead tail sequencer is replaced first (only a live one knows an open tail);
  a tail loglet found sealed whose successor is not in the chain yet is reconfigured, so the
  tail reported is the one the chain fixes.
- ``WaitForTail(lsn)``: below the tail segment's base it is committed already; past a seal
  marker, or a tail not reached yet, wait for the chain; a loglet that cannot answer because
  its sequencer is gone is reconfigured, other failures end the wait.
- ``TrimLog(lsn)``: below the tail only; each segment is trimmed up to ``lsn`` clipped to its own
  end (`plan_trim`), then whole trimmed segments leave the chain (compare-and-set).
- ``SealLog``: seal the tail loglet, then write a seal marker at its sealed tail; a lost
  compare-and-set starts over on the newer chain.
- ``Reconfigure(expected_version)`` (one at a time per log: a lock): nothing if the chain moved
  past ``expected_version``; no chain yet: create the first segment; a seal marker: extend it;
  else seal the tail loglet (which repairs its tail) and write a new segment sequenced by this
  node at that tail, on a nodeset of live writable nodes. Gives up after
  ``reconfigure_timeout_ms``.
- ``BringTail(after_version, reconfigure)`` (the ordered appender's `WantTail`): create the
  first segment, reconfigure, or wait for a newer chain; answers `Tail` or `TailUnavailable`
  (fatal when no writable nodeset exists).
- Chain writes (`_cas`): a refused one (the chain moved) re-reads the chain and reports a loss;
  one that failed or whose outcome is unknown is retried after a backoff, first reading the
  chain back: a newer version there decides (ours if it is our chain).

Liveness (is a sequencer gone, which nodes may join a nodeset) is read from the injected
`Membership`, as raft's core reads its injected `Storage`; randomness from the injected rng.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from ._appender import Tail, TailUnavailable
from ._chain import Chain, Segment
from ._errors import ChainError, LocalProtocolError
from ._io import SetTimer, Tick
from ._nodeset import select_nodeset
from ._types import GenerationalNodeId, LogletParams, NodeId, loglet_id

# --- failures -----------------------------------------------------------------------------


class Failure(enum.Enum):
    """Why a call or an operation failed. The shell maps its exceptions onto these and back."""

    UNAVAILABLE = "unavailable"
    """The log cannot make progress now (no quorum, no sequencer); a retry may succeed."""
    SEQUENCER_GONE = "sequencer-gone"
    """The loglet's sequencer process is gone for good: the segment must be replaced."""
    NO_WRITABLE_NODESET = "no-writable-nodeset"
    INVALID_LSN = "invalid-lsn"
    METADATA_UNAVAILABLE = "metadata-unavailable"
    """The metadata store did not apply the request; safe to retry."""
    UNKNOWN_OUTCOME = "unknown-outcome"
    """A chain write that may or may not have been applied."""
    CONFLICT = "conflict"
    """A chain write refused: the stored chain is not at the expected version."""
    BAD_CHAIN = "bad-chain"
    """The stored chain does not decode."""


_RETRY_CAS = frozenset({Failure.METADATA_UNAVAILABLE, Failure.UNKNOWN_OUTCOME})
_LOGLET_UNAVAILABLE = frozenset({Failure.UNAVAILABLE, Failure.SEQUENCER_GONE})


# --- calls: the I/O an operation asks for --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainState:
    """A chain and its version in the metadata store (both None: the log has no chain yet)."""

    chain: Chain | None
    version: int | None


@dataclass(frozen=True, slots=True)
class LogletTail:
    offset: int
    sealed: bool


@dataclass(frozen=True, slots=True)
class ReadChain:
    """Read the log's chain: answered with `ChainState`."""


@dataclass(frozen=True, slots=True)
class WriteChain:
    """Write ``chain`` iff the stored one is at ``expected_version`` (None: iff there is none):
    answered with the new version (int), or failed with CONFLICT / METADATA_UNAVAILABLE /
    UNKNOWN_OUTCOME."""

    chain: Chain
    expected_version: int | None


@dataclass(frozen=True, slots=True)
class LogletFindTail:
    """Answered with `LogletTail`."""

    params: LogletParams


@dataclass(frozen=True, slots=True)
class LogletSeal:
    """Seal the loglet (repairing its tail): answered with the sealed tail offset (int)."""

    params: LogletParams


@dataclass(frozen=True, slots=True)
class LogletTrim:
    """Trim the loglet up to and including ``offset``: answered with None."""

    params: LogletParams
    offset: int


@dataclass(frozen=True, slots=True)
class LogletWaitForTail:
    """Answered with `LogletTail` once the committed tail reaches ``offset`` or the loglet is
    sealed."""

    params: LogletParams
    offset: int


CallRequest = ReadChain | WriteChain | LogletFindTail | LogletSeal | LogletTrim | LogletWaitForTail


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetChain:
    """-> `ChainState` (read from the store when ``refresh`` or not known yet)."""

    op: int
    refresh: bool = False


@dataclass(frozen=True, slots=True)
class WaitChainChange:
    """-> `ChainState` once the chain is newer than ``version`` (or, after ``chain_wait_ms``
    without news, as read again from the store)."""

    op: int
    version: int | None


@dataclass(frozen=True, slots=True)
class FindTail:
    """-> ``(next LSN to be written, whether the log is sealed)``."""

    op: int


@dataclass(frozen=True, slots=True)
class WaitForTail:
    """-> the tail (next LSN) once the record at ``lsn`` is committed."""

    op: int
    lsn: int


@dataclass(frozen=True, slots=True)
class TrimLog:
    """-> None once LSNs up to and including ``up_to_lsn`` are trimmed."""

    op: int
    up_to_lsn: int


@dataclass(frozen=True, slots=True)
class SealLog:
    """-> the sealed tail LSN; no append succeeds until a reconfiguration."""

    op: int


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """-> the chain after it (a `Chain`, or None if the log has none)."""

    op: int
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class CreateFirstSegment:
    """-> None once the log has a chain (ours, or a racing node's)."""

    op: int


@dataclass(frozen=True, slots=True)
class BringTail:
    """-> `Tail` or `TailUnavailable`, for the ordered appender's `WantTail`."""

    op: int
    after_version: int | None
    reconfigure: bool


@dataclass(frozen=True, slots=True)
class ChainSeen:
    """The metadata watch delivered this chain."""

    chain: Chain
    version: int


@dataclass(frozen=True, slots=True)
class CallDone:
    call_id: int
    value: Any


@dataclass(frozen=True, slots=True)
class CallFailed:
    call_id: int
    failure: Failure
    detail: str


OpInput = (
    GetChain
    | WaitChainChange
    | FindTail
    | WaitForTail
    | TrimLog
    | SealLog
    | Reconfigure
    | CreateFirstSegment
    | BringTail
)
FacadeInput = OpInput | ChainSeen | CallDone | CallFailed | Tick


# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    call_id: int
    request: CallRequest


@dataclass(frozen=True, slots=True)
class CancelCall:
    """The call's deadline passed: stop it; its result, if any comes, is ignored."""

    call_id: int


@dataclass(frozen=True, slots=True)
class MarkSealed:
    """The chain ends this loglet at ``end_offset`` (exclusive): reads of it end there."""

    params: LogletParams
    end_offset: int


@dataclass(frozen=True, slots=True)
class OpDone:
    op: int
    value: Any


@dataclass(frozen=True, slots=True)
class OpFailed:
    op: int
    failure: Failure
    detail: str


FacadeOutput = Call | CancelCall | MarkSealed | SetTimer | OpDone | OpFailed


# --- configuration and the injected view of the cluster -------------------------------------


@dataclass(frozen=True, slots=True)
class FacadeConfig:
    chain_wait_ms: int = 1000
    """Waiting for a newer chain (a reconfiguration elsewhere) before reading it again."""
    reconfigure_timeout_ms: int = 20_000
    """Sealing the old tail loglet gives up after this long (its f-majority may be down), so
    the log's reconfiguration lock is not held forever; the next attempt starts afresh."""
    cas_retry_min_ms: int = 100
    """First backoff of a chain write that failed or whose outcome is unknown (doubles up to
    ``chain_wait_ms``)."""


class Membership(Protocol):
    """What this node knows of the cluster now (read, never changed, by the core)."""

    def sequencer_gone(self, params: LogletParams) -> bool:
        """The loglet's sequencer process is dead or replaced (it can never take appends)."""
        ...

    def writable_nodes(self) -> list[NodeId]:
        """Live log-servers whose stores take writes: the ones a new nodeset may use."""
        ...

    def live_nodes(self) -> list[NodeId]:
        """All live log-servers, whatever their disks."""
        ...

    def spare_nodes(self) -> list[NodeId]:
        """Log-servers that are down now but not known to refuse writes: a new nodeset fills up
        with them after the live ones (see `select_nodeset`)."""
        ...


def plan_trim(chain: Chain, up_to_lsn: int) -> list[tuple[LogletParams, int]]:
    """(loglet, offset) to trim so that every LSN up to ``up_to_lsn`` is gone: each segment
    holding some of them, up to ``up_to_lsn`` clipped to the segment's own end."""
    plan: list[tuple[LogletParams, int]] = []
    segs = chain.segments
    for i, seg in enumerate(segs):
        if seg.params is None or seg.base_lsn > up_to_lsn:
            continue
        last = up_to_lsn if i + 1 == len(segs) else min(up_to_lsn, segs[i + 1].base_lsn - 1)
        if last >= seg.base_lsn:
            plan.append((seg.params, seg.offset(last)))
    return plan


# --- the core -------------------------------------------------------------------------------


class _Failed(Exception):
    """Thrown into an operation's generator when a call fails; ends the operation unless it
    catches it."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Timed:
    request: CallRequest
    timeout_ms: int
    detail: str


@dataclass(frozen=True, slots=True)
class _Sleep:
    ms: int


@dataclass(frozen=True, slots=True)
class _ChangeSince:
    version: int | None


class _Acquire:
    """Take the log's reconfiguration lock (released with `LogFacade._release`)."""


_ACQUIRE = _Acquire()
_TIMED_OUT = object()

# What an operation's generator yields, and what it receives back.
_Yield = CallRequest | _Timed | _Sleep | _ChangeSince | _Acquire
_Gen = Generator[_Yield, Any, Any]


class _Op:
    __slots__ = ("call", "gen", "op_id", "timeout_detail", "until", "waits_change")

    def __init__(self, op_id: int, gen: _Gen) -> None:
        self.op_id = op_id
        self.gen = gen
        self.call: int | None = None
        self.until: int | None = None
        self.timeout_detail = ""
        self.waits_change = False


class LogFacade:
    def __init__(
        self,
        log_id: int,
        me: GenerationalNodeId,
        replication: int,
        membership: Membership,
        rng: random.Random,
        config: FacadeConfig | None = None,
        *,
        nodeset_size: int = 0,
        now_ms: int = 0,
    ) -> None:
        self._log = log_id
        self._me = me
        self._replication = replication
        self._nodeset_size = nodeset_size
        self._members = membership
        self._rng = rng
        self._config = config or FacadeConfig()
        self._now = now_ms
        self._chain: Chain | None = None
        self._version: int | None = None
        self._loaded = False
        self._ops: dict[int, _Op] = {}
        self._calls: dict[int, _Op] = {}
        self._next_call = 1
        self._ready: deque[tuple[_Op, Any, _Failed | None]] = deque()
        self._change_waiters: list[_Op] = []
        self._lock: int | None = None
        self._lock_queue: deque[_Op] = deque()
        self._timer: int | None = None
        self._out: list[FacadeOutput] = []
        self.reconfigurations = 0
        """Reconfigurations this node won (its new segment is in the chain)."""

    # --- read-only views ---

    @property
    def chain(self) -> Chain | None:
        return self._chain

    @property
    def version(self) -> int | None:
        return self._version

    @property
    def loaded(self) -> bool:
        """Whether a chain (or its absence) was read or watched yet."""
        return self._loaded

    @property
    def pending_ops(self) -> int:
        return len(self._ops)

    # --- the funnel ---

    def step(self, inp: FacadeInput) -> list[FacadeOutput]:
        self._out = []
        match inp:
            case Tick(now_ms=now):
                self._now = max(self._now, now)
            case CallDone(call_id=cid, value=value):
                op = self._calls.pop(cid, None)
                if op is not None:
                    op.call = op.until = None
                    self._ready.append((op, value, None))
            case CallFailed(call_id=cid, failure=failure, detail=detail):
                op = self._calls.pop(cid, None)
                if op is not None:
                    op.call = op.until = None
                    self._ready.append((op, None, _Failed(failure, detail)))
            case ChainSeen(chain=chain, version=version):
                self._adopt(chain, version)
            case _:
                self._start(inp)
        self._expire()
        while self._ready:
            op, value, exc = self._ready.popleft()
            self._drive(op, value, exc)
        self._arm_timer()
        out, self._out = self._out, []
        return out

    def _start(self, inp: FacadeInput) -> None:
        gen: _Gen
        match inp:
            case GetChain(refresh=refresh):
                gen = self._op_get_chain(refresh)
            case WaitChainChange(version=version):
                gen = self._op_wait_chain_change(version)
            case FindTail():
                gen = self._find_tail()
            case WaitForTail(lsn=lsn):
                gen = self._op_wait_for_tail(lsn)
            case TrimLog(up_to_lsn=lsn):
                gen = self._op_trim(lsn)
            case SealLog():
                gen = self._op_seal()
            case Reconfigure(expected_version=expected):
                gen = self._reconfigure(expected)
            case CreateFirstSegment():
                gen = self._create_first()
            case BringTail(after_version=after, reconfigure=reconf):
                gen = self._op_bring_tail(after, reconf)
            case _:
                raise LocalProtocolError(f"log facade: unknown input {inp!r}")
        if inp.op in self._ops:
            raise LocalProtocolError(f"log facade: operation {inp.op} is already running")
        op = self._ops[inp.op] = _Op(inp.op, gen)
        self._ready.append((op, None, None))

    # --- running operations ---

    def _drive(self, op: _Op, value: Any, exc: _Failed | None) -> None:
        try:
            req = op.gen.throw(exc) if exc is not None else op.gen.send(value)
        except StopIteration as stop:
            self._finish(op)
            self._out.append(OpDone(op.op_id, stop.value))
            return
        except _Failed as f:
            self._finish(op)
            self._out.append(OpFailed(op.op_id, f.failure, f.detail))
            return
        except ChainError as e:  # a chain mutation refused: the chain moved under us
            self._finish(op)
            self._out.append(OpFailed(op.op_id, Failure.UNAVAILABLE, str(e)))
            return
        self._park(op, req)

    def _park(self, op: _Op, req: _Yield) -> None:
        if isinstance(req, _Sleep):
            op.until = self._now + req.ms
        elif isinstance(req, _ChangeSince):
            if req.version != self._version or not self._loaded:
                self._ready.append((op, None, None))
            else:
                op.waits_change = True
                op.until = self._now + self._config.chain_wait_ms
                self._change_waiters.append(op)
        elif isinstance(req, _Acquire):
            if self._lock is None:
                self._lock = op.op_id
                self._ready.append((op, None, None))
            else:
                self._lock_queue.append(op)
        else:
            if isinstance(req, _Timed):
                op.until = self._now + req.timeout_ms
                op.timeout_detail = req.detail
                req = req.request
            cid = self._next_call
            self._next_call += 1
            op.call = cid
            self._calls[cid] = op
            self._out.append(Call(cid, req))

    def _finish(self, op: _Op) -> None:
        self._ops.pop(op.op_id, None)
        if self._lock == op.op_id:
            self._release()

    def _release(self) -> None:
        self._lock = None
        if self._lock_queue:
            nxt = self._lock_queue.popleft()
            self._lock = nxt.op_id
            self._ready.append((nxt, None, None))

    def _expire(self) -> None:
        now = self._now
        for op in self._ops.values():
            if op.until is None or op.until > now:
                continue
            op.until = None
            if op.call is not None:
                self._calls.pop(op.call, None)
                self._out.append(CancelCall(op.call))
                op.call = None
                self._ready.append((op, None, _Failed(Failure.UNAVAILABLE, op.timeout_detail)))
            elif op.waits_change:
                op.waits_change = False
                self._change_waiters.remove(op)
                self._ready.append((op, _TIMED_OUT, None))
            else:
                self._ready.append((op, None, None))

    def _arm_timer(self) -> None:
        at = min((op.until for op in self._ops.values() if op.until is not None), default=None)
        if at is not None and at != self._timer:
            self._out.append(SetTimer(at))
        self._timer = at

    # --- the chain this node knows ---

    def _adopt(self, chain: Chain | None, version: int | None) -> None:
        if self._loaded and self._version is not None and (version is None or version < self._version):
            return  # never go back to an older chain
        changed = not self._loaded or version != self._version
        self._chain, self._version, self._loaded = chain, version, True
        if not changed:
            return
        if chain is not None:
            segs = chain.segments
            for seg, nxt in zip(segs, segs[1:], strict=False):
                if seg.params is not None:
                    self._out.append(MarkSealed(seg.params, seg.offset(nxt.base_lsn)))
        for op in self._change_waiters:
            op.waits_change = False
            op.until = None
            self._ready.append((op, None, None))
        self._change_waiters.clear()

    def _ensure_chain(self, refresh: bool = False) -> _Gen:
        if refresh or not self._loaded:
            state: ChainState = yield ReadChain()
            self._adopt(state.chain, state.version)
        return self._chain, self._version

    def _wait_change(self, version: int | None) -> _Gen:
        if (yield _ChangeSince(version)) is _TIMED_OUT:
            yield from self._ensure_chain(refresh=True)

    def _cas(self, chain: Chain, version: int | None) -> _Gen:
        """True iff ``chain`` is stored (see the module docstring)."""
        delay = self._config.cas_retry_min_ms
        while True:
            try:
                new_version = yield WriteChain(chain, version)
            except _Failed as f:
                if f.failure is Failure.CONFLICT:
                    yield from self._ensure_chain(refresh=True)
                    return False
                if f.failure not in _RETRY_CAS:
                    raise
                yield _Sleep(delay)
                delay = min(delay * 2, self._config.chain_wait_ms)
                try:
                    stored: ChainState = yield ReadChain()
                except _Failed as g:
                    if g.failure in _RETRY_CAS:
                        continue
                    raise
                if stored.version is not None and stored.version != version:
                    self._adopt(stored.chain, stored.version)
                    return stored.chain == chain
                continue
            self._adopt(chain, new_version)
            return True

    def _nodeset(self) -> tuple[NodeId, ...]:
        live = sorted(set(self._members.writable_nodes()))
        r = self._replication
        nodeset = select_nodeset(
            self._me.node, live, r, self._rng, target=self._nodeset_size, spare=self._members.spare_nodes()
        )
        if nodeset is not None:
            return nodeset
        alive = self._members.live_nodes()
        if len(alive) >= r:
            raise _Failed(
                Failure.NO_WRITABLE_NODESET,
                f"only {len(live)} of {len(alive)} live log-servers can take writes, replication "
                f"{r} needs more (see the nodes' /health for why)",
            )
        raise _Failed(Failure.UNAVAILABLE, f"only {len(alive)} live log-servers, replication {r} needs more")

    def _new_params(self, chain: Chain | None, nodeset: tuple[NodeId, ...]) -> LogletParams:
        lid = chain.next_loglet_id() if chain is not None else loglet_id(self._log, 0)
        return LogletParams(lid, self._me, self._replication, nodeset)

    # --- operations ---

    def _op_get_chain(self, refresh: bool) -> _Gen:
        yield from self._ensure_chain(refresh)
        return ChainState(self._chain, self._version)

    def _op_wait_chain_change(self, version: int | None) -> _Gen:
        yield from self._ensure_chain()
        yield from self._wait_change(version)
        return ChainState(self._chain, self._version)

    def _create_first(self) -> _Gen:
        params = self._new_params(None, self._nodeset())
        yield from self._cas(Chain.new(self._log, params), None)

    def _reconfigure(self, expected_version: int | None) -> _Gen:
        yield _ACQUIRE
        try:
            chain, version = yield from self._ensure_chain(refresh=True)
            if expected_version is not None and version != expected_version:
                return chain  # someone else reconfigured: retry on their chain
            if chain is None:
                yield from self._create_first()
                return self._chain
            new_params = self._new_params(chain, self._nodeset())
            tail = chain.tail
            if tail.params is None:
                new_chain = chain.append_segment(tail.base_lsn, new_params)
                yield from self._cas(new_chain, version)
                return self._chain or new_chain
            timeout = self._config.reconfigure_timeout_ms
            sealed_tail = yield _Timed(
                LogletSeal(tail.params),
                timeout,
                f"reconfiguration of log {self._log} did not finish within {timeout / 1000:g}s",
            )
            if (yield from self._cas(chain.append_segment(tail.lsn(sealed_tail), new_params), version)):
                self.reconfigurations += 1
            chain, _ = yield from self._ensure_chain(refresh=True)
            return chain
        finally:
            # Held since the acquire above; the operation that called this may go on without it.
            self._release()

    def _find_tail(self) -> _Gen:
        chain, version = yield from self._ensure_chain()
        if chain is None:
            return 1, False
        if chain.tail.params is not None and self._members.sequencer_gone(chain.tail.params):
            # Only a live sequencer knows an open segment's tail: replace a dead one first.
            chain = yield from self._reconfigure(version)
            if chain is None:
                return 1, False
        seg = chain.tail
        if seg.params is None:
            return seg.base_lsn, True
        found: LogletTail = yield LogletFindTail(seg.params)
        if found.sealed:
            # A sealed tail segment whose successor is not in the chain yet: extend the chain,
            # so the tail reported is the one the chain fixes, not this node's own find-tail.
            chain = yield from self._reconfigure(version)
            if chain is None:
                return 1, False
            seg = chain.tail
            if seg.params is None:
                return seg.base_lsn, True
            found = yield LogletFindTail(seg.params)
        return seg.lsn(found.offset), False

    def _op_wait_for_tail(self, lsn: int) -> _Gen:
        while True:
            chain, version = yield from self._ensure_chain()
            if chain is None:
                yield from self._wait_change(version)
                continue
            seg: Segment = chain.tail
            if lsn < seg.base_lsn:
                return seg.base_lsn  # committed in an earlier, sealed segment
            if seg.params is None:  # the log is sealed before lsn
                yield from self._wait_change(version)
                continue
            try:
                state: LogletTail = yield LogletWaitForTail(seg.params, seg.offset(lsn + 1))
            except _Failed as f:
                if f.failure not in _LOGLET_UNAVAILABLE or not self._members.sequencer_gone(seg.params):
                    raise
                yield from self._reconfigure(version)
                continue
            tail = seg.lsn(state.offset)
            if tail > lsn:
                return tail
            yield from self._wait_change(version)

    def _op_trim(self, up_to_lsn: int) -> _Gen:
        if up_to_lsn < 1:
            raise _Failed(Failure.INVALID_LSN, f"trim point must be >= 1, got {up_to_lsn}")
        tail, _ = yield from self._find_tail()
        if up_to_lsn >= tail:
            raise _Failed(
                Failure.INVALID_LSN, f"cannot trim log {self._log} up to {up_to_lsn}: its tail is {tail}"
            )
        chain, version = yield from self._ensure_chain()
        assert chain is not None
        for params, offset in plan_trim(chain, up_to_lsn):
            yield LogletTrim(params, offset)
        trimmed = chain.trim_prefix(up_to_lsn)
        if trimmed != chain:
            yield from self._cas(trimmed, version)

    def _op_seal(self) -> _Gen:
        while True:
            chain, version = yield from self._ensure_chain(refresh=True)
            if chain is None:
                raise _Failed(Failure.UNAVAILABLE, f"log {self._log} has no segment yet")
            seg = chain.tail
            if seg.params is None:
                return seg.base_lsn
            sealed_tail: int = yield LogletSeal(seg.params)
            if (yield from self._cas(chain.seal(seg.lsn(sealed_tail)), version)):
                return seg.lsn(sealed_tail)

    def _op_bring_tail(self, after_version: int | None, reconfigure: bool) -> _Gen:
        try:
            chain, version = yield from self._ensure_chain()
            if chain is None:
                yield from self._create_first()
            elif version == after_version:
                if reconfigure and chain.tail.params is not None:
                    yield from self._reconfigure(version)
                else:
                    yield from self._wait_change(version)
        except _Failed as f:
            if f.failure is Failure.NO_WRITABLE_NODESET:
                return TailUnavailable(f"NoWritableNodeset: {f.detail}", fatal=True)
            return TailUnavailable(f.detail)
        chain, version = self._chain, self._version
        if chain is None or version is None:
            return TailUnavailable("the log has no segment yet")
        return Tail(version, chain.tail, sealed=chain.tail.params is None)


def describe_facade(x: FacadeInput | FacadeOutput | CallRequest) -> str:
    match x:
        case Call(call_id=cid, request=req):
            return f"call {cid}: {describe_facade(req)}"
        case CancelCall(call_id=cid):
            return f"cancel-call {cid}"
        case MarkSealed(params=p, end_offset=end):
            return f"mark-sealed {p.loglet_id >> 32}_{p.loglet_id & 0xFFFFFFFF} end={end}"
        case OpDone(op=op, value=value):
            return f"op {op} done: {_describe_value(value)}"
        case OpFailed(op=op, failure=failure, detail=detail):
            return f"op {op} failed: {failure.value}: {detail}"
        case ReadChain():
            return "read-chain"
        case WriteChain(chain=c, expected_version=v):
            return f"write-chain expected={v}: {c.describe()}"
        case LogletFindTail(params=p):
            return f"loglet-find-tail {p}"
        case LogletSeal(params=p):
            return f"loglet-seal {p}"
        case LogletTrim(params=p, offset=o):
            return f"loglet-trim {p} up-to={o}"
        case LogletWaitForTail(params=p, offset=o):
            return f"loglet-wait-for-tail {p} offset={o}"
        case SetTimer(at_ms=t):
            return f"set-timer {t}"
    return repr(x)


def _describe_value(value: object) -> str:
    match value:
        case ChainState(chain=c, version=v):
            return f"chain v{v}: {c.describe() if c is not None else 'none'}"
        case Chain():
            return value.describe()
        case Tail(version=v, segment=s, sealed=sealed):
            where = "none" if s is None else f"@{s.base_lsn} #{s.index}"
            return f"tail v{v} {where}{' sealed' if sealed else ''}"
        case TailUnavailable(detail=d, fatal=fatal):
            return f"tail-unavailable{' fatal' if fatal else ''}: {d}"
    return repr(value)

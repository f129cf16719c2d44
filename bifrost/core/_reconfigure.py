"""Reconfiguration as a core: seal the tail loglet, find its sealed tail (repairing it), then
compare-and-set a chain whose new tail segment starts at that LSN, sequenced by us.

    step(Response | Tick | NodeDead | NodeAlive | CasResult)
        -> [Send | SetTimer | CasChain | Reconfigured | NoSafeTail]

    state        Response/Tick/hints              CasResult
    FINDING_TAIL drive FindTailTask -> CAS | DONE  -
    CAS          ignore                           -> DONE (won or lost)
    DONE         ignore                           -

`NoSafeTail` ends it without a CAS: the old loglet's tail cannot be decided safely (too many of
its nodes lost their data), so no new segment may start anywhere.

The compare-and-set is the only arbiter between concurrent reconfigurers: the loser learns
from CasResult(ok=False) and re-reads the chain (it will find a newer tail segment).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from ._chain import Chain
from ._errors import LocalProtocolError
from ._io import NodeAlive, NodeDead, Response, Send, SetTimer, Tick
from ._tasks import FindTailTask, NoSafeTail, TailFound, TaskConfig
from ._types import GenerationalNodeId, LogletParams, NodeId


def select_nodeset(
    me: NodeId, live: list[NodeId], replication: int, rng: random.Random, *, target: int = 0
) -> tuple[NodeId, ...] | None:
    """Live nodes for a new loglet: this node first (it will sequence), then others chosen by
    `rng`; size max(target, 2R-1, R+1) when that many are live, at least R, else None."""
    pool = sorted(n for n in dict.fromkeys(live) if n != me)
    rng.shuffle(pool)
    chosen = ([me] if me in live else []) + pool
    chosen = chosen[: max(nodeset_size_wanted(replication, target), replication)]
    if len(chosen) < replication:
        return None
    return tuple(sorted(chosen))


def nodeset_size_wanted(replication: int, target: int = 0) -> int:
    """How many nodes a new loglet's nodeset gets when that many are live (`select_nodeset`)."""
    return max(target, 2 * replication - 1, replication + 1)


def nodeset_needs_change(
    nodeset: tuple[NodeId, ...], live: list[NodeId], replication: int, *, target: int = 0
) -> str | None:
    """Why an open loglet should move to a new nodeset, or None.

    - Fewer than ``replication`` of its nodes are live and writable: no append can commit,
      while a new nodeset of live nodes could take them.
    - It is smaller than wanted and live nodes outside it could fill it: a log created while
      few nodes were up (the first start of a cluster) would otherwise stay without fault
      tolerance -- with nodeset = replication, one dead node blocks its tail for good."""
    live_set = set(live)
    if len(live_set) < replication:
        return None  # no better nodeset exists
    members = set(nodeset)
    if len(members & live_set) < replication:
        return "too few of its nodes are live to take writes"
    wanted = min(nodeset_size_wanted(replication, target), len(live_set | members))
    if len(members) < wanted and live_set - members:
        return f"its nodeset of {len(members)} can grow to {wanted}"
    return None


class ReconfigureState(enum.Enum):
    FINDING_TAIL = "finding-tail"
    CAS = "cas"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CasResult:
    ok: bool


@dataclass(frozen=True, slots=True)
class CasChain:
    """Write `chain` iff the stored chain's version is still `expected_version`."""

    expected_version: int
    chain: Chain


@dataclass(frozen=True, slots=True)
class Reconfigured:
    won: bool
    sealed_tail: int
    """The old tail loglet's sealed tail (offset)."""


ReconfigureInput = Response | Tick | NodeDead | NodeAlive | CasResult
ReconfigureOutput = Send | SetTimer | CasChain | Reconfigured | NoSafeTail


class Reconfiguration:
    def __init__(
        self,
        me: GenerationalNodeId,
        chain: Chain,
        chain_version: int,
        new_nodeset: tuple[NodeId, ...],
        replication: int,
        config: TaskConfig | None = None,
        *,
        now_ms: int = 0,
        known_global_tail: int = 1,
        non_authoritative: frozenset[NodeId] = frozenset(),
    ) -> None:
        old = chain.tail.params
        if old is None:
            raise LocalProtocolError("the chain is sealed for good; nothing to reconfigure")
        self._me = me
        self._chain = chain
        self._version = chain_version
        self._new = LogletParams(chain.next_loglet_id(), me, replication, new_nodeset)
        self._task = FindTailTask(
            old,
            config,
            now_ms=now_ms,
            known_global_tail=known_global_tail,
            non_authoritative=non_authoritative,
        )
        self._state = ReconfigureState.FINDING_TAIL
        self._tail = 0

    @property
    def state(self) -> ReconfigureState:
        return self._state

    @property
    def old_params(self) -> LogletParams:
        p = self._chain.tail.params
        assert p is not None
        return p

    @property
    def new_params(self) -> LogletParams:
        return self._new

    def step(self, inp: ReconfigureInput) -> list[ReconfigureOutput]:
        st = self._state
        # Ticks, hints and late replies are harmless after the tail is found: they are ignored.
        if st is ReconfigureState.FAILED or (isinstance(inp, CasResult) and st is not ReconfigureState.CAS):
            self._state = ReconfigureState.FAILED
            raise LocalProtocolError(f"reconfiguration: no transition for {type(inp).__name__} in {st}")
        if isinstance(inp, CasResult):
            self._state = ReconfigureState.DONE
            return [Reconfigured(inp.ok, self._tail)]
        if st is not ReconfigureState.FINDING_TAIL:
            return []
        out: list[ReconfigureOutput] = []
        for o in self._task.step(inp):
            if isinstance(o, TailFound):
                self._tail = o.tail
                seg = self._chain.tail
                new_chain = self._chain.append_segment(seg.lsn(o.tail), self._new)
                self._state = ReconfigureState.CAS
                out.append(CasChain(self._version, new_chain))
            elif isinstance(o, NoSafeTail):
                self._state = ReconfigureState.DONE
                out.append(o)
            elif isinstance(o, Send | SetTimer):
                out.append(o)
        return out

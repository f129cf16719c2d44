"""The facade core (LogFacade): datadriven transcripts (testdata/facade_*.txt) plus table tests.

Chains in the transcripts are written as segments ``[index#]base:node.generation`` (a loglet
sequenced by that process, on the facade's nodes) or ``[index#]base:sealed`` (a seal marker).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bifrost.core import (
    BringTail,
    CallDone,
    CallFailed,
    Chain,
    ChainSeen,
    ChainState,
    CreateFirstSegment,
    FacadeConfig,
    Failure,
    FindTail,
    GenerationalNodeId,
    GetChain,
    LocalProtocolError,
    LogFacade,
    LogletParams,
    LogletTail,
    Reconfigure,
    SealLog,
    Segment,
    Tick,
    TrimLog,
    WaitChainChange,
    WaitForTail,
    describe,
    loglet_id,
    plan_trim,
)
from tests.datadriven import TestCase, run_file, walk

TESTDATA = Path(__file__).parent / "testdata"


class Cluster:
    """The facade's `Membership`, set by the transcript."""

    def __init__(self, live: list[int]) -> None:
        self.live = live
        self.writable = list(live)
        self.spare: list[int] = []
        self.gone: set[GenerationalNodeId] = set()

    def sequencer_gone(self, params: LogletParams) -> bool:
        return params.sequencer in self.gone

    def writable_nodes(self) -> list[int]:
        return self.writable

    def live_nodes(self) -> list[int]:
        return self.live

    def spare_nodes(self) -> list[int]:
        return self.spare


def gid(spec: str) -> GenerationalNodeId:
    node, gen = spec.split(".")
    return GenerationalNodeId(int(node), int(gen))


def build_chain(log_id: int, replication: int, nodeset: tuple[int, ...], specs: list[str]) -> Chain:
    segments: list[Segment] = []
    index = 0
    for spec in specs:
        if "#" in spec:
            idx, spec = spec.split("#")
            index = int(idx)
        base, who = spec.split(":")
        if who == "sealed":
            segments.append(Segment(index - 1, int(base), None))
            continue
        params = LogletParams(loglet_id(log_id, index), gid(who), replication, nodeset)
        segments.append(Segment(index, int(base), params))
        index += 1
    return Chain(log_id, tuple(segments))


class FacadeEnv:
    def __init__(self) -> None:
        self.facade: LogFacade | None = None
        self.cluster = Cluster([])
        self.log_id = 1
        self.replication = 2
        self.nodeset: tuple[int, ...] = ()

    def chain(self, t: TestCase) -> Chain:
        return build_chain(self.log_id, self.replication, self.nodeset, t.list_arg("segs"))

    def step(self, inp: object) -> str:
        assert self.facade is not None
        return "\n".join(describe(o) for o in self.facade.step(inp))  # type: ignore[arg-type]

    def handle(self, t: TestCase) -> str:
        if t.cmd == "new-facade":
            self.log_id = t.int_arg("log", 1)
            self.replication = t.int_arg("r", 2)
            live = [int(n) for n in t.list_arg("live")]
            self.nodeset = tuple(live)
            self.cluster = Cluster(live)
            config = FacadeConfig(chain_wait_ms=1000, reconfigure_timeout_ms=5000, cas_retry_min_ms=100)
            me = gid(t.arg("me", "1.1"))
            self.facade = LogFacade(self.log_id, me, self.replication, self.cluster, random.Random(0), config)
            return f"facade of log {self.log_id} on {me}, R={self.replication}"
        f = self.facade
        assert f is not None
        op = t.int_arg("op", 0)
        match t.cmd:
            case "set":
                if t.has("live"):
                    self.cluster.live = [int(n) for n in t.list_arg("live")]
                if t.has("writable"):
                    self.cluster.writable = [int(n) for n in t.list_arg("writable")]
                if t.has("gone"):
                    self.cluster.gone = {gid(g) for g in t.list_arg("gone")}
                return ""
            case "find-tail":
                return self.step(FindTail(op))
            case "wait-for-tail":
                return self.step(WaitForTail(op, t.int_arg("lsn")))
            case "trim":
                return self.step(TrimLog(op, t.int_arg("up-to")))
            case "seal":
                return self.step(SealLog(op))
            case "reconfigure":
                expected = t.int_arg("expected") if t.has("expected") else None
                return self.step(Reconfigure(op, expected))
            case "create-first":
                return self.step(CreateFirstSegment(op))
            case "bring-tail":
                after = t.int_arg("after") if t.has("after") else None
                return self.step(BringTail(op, after, t.has("reconfigure")))
            case "get-chain":
                return self.step(GetChain(op, t.has("refresh")))
            case "wait-chain-change":
                return self.step(WaitChainChange(op, t.int_arg("version")))
            case "chain":
                state = ChainState(None, None) if t.has("none") else ChainState(self.chain(t), t.int_arg("version"))
                return self.step(CallDone(t.int_arg("call"), state))
            case "watch":
                return self.step(ChainSeen(self.chain(t), t.int_arg("version")))
            case "written":
                return self.step(CallDone(t.int_arg("call"), t.int_arg("version")))
            case "tail":
                return self.step(CallDone(t.int_arg("call"), LogletTail(t.int_arg("offset"), t.has("sealed"))))
            case "sealed":
                return self.step(CallDone(t.int_arg("call"), t.int_arg("offset")))
            case "ok":
                return self.step(CallDone(t.int_arg("call"), None))
            case "fail":
                failure = Failure(t.arg("failure"))
                return self.step(CallFailed(t.int_arg("call"), failure, t.arg("detail", failure.value)))
            case "tick":
                return self.step(Tick(t.int_arg("now")))
            case "state":
                chain = f.chain.describe() if f.chain is not None else "none"
                return f"v{f.version}: {chain}\npending ops: {f.pending_ops} reconfigurations won: {f.reconfigurations}"
        raise ValueError(f"{t.pos}: unknown command {t.cmd}")


@pytest.mark.parametrize("path", walk(TESTDATA, "facade_*.txt"), ids=lambda p: p.name)
def test_facade_datadriven(path: Path) -> None:
    run_file(path, FacadeEnv().handle)


# --- trim clipping ------------------------------------------------------------------------

NODES = (1, 2, 3)


@pytest.mark.parametrize(
    ("segs", "up_to", "plan"),
    [
        # one open segment: up to the point
        (["1:1.1"], 5, [(0, 5)]),
        # two segments: the first clipped to its end (LSN 6 = offset 6), the second from its base
        (["1:1.1", "7:2.1"], 9, [(0, 6), (1, 3)]),
        # the point inside the first segment: the second is untouched
        (["1:1.1", "7:2.1"], 4, [(0, 4)]),
        # the point just below the second segment's base: only the first, whole
        (["1:1.1", "7:2.1"], 6, [(0, 6)]),
        # a trimmed chain starting later, and a seal marker: nothing to trim in the marker
        (["3#20:1.1", "25:sealed"], 30, [(3, 5)]),
    ],
)
def test_plan_trim_clips_the_point_to_each_segment(segs: list[str], up_to: int, plan: list[tuple[int, int]]) -> None:
    chain = build_chain(1, 2, NODES, segs)
    assert [(p.loglet_id & 0xFFFFFFFF, off) for p, off in plan_trim(chain, up_to)] == plan


def test_an_operation_id_runs_once_at_a_time() -> None:
    f = LogFacade(1, GenerationalNodeId(1, 1), 1, Cluster([1]), random.Random(0))
    f.step(FindTail(1))
    with pytest.raises(LocalProtocolError, match="already running"):
        f.step(FindTail(1))

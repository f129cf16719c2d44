"""Seal, find-tail/repair and trim cores over the in-memory loopback network; nodeset choice."""

from __future__ import annotations

import random

import pytest

from bifrost.core import (
    FindTailTask,
    GenerationalNodeId,
    LogletParams,
    NoSafeTail,
    RequestHeader,
    SealDone,
    SealTask,
    Send,
    Store,
    TailFound,
    Tick,
    TrimDone,
    TrimTask,
    loglet_id,
    nodeset_needs_change,
    select_nodeset,
)
from tests.unit.bifrost.loopback import Loopback

SEQ = GenerationalNodeId(1, 1)
LID = loglet_id(5, 0)
PARAMS = LogletParams(LID, SEQ, 2, (1, 2, 3))


def preload(net: Loopback, node: int, upto: int, gt: int = 1) -> None:
    """Give `node` records 1..upto-1 as the sequencer would have."""
    for off in range(1, upto):
        net.deliver(Send(node, 0, Store(RequestHeader(LID, gt), off, SEQ, (f"r{off}".encode(),))))


def holders(net: Loopback, off: int) -> list[int]:
    return [n for n, d in net.disks.items() if d.records(LID).get(off) == f"r{off}".encode()]


def test_seal_completes_on_an_fmajority_despite_an_isolated_node() -> None:
    net = Loopback([1, 2, 3])
    preload(net, 1, 4)
    net.isolate(3)
    out = net.drive(SealTask(PARAMS), lambda o: isinstance(o, SealDone))
    assert out[-1] == SealDone(4)
    assert [net.servers[n].mode(LID).value for n in (1, 2, 3)] == ["sealed", "sealed", "open"]


def test_find_tail_repairs_up_to_the_highest_sealed_tail() -> None:
    net = Loopback([1, 2, 3])
    preload(net, 1, 6)  # N1 holds 1..5 (3..5 never committed)
    preload(net, 2, 3)  # N2 holds 1..2
    preload(net, 3, 3)
    task = FindTailTask(PARAMS)
    out = net.drive(task, lambda o: isinstance(o, TailFound))
    assert out[-1] == TailFound(6)
    for off in range(1, 6):
        assert len(holders(net, off)) >= 2, f"offset {off} not on a write quorum"


def test_a_later_find_tail_never_reports_a_lower_tail() -> None:
    net = Loopback([1, 2, 3])
    preload(net, 1, 6)
    preload(net, 2, 4)
    preload(net, 3, 3)
    net.isolate(1)  # the first run cannot see N1's extra records
    first = net.drive(FindTailTask(PARAMS), lambda o: isinstance(o, TailFound))[-1]
    assert first == TailFound(4)
    net.isolate(1, False)
    for isolated in (2, 3, None):
        if isolated:
            net.isolate(isolated)
        later = net.drive(FindTailTask(PARAMS), lambda o: isinstance(o, TailFound))[-1]
        assert isinstance(later, TailFound) and later.tail >= first.tail
        if isolated:
            net.isolate(isolated, False)


def test_concurrent_find_tails_interleaved_are_safe() -> None:
    net = Loopback([1, 2, 3])
    preload(net, 1, 8)
    preload(net, 2, 3)
    preload(net, 3, 2)
    a, b = FindTailTask(PARAMS), FindTailTask(PARAMS)
    rng = random.Random(7)
    inbox: dict[int, list] = {0: [], 1: []}
    inbox[0].append(Tick(0))
    inbox[1].append(Tick(0))
    results: dict[int, int] = {}
    now = 0
    for _ in range(5000):
        if len(results) == 2:
            break
        which = rng.choice([w for w in (0, 1) if w not in results] or [0])
        core = (a, b)[which]
        if not inbox[which]:
            now += 50
            inbox[which].append(Tick(now))
        for o in core.step(inbox[which].pop(0)):
            if isinstance(o, TailFound):
                results[which] = o.tail
            elif isinstance(o, Send):
                inbox[which].extend(net.deliver(o))
    assert results == {0: 8, 1: 8}
    for off in range(1, 8):
        assert len(holders(net, off)) >= 2


def test_trim_completes_on_a_write_quorum_and_servers_drop_records() -> None:
    net = Loopback([1, 2, 3])
    for n in (1, 2, 3):
        preload(net, n, 6)
    net.isolate(3)
    # asked for 100, clipped below the known global tail (5)
    out = net.drive(TrimTask(PARAMS, 100, known_global_tail=5), lambda o: isinstance(o, TrimDone))
    assert out[-1] == TrimDone(4)
    assert sorted(net.disks[1].records(LID)) == [5] and sorted(net.disks[2].records(LID)) == [5]
    assert sorted(net.disks[3].records(LID)) == [1, 2, 3, 4, 5]


def test_trim_with_nothing_committed_is_a_reported_no_op() -> None:
    assert TrimTask(PARAMS, 10, known_global_tail=1).step(Tick(0)) == [TrimDone(0)]


def test_find_tail_never_trusts_a_node_that_lost_its_data() -> None:
    """The issue's wipe scenario in miniature: 1..49 committed on N1 and N2 while N3 was down;
    N2's store is wiped (it comes back empty, non-authoritative); N1 is down. Sealing N2 and N3
    is an f-majority by count, but N2's "empty" is no evidence: the task must wait, not end at
    N3's tail and drop 47 acknowledged records."""
    net = Loopback([1, 2, 3])
    preload(net, 1, 50, gt=50)
    preload(net, 3, 3)
    net.isolate(1)
    task = FindTailTask(PARAMS, non_authoritative=frozenset({2}))
    with pytest.raises(AssertionError, match="did not finish"):
        net.drive(task, lambda o: isinstance(o, TailFound), max_steps=300)
    net.isolate(1, on=False)
    out = net.drive(task, lambda o: isinstance(o, TailFound))
    assert out[-1] == TailFound(50)


def test_the_wipe_scenario_without_the_marker_loses_records() -> None:
    """The same run with N2 trusted ends at N3's tail: what this pins down would be a loss."""
    net = Loopback([1, 2, 3])
    preload(net, 1, 50, gt=50)
    preload(net, 3, 3)
    net.isolate(1)
    out = net.drive(FindTailTask(PARAMS), lambda o: isinstance(o, TailFound))
    assert out[-1] == TailFound(3)


def test_find_tail_says_at_once_when_no_safe_tail_can_exist() -> None:
    net = Loopback([1, 2, 3])
    out = net.drive(
        FindTailTask(PARAMS, non_authoritative=frozenset({1, 2})), lambda o: isinstance(o, NoSafeTail)
    )
    assert out == [NoSafeTail((1, 2))]


@pytest.mark.parametrize(
    ("nodeset", "live", "replication", "why"),
    [
        ((1, 2), [1, 3], 2, "too few of its nodes are live to take writes"),
        ((1, 2), [1, 2, 3], 2, "its nodeset of 2 can grow to 3"),
        ((1, 2, 3), [1, 2], 2, None),  # writable, and no node to grow with
        ((1, 2, 3), [1], 2, None),  # no nodeset of live nodes could do better
        ((1, 2), [1, 2], 2, None),
        ((1,), [1], 1, None),
        ((1, 2, 3), [1, 2, 3, 4], 2, None),  # already the size wanted for replication 2
        ((1, 2, 3), [1, 2, 3, 4, 5], 3, "its nodeset of 3 can grow to 5"),
    ],
)
def test_when_an_open_loglet_moves_to_a_new_nodeset(
    nodeset: tuple[int, ...], live: list[int], replication: int, why: str | None
) -> None:
    assert nodeset_needs_change(nodeset, live, replication) == why


@pytest.mark.parametrize(
    ("live", "spare", "replication", "nodeset"),
    [
        ([1, 2], [3], 2, (1, 2, 3)),  # the down node is a member: its return is enough later
        ([1, 2, 3], [4], 2, (1, 2, 3)),  # full size from live nodes alone
        ([1], [2, 3], 2, None),  # fewer live than R: no nodeset, spares or not
        ([1, 2, 3, 4, 5], [], 3, (1, 2, 3, 4, 5)),
        ([1, 2, 3], [4, 5], 3, (1, 2, 3, 4, 5)),
    ],
)
def test_a_new_nodeset_fills_up_with_down_nodes_after_the_live_ones(
    live: list[int], spare: list[int], replication: int, nodeset: tuple[int, ...] | None
) -> None:
    assert select_nodeset(1, live, replication, random.Random(0), spare=spare) == nodeset


def test_a_nodeset_with_a_down_member_finds_its_tail_when_another_member_fails() -> None:
    """Why down nodes join new nodesets: N3 was down when the loglet was made; N1 (its
    sequencer) wrote to N1 and N2 and then died, and N3 came back. Sealing N2 and N3 and
    repairing onto N3 finds the tail; with the nodeset [1, 2] the repair would need N1."""
    net = Loopback([1, 2, 3])
    preload(net, 1, 6)
    preload(net, 2, 6)
    net.isolate(1)
    out = net.drive(FindTailTask(PARAMS), lambda o: isinstance(o, TailFound))
    assert out[-1] == TailFound(6)
    assert all(set(holders(net, off)) >= {2, 3} for off in range(1, 6)), "repaired onto N3"
    small = LogletParams(LID, SEQ, 2, (1, 2))
    stuck = Loopback([1, 2])
    preload(stuck, 1, 6)
    preload(stuck, 2, 3)  # the last batches reached N1 alone before it died
    stuck.isolate(1)
    with pytest.raises(AssertionError, match="did not finish"):
        stuck.drive(FindTailTask(small), lambda o: isinstance(o, TailFound), max_steps=2000)

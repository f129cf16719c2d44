"""NodeSetChecker against a brute-force model (raft's quorum/quick_test.go)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from bifrost.core import NodeSetChecker


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], int, list[int], list[int]]:
    nodeset = draw(st.lists(st.integers(1, 9), min_size=1, max_size=7, unique=True))
    r = draw(st.integers(1, len(nodeset)))
    disabled = draw(st.lists(st.sampled_from(nodeset), unique=True, max_size=len(nodeset)))
    tagged = draw(st.lists(st.integers(1, 12), unique=True))  # may name strangers
    return nodeset, r, disabled, tagged


def naive_write_quorum(effective: list[int], r: int, tagged: list[int]) -> bool:
    # some R-subset of the effective nodeset lies inside the tagged set
    return any(all(n in tagged for n in combo) for combo in itertools.combinations(effective, r))


def naive_fmajority(effective: list[int], r: int, tagged: list[int]) -> bool:
    # the tagged nodes meet every possible write quorum (and at least one exists)
    quorums = list(itertools.combinations(effective, r))
    return bool(quorums) and all(any(n in tagged for n in q) for q in quorums)


@given(scenarios())
def test_checker_matches_brute_force(sc: tuple[list[int], int, list[int], list[int]]) -> None:
    nodeset, r, disabled, tagged = sc
    chk: NodeSetChecker[bool] = NodeSetChecker(nodeset, r, False, disabled=disabled)
    for n in tagged:
        chk.set_attribute(n, True)
    effective = [n for n in nodeset if n not in disabled]
    assert chk.check_write_quorum(bool) == naive_write_quorum(effective, r, tagged)
    assert chk.check_fmajority(bool).passed == naive_fmajority(effective, r, tagged)


@given(st.lists(st.integers(1, 9), min_size=1, max_size=7, unique=True), st.data())
def test_every_write_quorum_meets_every_fmajority(nodeset: list[int], data: st.DataObject) -> None:
    r = data.draw(st.integers(1, len(nodeset)))
    wq = data.draw(st.lists(st.sampled_from(nodeset), unique=True))
    fm = data.draw(st.lists(st.sampled_from(nodeset), unique=True))
    a: NodeSetChecker[bool] = NodeSetChecker(nodeset, r, False)
    b: NodeSetChecker[bool] = NodeSetChecker(nodeset, r, False)
    for n in wq:
        a.set_attribute(n, True)
    for n in fm:
        b.set_attribute(n, True)
    if a.check_write_quorum(bool) and b.check_fmajority(bool).passed:
        assert any(n in fm for n in wq)


def test_merge_attribute_and_strangers() -> None:
    chk: NodeSetChecker[int] = NodeSetChecker([1, 2, 3], 2, 0)
    chk.merge_attribute(1, lambda x: x + 5)
    chk.set_attribute(7, 9)  # not in the nodeset: ignored
    assert chk.get_attribute(1) == 5
    assert chk.nodes_where(lambda x: x > 0) == [1]
    assert chk.fmajority_size == 2

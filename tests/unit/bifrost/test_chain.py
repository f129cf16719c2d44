"""Chain mutations (§2.1) and LSN mapping, with a Hypothesis property for history."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost.core import Chain, ChainError, GenerationalNodeId, LogletParams, loglet_id

G = GenerationalNodeId(1, 1)


def params(seg: int) -> LogletParams:
    return LogletParams(loglet_id(3, seg), G, 1, (1,))


def test_append_seal_replace_and_map() -> None:
    c = Chain.new(3, params(0))
    c = c.append_segment(11, params(1))
    seg0, seg1 = c.segments
    assert c.end_lsn(seg0) == 11 and c.end_lsn(seg1) is None
    assert c.find(10) == seg0 and c.find(11) == seg1
    assert seg1.lsn(1) == 11 and seg1.offset(15) == 5
    # an empty tail segment is replaced, but the new one still takes the next index
    c2 = c.append_segment(11, params(2))
    assert [s.index for s in c2.segments] == [0, 2]
    with pytest.raises(ChainError):
        c.append_segment(5, params(2))
    with pytest.raises(ChainError):
        c.append_segment(20, params(7))
    sealed = c.seal(20)
    assert sealed.sealed and sealed.find(20) is None and sealed.seal(30) is sealed
    assert c.seal(11).segments[-1].is_seal_marker and len(c.seal(11).segments) == 2


def test_trim_prefix_keeps_the_tail() -> None:
    c = Chain.new(3, params(0)).append_segment(11, params(1)).append_segment(21, params(2))
    assert [s.index for s in c.trim_prefix(10).segments] == [1, 2]
    assert [s.index for s in c.trim_prefix(9).segments] == [0, 1, 2]
    assert [s.index for s in c.trim_prefix(10_000).segments] == [2]


@given(st.lists(st.integers(0, 5), max_size=12))
def test_existing_lsns_never_move(steps: list[int]) -> None:
    c = Chain.new(3, params(0))
    for grow in steps:
        base = c.tail.base_lsn + grow
        before = {s.index: s.base_lsn for s in c.segments[:-1]}
        c = c.append_segment(base, params(c.next_segment_index))
        after = {s.index: s.base_lsn for s in c.segments}
        assert all(after[i] == b for i, b in before.items())
        bases = [s.base_lsn for s in c.segments]
        assert bases == sorted(bases) and len(set(bases)) == len(bases)

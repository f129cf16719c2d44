"""The fault schedule is a function of the seed (and the options) only."""

from __future__ import annotations

import pytest

from chaos.schedule import ALL_NEMESES, WARMUP_S, make_schedule

NODES = ["n1", "n2", "n3"]


def test_same_seed_same_schedule() -> None:
    a = make_schedule(42, 60, list(ALL_NEMESES), NODES, [1, 2, 3])
    b = make_schedule(42, 60, list(ALL_NEMESES), NODES, [1, 2, 3])
    assert a == b and len(a) >= 5
    assert make_schedule(43, 60, list(ALL_NEMESES), NODES, [1, 2, 3]) != a


def test_schedule_fits_the_run_and_never_overlaps() -> None:
    faults = make_schedule(7, 60, list(ALL_NEMESES), NODES, [1, 2, 3])
    assert faults[0].start_s >= WARMUP_S
    assert all(f.end_s <= 60 for f in faults)
    assert all(a.end_s < b.start_s for a, b in zip(faults, faults[1:], strict=False))


def test_every_nemesis_before_any_repeats() -> None:
    faults = make_schedule(1, 600, list(ALL_NEMESES), NODES, [1, 2, 3])
    first = [f.nemesis for f in faults[: len(ALL_NEMESES)]]
    assert sorted(first) == sorted(ALL_NEMESES)


def test_targets() -> None:
    for f in make_schedule(3, 600, list(ALL_NEMESES), NODES, [1, 2, 3]):
        if f.nemesis in ("kill-sequencer", "partition-sequencer"):
            assert f.target in ("sequencer:log1", "sequencer:log2", "sequencer:log3")
        elif f.nemesis in ("restart-all", "latency"):
            assert f.target == "all"
        else:
            assert f.target in NODES


def test_unknown_nemesis_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown nemesis"):
        make_schedule(1, 60, ["kill-everything"], NODES, [1])

"""Seeded simulation of partition processors (see harness.py): hundreds of swarm-drawn runs in
the default suite.

SIM_SEED=<n> runs that one seed; SIM_SEEDS=<count> changes how many run (default 300). A
failing seed's message says how to replay it.
"""

from __future__ import annotations

import os

import msgspec
import pytest

from processor.core import Invoke, JournalCommand, Signal
from processor.core import _sm_lifecycle as lifecycle
from processor.core import _state_machine as sm

from .harness import Simulation, run_seed

DEFAULT_SEEDS = 300


def seeds() -> list[int]:
    if os.environ.get("SIM_SEED"):
        return [int(os.environ["SIM_SEED"])]
    return list(range(int(os.environ.get("SIM_SEEDS", DEFAULT_SEEDS))))


@pytest.mark.parametrize("seed", seeds())
def test_sim_seed(seed: int) -> None:
    sim = Simulation(seed)
    try:
        sim.run()
    except Exception as e:
        raise AssertionError(
            f"seed {seed} failed: {e}\nconfig: {sim.config.describe()}\n"
            f"reproduce: SIM_SEED={seed} PYTHONHASHSEED=0 pytest tests/sim/processor -k test_sim_seed"
        ) from e


def test_swarm_exercises_the_interesting_paths() -> None:
    """Guard against a swarm that silently stops testing anything."""
    results = [run_seed(s) for s in range(40)]
    assert sum(r.leader_changes - r.config.partitions for r in results) >= 40, "leaders must change"
    assert sum(r.crashes for r in results) >= 10
    assert sum(r.duplicates for r in results) >= 20, "late duplicates must land"
    assert sum(r.drops for r in results) >= 200, "records must be dropped (dedup, fencing, stale commands)"
    threes = sum(3 * sum(1 for t, *_ in Simulation(r.seed).workload if t.service == "Steps") for r in results)
    assert sum(r.run_executions for r in results) > threes, "some steps must run again after an attempt died"
    assert any(r.config.call_retention_ms == 0 for r in results)
    services = {t.service for r in results for t, *_ in Simulation(r.seed).workload}
    assert {"Signup", "Waiter", "Resolver", "Long"} <= services, "promises, awakeables, cancel and kill"


# --- the checker can fail: the same swarm against broken state machines ----------------------


def first_failure(seeds: range) -> str | None:
    for seed in seeds:
        try:
            run_seed(seed)
        except AssertionError as e:
            return f"seed {seed}: {e}"
    return None


def test_without_dedup_and_fencing_the_swarm_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record is applied, duplicates and deposed leaders' proposals included (the marks
    still move, as the invoker's retry rule reads them). Mostly a deposed leader's Suspended
    lands on a running invocation and wedges it; now and then a redelivered Invoke of a
    called invocation that kept nothing runs it again."""
    original = sm._fence_and_dedup

    def apply_everything(tables, envelope):
        original(tables, envelope)
        return None

    monkeypatch.setattr(sm, "_fence_and_dedup", apply_everything)
    assert first_failure(range(100)) is not None


def test_without_the_command_index_check_journals_break(monkeypatch: pytest.MonkeyPatch) -> None:
    original = sm._APPLY[JournalCommand]

    def any_index(ctx, cmd: JournalCommand):
        status = ctx.tables.get_status(cmd.invocation_id)
        if status is not None:
            cmd = msgspec.structs.replace(cmd, command_index=status.commands)
        return original(ctx, cmd)

    monkeypatch.setitem(sm._APPLY, JournalCommand, any_index)
    assert first_failure(range(100)) is not None


def test_without_locks_two_exclusive_handlers_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "admit", lambda ctx, inv_id, status: lifecycle.start(ctx, inv_id, status))
    monkeypatch.setattr(sm, "admit", lambda ctx, inv_id, status: lifecycle.start(ctx, inv_id, status))
    found = first_failure(range(100))
    assert found is not None and "exclusive" in found


def test_a_replica_that_applies_differently_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = sm._APPLY[Invoke]
    calls = iter(range(10**9))

    def skewed(ctx, cmd: Invoke):
        ctx.now_ms += next(calls) % 2  # depends on how often apply ran in this process
        return original(ctx, cmd)

    monkeypatch.setitem(sm._APPLY, Invoke, skewed)
    found = first_failure(range(20))
    assert found is not None and "differs from another replica" in found


def test_without_the_signal_check_an_awakeable_is_journaled_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingress and a handler both resolve each awakeable, and the ingress repeats itself:
    only the state machine's once-per-index rule keeps the journal (and the SDK) sane."""
    original = sm._APPLY[Signal]

    def forgetful(ctx, cmd: Signal):  # type: ignore[no-untyped-def]
        status = ctx.tables.get_status(cmd.signal.target)
        if status is not None:
            ctx.tables.put_status(cmd.signal.target, msgspec.structs.replace(status, signals=()))
        return original(ctx, cmd)

    monkeypatch.setitem(sm._APPLY, Signal, forgetful)
    found = first_failure(range(100))
    assert found is not None and "journaled twice" in found

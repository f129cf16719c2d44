"""Seeded simulation of the log (replicated loglet and the facade's cores above it): a thousand
swarm-drawn runs per default suite.

SIM_SEED=<n> runs that one seed; SIM_SEEDS=<count> changes how many seeds run (default 1000).
A failing seed's message says how to replay it.
"""

from __future__ import annotations

import os

import pytest

from bifrost.core import LogletMode, LogServer, MemoryLogStore, Persist, Persisted, Request, Store
from tests.sim.harness import InvariantViolation, SimResult, Simulation, run_seed

DEFAULT_SEEDS = 1000
# Seeds per test: one pytest test per seed cost more than a seed's run.
CHUNK = 50
GUARD_SEEDS = range(60)

# Results of the seeds run so far in this session, for the swarm guard (which runs any missing).
_results: dict[int, SimResult] = {}


def seeds() -> list[int]:
    if os.environ.get("SIM_SEED"):
        return [int(os.environ["SIM_SEED"])]
    return list(range(int(os.environ.get("SIM_SEEDS", DEFAULT_SEEDS))))


def chunks() -> list[list[int]]:
    all_seeds = seeds()
    return [all_seeds[i : i + CHUNK] for i in range(0, len(all_seeds), CHUNK)]


def replay_hint(seed: int) -> str:
    return f"reproduce: SIM_SEED={seed} pytest tests/sim/test_sim.py -k test_sim_seeds"


@pytest.mark.parametrize("chunk", chunks(), ids=lambda c: f"seeds{c[0]}-{c[-1]}")
def test_sim_seeds(chunk: list[int]) -> None:
    failures = []
    for seed in chunk:
        sim = Simulation(seed)
        try:
            _results[seed] = sim.run()
        except Exception as e:
            failures.append(f"seed {seed} failed: {e}\nconfig: {sim.config.describe()}\n{replay_hint(seed)}")
    assert not failures, "\n\n".join(failures)


def test_swarm_exercises_the_interesting_paths() -> None:
    """Guard against a swarm that silently stops testing anything."""
    results = [_results[s] if s in _results else run_seed(s) for s in GUARD_SEEDS]

    def total(field: str) -> int:
        return sum(getattr(r, field) for r in results)

    assert total("acked") > 1000
    assert total("reconfigurations") >= 10, "sequencer crashes must trigger reconfiguration"
    assert total("duplicates") > 0, "re-appends after seals should produce some duplicates"
    assert total("reappended") > 0, "appenders must re-append after seals"
    assert total("remote_appends") > 100, "appends through a node that does not sequence"
    assert total("cached_records") > 100, "read streams must take records from the sequencer's cache"
    assert total("resends_answered") > 0, "a resent remote append must be answered from the ledger"
    assert total("trims") > 0
    assert total("operator_seals") > 0
    assert total("lost_chain_replies") > 0 and total("cas_conflicts") > 0, "chain writes must fail too"
    assert any(r.config.replication >= 2 for r in results)
    assert any(not r.config.initial_nodeset for r in results), "some logs start without a chain"


# --- the checker can fail ---------------------------------------------------------------


class AcksBeforeSync(LogServer):
    """Broken on purpose: releases Stored OK before the batch is synced (it is synced later)."""

    def __init__(self, node: int, storage: MemoryLogStore) -> None:
        super().__init__(node, storage)
        self._self_acked: list[int] = []

    def step(self, inp: Request | Persisted) -> list:  # type: ignore[override]
        if isinstance(inp, Persisted) and inp.token in self._self_acked:
            return []
        outs = super().step(inp)
        i = 0
        while i < len(outs):
            o = outs[i]
            i += 1
            if isinstance(o, Persist):
                self._self_acked.append(o.token)
                outs.extend(super().step(Persisted(o.token)))
        return outs


class IgnoresSeal(LogServer):
    """Broken on purpose: a sealed log-server keeps accepting the sequencer's stores."""

    def step(self, inp: Request | Persisted) -> list:  # type: ignore[override]
        if isinstance(inp, Request) and isinstance(inp.message, Store):
            lg = self._loglet(inp.message.header.loglet_id)
            mode = lg.mode
            lg.mode = LogletMode.OPEN
            try:
                return super().step(inp)
            finally:
                lg.mode = mode if lg.mode is LogletMode.OPEN else lg.mode
        return super().step(inp)


def first_caught(factory: type[LogServer], limit: int) -> tuple[int, str] | None:
    for seed in range(limit):
        try:
            Simulation(seed, log_server_factory=factory).run()
        except InvariantViolation as e:
            return seed, str(e)
    return None


def test_checker_catches_acks_before_sync() -> None:
    caught = first_caught(AcksBeforeSync, 50)
    assert caught is not None, "a log-server that acks before fsync went unnoticed"
    assert "disks < R" in caught[1] or "reads" in caught[1], caught


def test_checker_catches_a_log_server_that_ignores_the_seal() -> None:
    caught = first_caught(IgnoresSeal, 300)
    assert caught is not None, "a log-server that ignores the seal went unnoticed"


def test_a_seed_replays_exactly() -> None:
    a, b = Simulation(11, trace=True), Simulation(11, trace=True)
    a.run()
    b.run()
    assert a.trace == b.trace and a.events == b.events

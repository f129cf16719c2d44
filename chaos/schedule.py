"""The seeded fault schedule: the same seed and options give the same faults at the same times.

Faults are sequential, never overlapping: with replication 2 of 3 the log tolerates one
failed node, and the interesting question is whether each single fault (and the recovery
from it) keeps the invariants. A quiet gap follows every fault so recovery is observable.
Targets that depend on the cluster's state at that moment (the sequencer of a log) are
named symbolically (``sequencer:log2``) and resolved when the fault starts.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

# Every nemesis the harness knows, in the order they are described in the issue.
KILL_RANDOM = "kill-random"
KILL_SEQUENCER = "kill-sequencer"
PARTITION_RANDOM = "partition-random"
PARTITION_SEQUENCER = "partition-sequencer"
LATENCY = "latency"
SLOW_LOG_SERVER = "slow-log-server"
PAUSE = "pause"
RESTART_ALL = "restart-all"
WIPE = "wipe"
SLOW_DISK = "slow-disk"

ALL_NEMESES: tuple[str, ...] = (
    KILL_RANDOM,
    KILL_SEQUENCER,
    PARTITION_RANDOM,
    PARTITION_SEQUENCER,
    LATENCY,
    SLOW_LOG_SERVER,
    PAUSE,
    RESTART_ALL,
    WIPE,
    SLOW_DISK,
)
# Nemeses whose target is the sequencer of a log rather than a node picked up front.
SEQUENCER_TARGETED = frozenset({KILL_SEQUENCER, PARTITION_SEQUENCER})
# Nemeses acting on every node.
CLUSTER_WIDE = frozenset({RESTART_ALL, LATENCY})

WARMUP_S = 3.0
MIN_FAULT_S, MAX_FAULT_S = 2.0, 6.0
MIN_GAP_S, MAX_GAP_S = 1.5, 4.0


@dataclass(frozen=True, slots=True)
class Fault:
    start_s: float
    nemesis: str
    target: str  # a node name, "sequencer:log<N>", or "all"
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def make_schedule(
    seed: int, duration_s: float, nemeses: list[str], nodes: list[str], log_ids: list[int]
) -> list[Fault]:
    """Faults for a run of ``duration_s`` seconds.

    Nemeses are taken in a seeded shuffled round-robin, so a short run with many nemeses still
    exercises each of them once before repeating any.
    """
    unknown = [n for n in nemeses if n not in ALL_NEMESES]
    if unknown:
        raise ValueError(f"unknown nemesis {', '.join(unknown)}; known: {', '.join(ALL_NEMESES)}")
    if not nemeses:
        return []
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = WARMUP_S
    bag: list[str] = []
    while True:
        if not bag:
            bag = sorted(set(nemeses), key=ALL_NEMESES.index)
            rng.shuffle(bag)
        nemesis = bag[0]
        length = round(rng.uniform(MIN_FAULT_S, MAX_FAULT_S), 2)
        if t + length > duration_s:
            break
        bag.pop(0)
        if nemesis in SEQUENCER_TARGETED:
            target = f"sequencer:log{rng.choice(log_ids)}"
        elif nemesis in CLUSTER_WIDE:
            target = "all"
        else:
            target = rng.choice(nodes)
        faults.append(Fault(round(t, 2), nemesis, target, length))
        t += length + rng.uniform(MIN_GAP_S, MAX_GAP_S)
    return faults

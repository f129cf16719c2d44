"""A partition store killed with SIGKILL in the middle of its commits reopens holding exactly the
batches up to its applied LSN: never part of a batch, never a batch without its LSN, and (with
the WAL on) nothing the writer saw committed is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from processor.store import Durability, PartitionStore
from tests.support.procs import Procs
from tests.support.wait import wait_until
from tests.unit.processor.store.crash_writer import PARTITION, check_consistent

ROUNDS = 3
BATCHES_PER_ROUND = 25


def committed(log: Path) -> tuple[int, int] | None:
    """(LSN the writer started at, last LSN it reported committed), from complete lines."""
    lines = log.read_text().split("\n")[:-1]
    starts = [i for i, line in enumerate(lines) if line.startswith("start ")]
    if not starts:
        return None
    start = int(lines[starts[-1]].split()[1])
    done = [int(line) for line in lines[starts[-1] + 1 :]]
    return start, (done[-1] if done else start)


def progressed(proc: subprocess.Popen, log: Path) -> tuple[int, int] | None:
    assert proc.poll() is None, f"the writer exited: {log.read_text()[-2000:]}"
    seen = committed(log)
    return seen if seen and seen[1] >= seen[0] + BATCHES_PER_ROUND else None


@pytest.mark.parametrize("durability", [Durability.WAL, Durability.WAL_SYNC], ids=lambda d: d.value)
def test_sigkill_mid_commit_leaves_whole_batches(
    durability: Durability, tmp_path: Path, procs: Procs
) -> None:
    path = tmp_path / "store"
    applied = 0
    for round_ in range(ROUNDS):
        log = tmp_path / f"writer-{round_}.log"
        proc = procs.spawn(
            [sys.executable, "-m", "tests.unit.processor.store.crash_writer", str(path), durability.value],
            log,
        )
        start, _ = wait_until(lambda p=proc, log=log: progressed(p, log), 60, "the writer to commit batches")
        assert start == applied  # it continued where the reopened store said
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _, last = committed(log)  # type: ignore[misc]
        with PartitionStore(path, durability) as store:
            applied = check_consistent(store.partition(PARTITION))
        # A process crash loses nothing the WAL got: the page cache survives the process.
        assert applied >= last, (applied, last)
        assert applied <= last + 1  # at most the batch that was being committed

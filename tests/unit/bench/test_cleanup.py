"""bench/cleanup.py: a run's leftover processes are killed on the way out, a signal unwinds once."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.cleanup import _running, stops_everything_started
from tests.support.wait import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def older() -> Iterator[subprocess.Popen[bytes]]:
    """A child that existed before the block: not the block's to stop."""
    proc = subprocess.Popen(SLEEPER)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids the test started inside the block: killed at teardown should the block have failed to."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_process_left_running_is_killed_and_one_started_before_is_not(
    older: subprocess.Popen[bytes], started: list[int]
) -> None:
    with stops_everything_started():
        # Its own session, as the benchmark's servers: a group kill of ours would not reach it.
        leaked = subprocess.Popen(SLEEPER, start_new_session=True)
        grandchild_parent = subprocess.Popen(
            [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
             "'import time; time.sleep(60)']); print('up', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE,
        )
        assert grandchild_parent.stdout is not None and grandchild_parent.stdout.readline() == b"up\n"
        grandchild = [
            int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == grandchild_parent.pid
        ]
        assert len(grandchild) == 1
        started += [leaked.pid, grandchild_parent.pid, *grandchild]

    # Killed and reaped (so Popen can no longer tell the signal), the grandchild with them.
    for pid in (leaked.pid, grandchild_parent.pid, grandchild[0]):
        wait_until(lambda pid=pid: not _running(pid), 10, f"process {pid} to die")
    assert older.poll() is None and _running(older.pid)


def test_the_first_sigterm_unwinds_and_a_second_one_does_not_cut_the_way_out_short() -> None:
    reached_the_end_of_the_stop = False
    with pytest.raises(KeyboardInterrupt):
        with stops_everything_started():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                pytest.fail("SIGTERM did not interrupt the block")
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # ignored: the orderly stop goes on
                reached_the_end_of_the_stop = True
    assert reached_the_end_of_the_stop
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])

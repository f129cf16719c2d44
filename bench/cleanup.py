"""However a benchmark run ends (normally, by an exception, Ctrl-C or SIGTERM), no process it
started outlives it.

    with stops_everything_started():
        ...  # start servers with `with` blocks / finally clauses that stop them

Inside the block the first SIGINT or SIGTERM raises KeyboardInterrupt, so every ``with`` and
``finally`` on the way out runs its own orderly stop; further signals are ignored meanwhile (a
second Ctrl-C would otherwise cut a stop short and leak what it was stopping). On the way out,
any process started inside the block that is still alive (a stop that timed out or was cut
short, a child a bug forgot) is SIGKILLed by pid and named on stderr.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from bench.cluster import descendants
from bench.common import progress

REAP_TIMEOUT_S = 10.0


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited: only its parent's wait is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


def kill_started_since(before: set[int]) -> list[int]:
    """SIGKILL every running descendant of this process that is not in ``before`` (the ones that
    were already there, which are not ours to stop); their pids."""
    me = os.getpid()
    left = [p for p in descendants([me]) if p != me and p not in before and _running(p)]
    for pid in left:
        progress(f"stopping a process left running: {pid} {_cmd(pid)}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + REAP_TIMEOUT_S
    for pid in left:
        # Our own children stay zombies until waited for; reap them so nothing is listed afterwards.
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return left


@contextmanager
def stops_everything_started() -> Iterator[None]:
    me = os.getpid()
    before = {p for p in descendants([me]) if p != me}
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            progress(f"{signal.Signals(signum).name}: still stopping the processes this run started")
            return
        stopping = True
        progress(f"{signal.Signals(signum).name}: stopping the processes this run started")
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        stopping = True  # a signal now must not cut the sweep short
        try:
            kill_started_since(before)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

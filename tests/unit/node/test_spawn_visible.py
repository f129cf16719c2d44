"""A node just spawned must look alive: its command line (what `LocalCluster.alive` checks
against pid reuse) reads empty for a moment after Popen returns, until the kernel has set up the
new program's arguments. The flake this pins down: `wait_healthy` right after `spawn` reported
"node n3 exited during start" for a node that was starting (its log empty)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from node.local_cluster import wait_exec

MARKER = "--durastate-spawn-marker"


def test_the_command_line_is_visible_once_wait_exec_returns() -> None:
    for _ in range(40):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", MARKER])
        try:
            wait_exec(proc, MARKER.encode(), timeout_s=10)
            assert MARKER.encode() in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        finally:
            proc.kill()
            proc.wait()


def test_wait_exec_returns_when_the_process_exits_first() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    wait_exec(proc, b"never there", timeout_s=10)
    assert proc.wait() == 3

"""Processes started by tests: each is stopped by pid (and its process group) when the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

DURASTATE = [sys.executable, "-m", "node.cli"]
# The checkout under test, first on the path of every process a test starts: with another cwd,
# `-m node.cli` would otherwise import whichever checkout is installed.
ROOT = Path(__file__).resolve().parents[2]


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURASTATE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(overrides)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None):
    return subprocess.run(
        [*DURASTATE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or clean_env()
    )


class Procs:
    """Starts processes in their own group and kills every group at teardown."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen] = []

    def spawn(
        self, args: Sequence[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ):
        with open(log, "ab") as f:
            proc = subprocess.Popen(
                list(args),
                cwd=cwd,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env or clean_env(),
            )
        self.popens.append(proc)
        return proc

    def stop_all(self) -> None:
        # Only groups whose leader is still our child (not yet reaped): their ids cannot have
        # been reused by anyone else.
        for proc in self.popens:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.popens:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop_all()

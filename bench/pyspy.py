"""Where a node process spends its GIL-held time during a benchmark window, by component.

py-spy (``pip install py-spy``; not a dependency of the project) samples each node process from
outside, with ``--gil`` (only the thread holding the GIL, so waiting in epoll or on a lock is not
counted; a thread descheduled inside a syscall while holding the GIL still is) and
``--nonblocking`` (the process is not paused to be sampled). The raw files (one collapsed stack
and its count per line) stay in the output directory for flame graphs; ``summarize`` charges every
sample to the deepest frame of durastate's own code on its stack, so a library call counts for
the component that made it, and names the package and module (``bifrost/net``,
``processor/invoker``, ...).

Sampling costs CPU on the same cores: figures measured with a profiler attached are not the
ones to compare.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from bench.common import BenchError

RATE_HZ = 100
OWN_PACKAGES = ("bifrost", "processor", "node", "metadata", "snapshots")
OUTSIDE = "outside durastate's code"
# The node's entry point runs the loop: a sample whose deepest own frame is there was in uvloop's C
# code (reading sockets, running callbacks), not in the CLI.
_LOOP_ENTRY = ("node/cli", "_run_loop")
EVENT_LOOP = "event loop (uvloop internals)"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*):\d+\)$")


class PySpy:
    """One ``py-spy record`` per process, for ``duration_s`` seconds from now."""

    def __init__(self, out_dir: Path, label: str, pids: dict[str, int], duration_s: float) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            raise BenchError("--py-spy needs py-spy on PATH (pip install py-spy)")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        for name, pid in pids.items():
            out = out_dir / f"{label}-{name}.txt"
            self.files.append(out)
            self._procs.append(
                subprocess.Popen(
                    [exe, "record", "--pid", str(pid), "--gil", "--nonblocking", "--format", "raw"]
                    + ["--rate", str(RATE_HZ), "--duration", str(max(1, round(duration_s))), "--output", str(out)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def wait(self, timeout_s: float = 30.0) -> None:
        for proc in self._procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def component(frame: str) -> str | None:
    """``package/module`` of a py-spy frame in durastate's own code, else None."""
    m = _FRAME.match(frame)
    if m is None:
        return None
    parts = m.group("path").split("/")
    if "site-packages" in parts or parts[0] not in OWN_PACKAGES or len(parts) < 2:
        return None
    return f"{parts[0]}/{parts[1].removesuffix('.py')}"


def summarize(files: list[Path]) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, share per component, share per deepest own function), largest first."""
    by_component: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            owner, function = OUTSIDE, None
            for frame in reversed(stack.split(";")):
                if (found := component(frame)) is not None:
                    owner, function = found, frame
                    break
            if function is not None and (owner, function.split(" ", 1)[0]) == _LOOP_ENTRY:
                owner, function = EVENT_LOOP, None
            by_component[owner] += n
            if function is not None:
                by_function[re.sub(r":\d+\)$", ")", function)] += n
    if not total:
        return 0, [], []
    return (
        total,
        [(k, v / total) for k, v in by_component.most_common()],
        [(k, v / total) for k, v in by_function.most_common()],
    )

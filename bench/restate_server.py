"""The real Restate server for side-by-side benchmarks: installed from npm on first use, run as one
node or as a cluster of nodes on loopback with free ports, stopped by pid however the run ends.

    binary = ensure_installed(DEFAULT_CACHE_DIR)      # npm install --prefix <dir> ... if absent
    with RestateNodes(binary, base_dir, count=3) as rs:
        rs.ingress_ports, rs.admin_port, rs.metrics_urls, rs.pids()

Every node runs every role. A cluster follows the server's documented multi-node configuration:
one node may auto-provision, the metadata store is the replicated one with every node a member,
log and partition replication 2 (``default-replication``). Each node's config file, data and log
live under ``base_dir/<node>/``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from bench.cluster import descendants
from bench.common import BenchError, progress
from node.local_cluster import tail
from node.ports import LOOPBACK, free_ports

VERSION = "1.7.12"
NPM_PACKAGE = f"@restatedev/restate-server@{VERSION}"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "durastate" / f"restate-server-{VERSION}"
# The npm package is a Node wrapper; the native binary comes in a per-platform package.
_BINARY = Path("node_modules/@restatedev/restate-server-linux-x64/bin/restate-server")
# The equivalent of durastate_bifrost_appended_records_total: records each sequencer committed.
RECORDS_METRIC = "restate_bifrost_sequencer_committed_records_total"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
INSTALL_TIMEOUT_S = 600.0


def _version_of(binary: Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise BenchError(f"cannot run {binary}: {e.strerror or e}") from None
    return out.stdout.strip().rsplit(" ", 1)[-1]


def ensure_installed(cache_dir: Path, binary: Path | None = None) -> Path:
    """The restate-server binary: ``binary`` if given, else the one under ``cache_dir``, installed
    there with npm first if absent. Its version must be VERSION, the one the figures compare with."""
    if binary is None:
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            raise BenchError("the bench installs the linux-x64 restate-server only; pass --restate-server PATH")
        binary = cache_dir / _BINARY
        if not binary.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise BenchError(f"npm is needed to install {NPM_PACKAGE} (or pass --restate-server PATH)")
            progress(f"installing {NPM_PACKAGE} under {cache_dir}")
            cache_dir.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache_dir), NPM_PACKAGE],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
            if done.returncode != 0 or not binary.exists():
                raise BenchError(f"npm install {NPM_PACKAGE} failed: {done.stderr.strip()[-500:]}")
    found = _version_of(binary)
    if found != VERSION:
        raise BenchError(f"{binary} is restate-server {found or '?'}; the bench compares with {VERSION}")
    return binary


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # TOML basic strings, integers and arrays read JSON's forms


class RestateNodes:
    """``count`` restate-server processes under ``base_dir``; exit stops every one by pid."""

    def __init__(self, binary: Path, base_dir: Path, count: int) -> None:
        self.binary = binary
        self.base_dir = base_dir.absolute()
        self.count = count
        ports = free_ports(3 * count)
        self._fabric = ports[0::3]
        self.admin_ports = ports[1::3]
        self.ingress_ports = ports[2::3]
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def admin_port(self) -> int:
        return self.admin_ports[0]

    @property
    def metrics_urls(self) -> list[str]:
        # Prometheus metrics are served on the node-to-node port.
        return [f"http://{LOOPBACK}:{p}/metrics" for p in self._fabric]

    def _name(self, i: int) -> str:
        return f"r{i + 1}"

    def config(self, i: int) -> str:
        fabric = [f"http://{LOOPBACK}:{p}/" for p in self._fabric]
        top = {
            "node-name": self._name(i),
            "cluster-name": f"durastate-bench-{os.getpid()}",
            "base-dir": str(self.base_dir / self._name(i) / "data"),
            "listen-mode": "tcp",
            "bind-address": f"{LOOPBACK}:{self._fabric[i]}",
            "advertised-address": fabric[i],
            # At most one node of a cluster may provision it.
            "auto-provision": i == 0,
            "disable-telemetry": True,
            "shutdown-timeout": "5s",
        }
        sections: dict[str, dict[str, object]] = {
            "admin": {"bind-address": f"{LOOPBACK}:{self.admin_ports[i]}"},
            "ingress": {"bind-address": f"{LOOPBACK}:{self.ingress_ports[i]}"},
        }
        if self.count > 1:
            top["default-replication"] = 2
            sections["bifrost"] = {"default-provider": "replicated"}
            sections["metadata-server"] = {"type": "replicated"}
            sections["metadata-client"] = {"addresses": fabric}
        lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
        for name, values in sections.items():
            lines += ["", f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in values.items())]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> RestateNodes:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _log(self, i: int) -> Path:
        return self.base_dir / self._name(i) / "server.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
        for i in range(self.count):
            node_dir = self.base_dir / self._name(i)
            node_dir.mkdir(parents=True, exist_ok=True)
            config = node_dir / "restate.toml"
            config.write_text(self.config(i))
            with open(self._log(i), "ab") as log:
                self._procs.append(
                    subprocess.Popen(
                        [str(self.binary), "--no-logo", "--config-file", str(config)],
                        cwd=node_dir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + START_TIMEOUT_S
        for i in range(self.count):
            while not self._healthy(i):
                proc = self._procs[i]
                if proc.poll() is not None:
                    raise BenchError(
                        f"restate-server {self._name(i)} exited with {proc.returncode}; last lines of "
                        f"{self._log(i)}:\n{tail(self._log(i))}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"restate-server {self._name(i)} not healthy after {START_TIMEOUT_S:.0f}s; last "
                        f"lines of {self._log(i)}:\n{tail(self._log(i))}"
                    )
                time.sleep(0.1)

    def _healthy(self, i: int) -> bool:
        for port, path in ((self.admin_ports[i], "/health"), (self.ingress_ports[i], "/restate/health")):
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=1) as resp:
                    if resp.status != 200:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def pids(self) -> list[int]:
        """The nodes' processes (and any children), for CPU accounting."""
        return descendants([p.pid for p in self._procs if p.poll() is None])

    def stop(self) -> None:
        """SIGTERM every node, SIGKILL what is left after the timeout; only our own children."""
        live = [p for p in self._procs if p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._procs.clear()

"""Serve an ASGI app (an official-SDK service, or a plain test app) with hypercorn in a subprocess.

hypercorn answers HTTP/1.1 and h2c with prior knowledge on the same loopback port, as a real
SDK deployment does. Its config is written to a TOML file: ``workers = 0`` so the pid we hold
is the server itself (with workers hypercorn forks a child that would outlive a SIGKILL of
the parent), and ``keep_alive_max_requests`` raised, because hypercorn closes an HTTP/2
connection with GOAWAY after that many requests (pass a small value to test exactly that).

Stopping is by pid: SIGINT, then SIGKILL. restate-sdk 1.3.0 takes over SIGTERM, so SIGTERM
may not stop an SDK server.

    def test_x(asgi_servers):
        server = asgi_servers.start("tests.sdk_services.greeter:app")
        ... server.port ...

Also usable outside pytest (``bench/transport.py``): ``AsgiServer(...).start()`` / ``.stop()``.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.ports import free_ports
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
HIGH_KEEP_ALIVE_MAX_REQUESTS = 1_000_000_000
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


@dataclass
class AsgiServer:
    """One hypercorn process serving ``app`` ("module:attribute") on ``port``."""

    app: str
    port: int
    workdir: Path
    keep_alive_max_requests: int = HIGH_KEEP_ALIVE_MAX_REQUESTS
    h2_max_concurrent_streams: int = 100
    keep_alive_timeout_s: float = 5.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"hypercorn-{self.port}.log"

    def config_text(self) -> str:
        return "\n".join(
            [
                f'bind = ["{LOOPBACK}:{self.port}"]',
                "workers = 0",
                f"keep_alive_max_requests = {self.keep_alive_max_requests}",
                f"h2_max_concurrent_streams = {self.h2_max_concurrent_streams}",
                f"keep_alive_timeout = {self.keep_alive_timeout_s}",
                "graceful_timeout = 1.0",
                "",
            ]
        )

    def start(self) -> AsgiServer:
        """Spawn hypercorn and return once it answers HTTP on its port."""
        if self.running:
            raise RuntimeError(f"hypercorn for {self.app} is already running (pid {self.proc.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"hypercorn-{self.port}.toml"
        config.write_text(self.config_text())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hypercorn", "-c", str(config), self.app],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: self._exited() or self._answers(),
            START_TIMEOUT_S,
            f"hypercorn serving {self.app} on port {self.port}",
        )
        if self._exited():
            assert self.proc is not None
            raise RuntimeError(f"hypercorn for {self.app} exited with {self.proc.returncode}; see {self.log}")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=1)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status > 0
        finally:
            conn.close()

    def kill(self) -> None:
        """SIGKILL, as a crash: the kernel closes its sockets, nothing is said on them."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=STOP_GRACE_S)

    def stop(self) -> None:
        """SIGINT (graceful), then SIGKILL if it is still there after a grace period."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_GRACE_S)


class AsgiServers:
    """Starts servers on free loopback ports and stops every one of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[AsgiServer] = []

    def start(self, app: str, **options: object) -> AsgiServer:
        (port,) = free_ports(1)
        server = AsgiServer(app, port, self.workdir, **options)  # type: ignore[arg-type]
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def _servers(workdir: Path) -> Iterator[AsgiServers]:
    servers = AsgiServers(workdir)
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture
def asgi_servers(tmp_path: Path) -> Iterator[AsgiServers]:
    yield from _servers(tmp_path)


@pytest.fixture(scope="module")
def module_asgi_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsgiServers]:
    """Servers shared by a test module, for tests that only read from them."""
    yield from _servers(tmp_path_factory.mktemp("asgi"))


def scratch_dir() -> Path:
    """A working directory for servers started outside pytest (benchmarks)."""
    return Path(tempfile.mkdtemp(prefix="durastate-asgi-"))

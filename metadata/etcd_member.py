"""Supervise one etcd member process: the node's own replica of the metadata cluster.

The member runs under ``setpriv --pdeathsig KILL`` and in the node's process group: stopping the
node's group stops etcd, and if the node is SIGKILLed the kernel kills etcd too (an orphaned
member would keep its ports and data directory locked). Parent-death is tied to the *thread*
that spawned the child, so ``start()`` spawns from the event loop's own thread, never from a
worker thread that may exit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import aetcd
import aetcd.exceptions
import grpc

from metadata.errors import EtcdMemberError
from node.ports import LOOPBACK

CLUSTER_TOKEN: Final = "durastate"

_HEALTH_POLL_S: Final = 0.05
_LOG_TAIL_LINES: Final = 30


class EtcdMember:
    """One etcd member: start it, wait until it serves, stop it.

    ``initial_cluster`` maps every member's name to its peer URL (``http://host:peer_port``) and
    must contain this member. The first start on an empty ``data_dir`` bootstraps with
    ``--initial-cluster-state new``; once ``data_dir/member`` exists the member rejoins with
    ``existing``. Output goes to ``log_path`` (default ``<data_dir>.log`` next to the data dir),
    appended across restarts.
    """

    def __init__(
        self,
        name: str,
        data_dir: Path,
        client_port: int,
        peer_port: int,
        initial_cluster: Mapping[str, str],
        host: str = LOOPBACK,
        log_path: Path | None = None,
        *,
        etcd_binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if name not in initial_cluster:
            raise ValueError(f"initial_cluster {dict(initial_cluster)} does not name this member {name!r}")
        self._name = name
        self._data_dir = Path(data_dir)
        self._host = host
        self._client_port = client_port
        self._peer_port = peer_port
        if initial_cluster[name] != self.peer_url:
            raise ValueError(
                f"initial_cluster gives {name!r} the peer URL {initial_cluster[name]!r}, "
                f"but this member listens on {self.peer_url!r}"
            )
        self._initial_cluster = dict(initial_cluster)
        self._log_path = (
            Path(log_path) if log_path is not None else self._data_dir.with_name(self._data_dir.name + ".log")
        )
        self._etcd_binary = etcd_binary
        self._extra_args = list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._rejoined = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id of the running (or last, not yet reaped) member, ``None`` before start."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def client_endpoint(self) -> str:
        """``host:port`` for ``EtcdMetadataStore``."""
        return f"{_url_host(self._host)}:{self._client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.client_endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://{_url_host(self._host)}:{self._peer_port}"

    @property
    def initial_cluster_state(self) -> str:
        """The ``--initial-cluster-state`` the next start uses: ``existing`` once data exists, or
        after ``rejoin_if_wiped`` re-added this member to a running cluster."""
        return "existing" if self._rejoined or (self._data_dir / "member").exists() else "new"

    @property
    def has_data(self) -> bool:
        return (self._data_dir / "member").exists()

    def ran_before(self) -> bool:
        """Whether this member was started before: its log (kept beside the data dir) says so."""
        try:
            with open(self._log_path, "rb") as f:
                return b"--- starting:" in f.read(4096)
        except OSError:
            return False

    async def rejoin_if_wiped(self, peers: Sequence[str], timeout_s: float) -> bool:
        """Re-add this member when its data directory is gone but the cluster knows it.

        etcd refuses a member that lost its data ("already bootstrapped") and panics if retried,
        because its peers remember its old identity. The fix is etcd's documented procedure:
        remove the member through a peer, add it again under the same peer URL, and start it
        empty with ``--initial-cluster-state existing``. A member that never started (a fresh
        cluster's first boot) needs none of this. ``peers``: client endpoints ("host:port") of
        the other members. Returns True when it re-added the member.
        """
        if self.has_data or not peers:
            return False
        last: BaseException | None = None
        # Only insist on reaching a peer when this member certainly ran before; on a first boot
        # the peers may all be starting too, and a short look is enough.
        deadline = asyncio.get_running_loop().time() + (timeout_s if self.ran_before() else 3.0)
        while True:
            for endpoint in peers:
                try:
                    if await _readd(
                        endpoint, self._name, self.peer_url, self.ran_before(), self._apply_members
                    ):
                        shutil.rmtree(self._data_dir, ignore_errors=True)
                        self._rejoined = True
                        return True
                    return False
                except (OSError, TimeoutError, aetcd.exceptions.ClientError, grpc.RpcError) as error:
                    last = error
            if asyncio.get_running_loop().time() > deadline:
                if self.ran_before():
                    raise EtcdMemberError(
                        f"etcd member {self._name} lost its data and no peer of {list(peers)} answered "
                        f"to re-add it ({last!r}); start the other nodes first"
                    )
                return False
            await asyncio.sleep(0.5)

    def _apply_members(self, members: dict[str, str]) -> None:
        self._initial_cluster = members

    def command(self) -> list[str]:
        """The full command line the next ``start()`` runs."""
        etcd = self._etcd_binary or shutil.which("etcd") or "/usr/bin/etcd"
        setpriv = shutil.which("setpriv")
        # Without setpriv (not Linux util-linux) the member still runs; only the parent-death
        # safety net is missing.
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        cluster = ",".join(f"{name}={url}" for name, url in self._initial_cluster.items())
        return [
            *prefix,
            etcd,
            "--name", self._name,
            "--data-dir", str(self._data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", cluster,
            "--initial-cluster-token", CLUSTER_TOKEN,
            "--initial-cluster-state", self.initial_cluster_state,
            "--logger", "zap",
            "--log-outputs", "stderr",
            *self._extra_args,
        ]  # fmt: skip

    async def start(self) -> None:
        """Spawn the member and return at once; ``wait_healthy`` tells when it serves."""
        if self.running:
            raise EtcdMemberError(f"etcd member {self._name} is already running (pid {self.pid})")
        self._data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._data_dir.chmod(0o700)  # etcd warns about (and 3.5 refuses) a group-readable data dir
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command()
        # ETCD_* variables would silently override or contradict the flags above.
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("ETCD_") or k == "ETCD_UNSUPPORTED_ARCH"
        }
        with open(self._log_path, "ab") as log:
            log.write(f"--- starting: {' '.join(command)}\n".encode())
            log.flush()
            try:
                # Spawned here, on the loop's thread, on purpose (see the module docstring); no
                # start_new_session, so the member stays in the node's process group.
                self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            except OSError as error:
                raise EtcdMemberError(f"cannot start etcd member {self._name}: {error}") from error

    async def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Poll ``/health`` on the client port until the member serves, else raise with the log tail.

        A member of a multi-member cluster is healthy only once a quorum is up and has a leader:
        start every member before waiting on any of them.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last_problem = "no answer yet"
        while True:
            process = self._process
            if process is None:
                raise EtcdMemberError(f"etcd member {self._name} was never started")
            returncode = process.poll()
            if returncode is not None:
                raise EtcdMemberError(
                    f"etcd member {self._name} exited with status {returncode} before becoming healthy; "
                    f"log {self._log_path}:\n{self.log_tail()}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise EtcdMemberError(
                    f"etcd member {self._name} not healthy after {timeout_s}s ({last_problem}); "
                    f"log {self._log_path}:\n{self.log_tail()}"
                )
            try:
                if await _health_ok(self._host, self._client_port, min(remaining, 1.0)):
                    return
                last_problem = "/health reports unhealthy"
            except (OSError, TimeoutError) as error:
                last_problem = f"/health unreachable: {error!r}"
            await asyncio.sleep(min(_HEALTH_POLL_S, max(deadline - loop.time(), 0)))

    async def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; reap and return the exit status."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            _signal(process, signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
        return await asyncio.to_thread(process.wait)

    async def kill(self) -> int | None:
        """SIGKILL at once (a crash, for tests and for a wedged member); reap."""
        process = self._process
        if process is None:
            return None
        _signal(process, signal.SIGKILL)
        return await asyncio.to_thread(process.wait)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError as error:
            return f"(log unreadable: {error})"
        return "\n".join(text.splitlines()[-lines:])


async def _readd(
    endpoint: str, name: str, peer_url: str, ran_before: bool, apply_members: Callable[[dict[str, str]], None]
) -> bool:
    """Through the member at ``endpoint``: if this member (``peer_url``) has run before, remove it
    (if still listed) and add it back; give the resulting membership (name -> peer URL) to
    ``apply_members``."""
    host, port = endpoint.rsplit(":", 1)
    # Membership changes go through raft: give them longer than a read.
    async with aetcd.Client(host=host.strip("[]"), port=int(port), timeout=10.0) as client:
        current = [m async for m in client.members()]
        mine = next((m for m in current if peer_url in m.peer_urls), None)
        # A member that has run published its client URLs (kept in the cluster's membership); one
        # from the initial cluster that never started has none yet: a first boot, nothing to repair.
        if mine is not None and not mine.client_urls and not ran_before:
            return False
        if mine is not None and not mine.client_urls:
            # Re-added by an earlier attempt of ours that failed before the member started.
            apply_members({m.name or name: m.peer_urls[0] for m in current})
            return True
        # Not listed: either it never was (a misconfiguration etcd will report itself), or an
        # earlier attempt of ours removed it before failing: add it back only in that case.
        if mine is None and not ran_before:
            return False
        if mine is not None:
            await client.remove_member(mine.id)
        await client.add_member([peer_url])
        apply_members({m.name or name: m.peer_urls[0] async for m in client.members()})
        return True


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass  # already gone; wait() reaps it


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _health_ok(host: str, port: int, timeout_s: float) -> bool:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        request = f"GET /health HTTP/1.1\r\nHost: {_url_host(host)}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("ascii"))
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    status_line = response.split(b"\r\n", 1)[0]
    # Searching the body (not parsing it) stays correct whatever transfer encoding Go picks.
    return b" 200 " in status_line and b'"health":"true"' in response

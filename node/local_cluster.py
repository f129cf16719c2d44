"""A local cluster under one base dir: N node processes on loopback, each with its etcd member.

Layout: ``BASE/cluster.json`` lists the nodes and their ports; ``BASE/cluster.secret`` is the
cluster secret (mode 0600) every node's ``node.toml`` points at; ``BASE/<node>/`` is that node's
base dir with ``node.toml``, ``node.pid`` and ``node.log``. Loading a cluster makes its secret the
one this process's clients use for its nodes' addresses (node/secret.py). Each node runs in its own process group
(its pid is the group id) and its etcd member stays in that group, so signalling the group reaches
both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from node import secret
from node.config import ROLES, BifrostConfig, MetadataConfig, NodeConfig, SecurityConfig
from node.ports import LOOPBACK, PORTS_PER_NODE, Ports, free_ports, port_in_use, ports_for_node

CLUSTER_FILE = "cluster.json"
HEALTH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class ClusterError(Exception):
    """An operational failure of the local cluster; the message names the node and the cause."""


@dataclass(frozen=True, slots=True)
class ClusterNode:
    name: str
    ports: Ports
    base_dir: Path

    @property
    def config_path(self) -> Path:
        return self.base_dir / "node.toml"

    @property
    def pid_path(self) -> Path:
        return self.base_dir / "node.pid"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "node.log"

    @property
    def grpc_address(self) -> str:
        return f"{LOOPBACK}:{self.ports.node}"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[1] == pgid and stat[0] != "Z":
                pids.append(int(entry.name))
    return pids


def _gone(pid: int) -> bool:
    """True once no thread of ``pid`` runs any more. A thread group's leader shows state Z as soon
    as its own thread exits, while its other threads may still be exiting and holding the
    process's sockets: only when every task under /proc/<pid>/task is a zombie (or the process
    was reaped) are its ports free."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for tid in tasks:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if raw[raw.rindex(")") + 2 :].split()[0] != "Z":
            return False
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie (no-op otherwise)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _running(pids: list[int]) -> list[int]:
    return [p for p in pids if not _gone(p)]


def wait_exec(proc: subprocess.Popen[bytes], marker: bytes, timeout_s: float) -> None:
    """Return once the started process's command line shows ``marker`` (or it exited).

    Popen returns as soon as the exec closed its error pipe, a moment before the kernel has set
    up the new program's arguments: until then /proc/<pid>/cmdline reads empty (most reads right
    after Popen, on a busy machine), and a check against pid reuse would take the starting
    process for another one."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if marker in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                return
        except OSError:
            return  # gone: whoever looks next will see that
        time.sleep(0.001)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalCluster:
    def __init__(self, base_dir: Path, nodes: list[ClusterNode], roles: tuple[str, ...] = ROLES) -> None:
        self.base_dir = base_dir
        self.nodes = nodes
        self.roles = roles

    @property
    def secret_path(self) -> Path:
        return self.base_dir / secret.SECRET_FILE

    @property
    def secret(self) -> bytes:
        try:
            return secret.read_file(self.secret_path)
        except secret.SecretError as e:
            raise ClusterError(str(e)) from None

    def _remember_secret(self) -> None:
        secret.remember([n.grpc_address for n in self.nodes], self.secret)

    def ensure_secret(self) -> None:
        """Give a cluster made before secrets existed one, and point its nodes' configs at it."""
        if self.secret_path.exists():
            return
        secret.generate_file(self.secret_path)
        for node in self.nodes:
            node.config_path.write_text(self.node_config(node).to_toml())
        self._remember_secret()

    # ---- layout ----------------------------------------------------------------------------

    @classmethod
    def create(
        cls, base_dir: Path, count: int, use_free_ports: bool, roles: tuple[str, ...] = ROLES
    ) -> LocalCluster:
        if count < 1:
            raise ValueError("--nodes must be at least 1")
        base_dir = base_dir.absolute()
        nodes = []
        # All ports in one draw, so no two nodes of the cluster can be handed the same port.
        drawn = free_ports(count * PORTS_PER_NODE) if use_free_ports else []
        for i in range(1, count + 1):
            if use_free_ports:
                ports = Ports(*drawn[(i - 1) * PORTS_PER_NODE : i * PORTS_PER_NODE])
            else:
                ports = ports_for_node(i)
            nodes.append(ClusterNode(f"n{i}", ports, base_dir / f"n{i}"))
        cluster = cls(base_dir, nodes, roles)
        secret.generate_file(cluster.secret_path)
        for node in nodes:
            node.base_dir.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(cluster.node_config(node).to_toml())
        (base_dir / CLUSTER_FILE).write_text(
            json.dumps(
                {
                    "nodes": [{"name": n.name, "ports": n.ports.as_dict()} for n in nodes],
                    "roles": list(roles),
                },
                indent=2,
            )
        )
        cluster._remember_secret()
        return cluster

    @classmethod
    def load(cls, base_dir: Path) -> LocalCluster:
        base_dir = base_dir.absolute()
        path = base_dir / CLUSTER_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClusterError(f"no local cluster in {base_dir} (run `durastate cluster up`)") from None
        nodes = [ClusterNode(n["name"], Ports(**n["ports"]), base_dir / n["name"]) for n in data["nodes"]]
        cluster = cls(base_dir, nodes, tuple(data.get("roles", ROLES)))
        if cluster.secret_path.exists():
            cluster._remember_secret()
        return cluster

    @classmethod
    def exists(cls, base_dir: Path) -> bool:
        return (base_dir / CLUSTER_FILE).exists()

    def node(self, name: str) -> ClusterNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"no node {name!r}; nodes are {', '.join(n.name for n in self.nodes)}")

    def node_config(self, node: ClusterNode) -> NodeConfig:
        return NodeConfig(
            node_name=node.name,
            base_dir=node.base_dir,
            roles=self.roles,
            address=LOOPBACK,
            ports=node.ports,
            metadata=MetadataConfig(
                backend="etcd",
                etcd_initial_cluster={n.name: f"http://{LOOPBACK}:{n.ports.etcd_peer}" for n in self.nodes},
                etcd_endpoints=[f"{LOOPBACK}:{n.ports.etcd_client}" for n in self.nodes],
            ),
            # Replication 2 tolerates one failed node among three (2R-1), Restate's advice too.
            bifrost=BifrostConfig(replication=min(2, len(self.nodes))),
            security=SecurityConfig(secret_file=self.secret_path),
        )

    # ---- processes -------------------------------------------------------------------------

    def pid(self, node: ClusterNode) -> int | None:
        try:
            return int(node.pid_path.read_text())
        except (OSError, ValueError):
            return None

    def alive(self, node: ClusterNode) -> bool:
        pid = self.pid(node)
        if pid is None:
            return False
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            return False
        # Guard against pid reuse: the process must be this node's server.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(node.config_path).encode() in cmdline

    def spawn(self, node: ClusterNode) -> int:
        if self.alive(node):
            raise ClusterError(f"node {node.name} is already running (pid {self.pid(node)})")
        self._wait_ports_free(node)
        with open(node.log_path, "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "server", "--config", str(node.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("DURASTATE_")},
            )
        node.pid_path.write_text(str(proc.pid))
        wait_exec(proc, str(node.config_path).encode(), STOP_TIMEOUT_S)
        return proc.pid

    def wait_healthy(self, nodes: list[ClusterNode], timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(nodes)
        while pending:
            for node in list(pending):
                if not self.alive(node):
                    raise ClusterError(
                        f"node {node.name} exited during start; last lines of {node.log_path}:\n{tail(node.log_path)}"
                    )
                if _healthy(node):
                    pending.remove(node)
            if pending and time.monotonic() > deadline:
                node = pending[0]
                raise ClusterError(
                    f"node {node.name} not healthy after {timeout_s:.0f}s; last lines of {node.log_path}:\n"
                    f"{tail(node.log_path)}"
                )
            if pending:
                time.sleep(0.2)

    def processes(self, node: ClusterNode) -> list[int]:
        """The node's live processes (server and etcd member): members of its process group whose
        command line names its base dir. A pid, and so a group id, may be reused by another
        program (or another test run's node) once ours died: never signal by group id alone."""
        pid = self.pid(node)
        if pid is None:
            return []
        mine = []
        marker = str(node.base_dir).encode()
        for member in group_members(pid):
            try:
                if marker in Path(f"/proc/{member}/cmdline").read_bytes():
                    mine.append(member)
            except OSError:
                continue
        return mine

    def _kill(self, pids: list[int], sig: signal.Signals) -> None:
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def signal(self, node: ClusterNode, sig: signal.Signals) -> None:
        if not self.alive(node):
            raise ClusterError(f"node {node.name} is not running")
        self._kill(self.processes(node), sig)

    def kill(self, node: ClusterNode, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGKILL the node's processes (its etcd member too, even if the server already died)
        and wait until they are gone."""
        pids = self.processes(node)
        self._kill(pids, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _running(pids):
            if time.monotonic() > deadline:
                raise ClusterError(f"node {node.name}: processes {_running(pids)} survived SIGKILL")
            time.sleep(0.02)

    def _wait_ports_free(self, node: ClusterNode, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """A restarted node must bind the ports its previous process held: wait until the kernel
        has let go of them (the old process fully exited), and name the port if it never does."""
        deadline = time.monotonic() + timeout_s
        while True:
            busy = [(name, port) for name, port in node.ports.as_dict().items() if port_in_use(port)]
            if not busy:
                return
            if time.monotonic() > deadline:
                name, port = busy[0]
                raise ClusterError(f"node {node.name}: port {name}={port} is still in use; cannot start it")
            time.sleep(0.02)

    def stop(self, node: ClusterNode, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the node's processes, then SIGKILL what is left after the timeout."""
        pids = self.processes(node)
        if pids:
            self._kill(pids, signal.SIGCONT)  # a paused node cannot act on SIGTERM
            self._kill(pids, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _running(pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._kill(_running(pids), signal.SIGKILL)
            while _running(pids):
                time.sleep(0.02)
        node.pid_path.unlink(missing_ok=True)


def _healthy(node: ClusterNode) -> bool:
    """Serving: /health answers 200, or 503 "degraded" (up, with something to repair)."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{node.ports.admin}/health", timeout=1) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as e:
        try:
            return e.code == 503 and json.loads(e.read()).get("status") == "degraded"
        except ValueError:
            return False
    except OSError:
        return False

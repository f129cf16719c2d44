"""A local cluster for benchmarks: real node processes on loopback, stopped by pid however the
run ends, plus what a benchmark reads from outside the nodes (chains, addresses, CPU, peak RSS)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from bifrost.chain_store import chain_key
from bifrost.core import Chain
from bifrost.core._types import GenerationalNodeId
from metadata import Precondition, PreconditionFailed, PreconditionKind, Versioned
from metadata.records import NODES_CONFIG_KEY, NodeConfig, NodesConfig, decode, register_node
from node.client import LogClient, NodeClient, NodeUnreachable, VersionMismatch
from node.config import LOG_ONLY_ROLES
from node.local_cluster import ClusterError, ClusterNode, LocalCluster, group_members

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    comm: str
    peak_rss_mb: float
    cpu_s: float


def process_info(pid: int) -> ProcessInfo | None:
    """Peak RSS (VmHWM) and CPU time (user + system) of a live process, None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    hwm_kb = int(fields.get("VmHWM", "0 kB").split()[0])
    # comm may hold spaces and parentheses: the numeric fields start after the last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(rest[11]) + int(rest[12])) / _CLK_TCK
    return ProcessInfo(pid, comm, hwm_kb / 1024, cpu_s)


def descendants(roots: list[int]) -> list[int]:
    """The live processes of ``roots`` and of all their children, grandchildren, ..."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_s(pids: list[int]) -> float:
    """CPU time (user + system) of those of ``pids`` that are still alive."""
    return sum(info.cpu_s for pid in pids if (info := process_info(pid)) is not None)


def machine_busy_s() -> float:
    """CPU time every core of the machine spent busy since boot (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / _CLK_TCK


class BenchCluster:
    """``count`` nodes under ``base_dir`` with free ports; every node is stopped on exit, and
    exit fails loudly if any process of any node's group is still alive afterwards."""

    def __init__(
        self,
        base_dir: Path,
        count: int,
        replication: int,
        num_logs: int,
        roles: tuple[str, ...] = LOG_ONLY_ROLES,
    ) -> None:
        if not 1 <= replication <= count:
            raise ValueError(f"replication {replication} impossible with {count} node(s)")
        self.cluster = LocalCluster.create(base_dir, count, use_free_ports=True, roles=roles)
        # The first node to start provisions the logs, so every node file carries the same values.
        for node in self.cluster.nodes:
            cfg = self.cluster.node_config(node)
            cfg = replace(cfg, bifrost=replace(cfg.bifrost, num_logs=num_logs, replication=replication))
            node.config_path.write_text(cfg.to_toml())
        self._spawned: set[int] = set()

    @property
    def nodes(self) -> list[ClusterNode]:
        return self.cluster.nodes

    def __enter__(self) -> BenchCluster:
        try:
            self.start(self.nodes)
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, nodes: list[ClusterNode]) -> None:
        for node in nodes:
            self._spawned.add(self.cluster.spawn(node))
        self.cluster.wait_healthy(nodes)

    def stop_all(self) -> None:
        for node in self.nodes:
            self.cluster.stop(node)
        # Every group ever spawned (a killed and restarted node has two), not only current pid
        # files; only processes of this cluster count (a group id may be reused by others).
        marker = str(self.cluster.base_dir).encode()
        left = {pgid: [p for p in group_members(pgid) if marker in _cmdline(p)] for pgid in self._spawned}
        left = {pgid: pids for pgid, pids in left.items() if pids}
        if left:
            raise ClusterError(f"processes left behind after stopping the cluster: {left}")

    # --- what the nodes expose ---

    def client(self, node: ClusterNode) -> NodeClient:
        return NodeClient(node.grpc_address)

    def nodes_config(self, via: ClusterNode) -> NodesConfig:
        with self.client(via) as client:
            found = client.get(NODES_CONFIG_KEY)
        if found is None:
            raise ClusterError(f"no nodes config in the metadata store (asked {via.name})")
        return decode(NodesConfig, found.value)

    def chain(self, via: ClusterNode, log_id: int) -> Chain | None:
        with self.client(via) as client:
            found = client.get(chain_key(log_id))
        return None if found is None else decode(Chain, found.value)

    def ensure_log(self, via: ClusterNode, log_id: int, timeout_s: float = 30.0) -> Chain:
        """The log's chain, creating its first segment (sequenced by ``via``) with one append
        through ``via`` when it has none yet."""
        chain = self.chain(via, log_id)
        if chain is not None and chain.tail.params is not None:
            return chain
        deadline = time.monotonic() + timeout_s
        with self.client(via) as client:
            while True:
                try:
                    LogClient(client, timeout_s=timeout_s).append(log_id, [b"bench: create log"])
                    break
                except NodeUnreachable:
                    # Right after start the peers' failure detectors may not have met yet.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        chain = self.chain(via, log_id)
        if chain is None or chain.tail.params is None:
            raise ClusterError(f"log {log_id} has no writable segment after an append through {via.name}")
        return chain

    def node_by_id(self, via: ClusterNode, node_id: int) -> ClusterNode:
        for name, rec in self.nodes_config(via).nodes.items():
            if rec.node_id == node_id:
                return self.cluster.node(name)
        raise ClusterError(f"no node with id {node_id} in the nodes config")

    def metadata_leader(self, via: ClusterNode) -> str | None:
        try:
            with NodeClient(via.grpc_address, timeout_s=3.0) as client:
                return client.node_info().metadata_leader or None
        except NodeUnreachable:
            return None

    def processes(self, node: ClusterNode) -> list[ProcessInfo]:
        """The node's process first, then the rest of its group (its etcd member)."""
        pid = self.cluster.pid(node)
        if pid is None or not self.cluster.alive(node):
            return []
        infos = [info for p in self.cluster.processes(node) if (info := process_info(p)) is not None]
        return sorted(infos, key=lambda i: i.pid != pid)


class _StoreThroughNode:
    """Just enough of MetadataStore, over a node's gRPC client, for ``register_node``."""

    def __init__(self, client: NodeClient) -> None:
        self._client = client

    async def get(self, key: str) -> Versioned | None:
        found = self._client.get(key)
        return None if found is None else Versioned(found.value, found.version)

    async def put(self, key: str, value: bytes, precondition: Precondition) -> int:
        try:
            return self._client.put(
                key,
                value,
                expect_version=precondition.version,
                must_not_exist=precondition.kind is PreconditionKind.DOES_NOT_EXIST,
                force=True,
            )
        except VersionMismatch as e:
            raise PreconditionFailed(e.current_version) from None


def register_member(bc: BenchCluster, via: ClusterNode, name: str) -> GenerationalNodeId:
    """Enter a role-less member in the nodes config, as every process that speaks on the data
    port must be (a benchmark's appender); its identity, a new generation at each call."""
    with bc.client(via) as client:
        cluster_name = client.node_info().cluster_name
        record = NodeConfig(name=name, generation=0, roles=[], address="127.0.0.1", ports={})
        generation = asyncio.run(register_node(_StoreThroughNode(client), record, cluster_name))  # type: ignore[arg-type]
    return GenerationalNodeId(bc.nodes_config(via).nodes[name].node_id, generation)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""

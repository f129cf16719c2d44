"""Nemeses: faults applied to a running LocalCluster, each with a begin and an end.

Process faults need nothing but signals to a node's process group (the node and its etcd
member share it, see node/local_cluster.py): kill -9 and restart, SIGSTOP/SIGCONT, kill all
and restart all. Slow disk writes a test hook file that makes every sync of one node's log-server 300 ms slower
(heartbeats and other logs must go on: the fsync runs off the event loop). Wipe is kill -9, then
the node's stores (log-server and etcd member data)
are deleted before it restarts: an operator replacing a disk. It wipes only when every node
is whole (not still rebuilding from an earlier wipe): two overlapping wipes are two lost
copies, beyond what replication 2 tolerates; otherwise it is a plain kill, and says so. Network faults need `chaos.netfault` (private netns, cgroups, iptables) and,
for latency, `chaos.proxy` listeners that node-to-node data connections are routed through.
When those are unavailable, `Nemeses.unavailable(name)` gives the reason and the harness
skips the nemesis (reported as skipped, never as passed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import shutil
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass

from chaos.netfault import NetFaults
from chaos.proxy import FaultProxyServer
from chaos.schedule import (
    KILL_RANDOM,
    KILL_SEQUENCER,
    LATENCY,
    PARTITION_RANDOM,
    PARTITION_SEQUENCER,
    PAUSE,
    RESTART_ALL,
    SLOW_DISK,
    SLOW_LOG_SERVER,
    WIPE,
    Fault,
)
from node.client import LogClient, NodeClient
from node.local_cluster import ClusterNode, LocalCluster
from node.log_role import slow_fsync_file

log = logging.getLogger(__name__)

KILL_WAIT_S = 10.0
# Latency nemesis: every node-to-node data connection, both directions.
LATENCY_MS, JITTER_MS = 40, 30
# Slow log-server: the answers of one node's log-server come late.
SLOW_LATENCY_MS, SLOW_JITTER_MS = 400, 200

PARTITIONS = frozenset({PARTITION_RANDOM, PARTITION_SEQUENCER})
# Slow disk: every sync of one node's log-server takes this much longer (a test hook).
SLOW_FSYNC_MS = 300
# What a wipe deletes: the node's durable stores (its config and logs stay).
WIPED_STORES = ("log-server", "etcd")
PROXIED = frozenset({LATENCY, SLOW_LOG_SERVER})


class ProxyThread:
    """A `FaultProxyServer` on its own event loop thread, driven through its HTTP API."""

    def __init__(self, seed: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = FaultProxyServer("127.0.0.1", 0, rng=random.Random(seed))
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _api(self, method: str, path: str, body: object | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self._server.port}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def create(self, name: str, upstream_port: int) -> int:
        """A proxy to 127.0.0.1:upstream_port; returns its listening port."""
        proxy = self._api("POST", "/proxies", {"name": name, "upstream": f"127.0.0.1:{upstream_port}"})
        assert isinstance(proxy, dict)
        return int(str(proxy["listen"]).rsplit(":", 1)[1])

    def add_latency(self, name: str, toxic: str, stream: str, latency_ms: int, jitter_ms: int) -> None:
        self._api(
            "POST",
            f"/proxies/{name}/toxics",
            {"name": toxic, "type": "latency", "stream": stream, "toxicity": 1.0,
             "attributes": {"latency": latency_ms, "jitter": jitter_ms}},
        )  # fmt: skip

    def remove(self, name: str, toxic: str) -> None:
        try:
            self._api("DELETE", f"/proxies/{name}/toxics/{toxic}")
        except OSError:
            pass  # already gone

    def reset(self) -> None:
        self._api("POST", "/reset")


@dataclass
class Active:
    """A fault in progress: what `end` must undo."""

    fault: Fault
    target: str  # the node it hit, or "all"
    started_at: float


class Nemeses:
    def __init__(
        self, cluster: LocalCluster, rng: random.Random, net: NetFaults | None, proxy: ProxyThread | None
    ) -> None:
        self.cluster = cluster
        self._rng = rng
        self.net = net
        self.proxy = proxy
        self._paused: set[str] = set()
        self._isolated: set[str] = set()
        self._toxics: list[tuple[str, str]] = []
        self._down: set[str] = set()
        self._slow: set[str] = set()

    # ---- capabilities ----------------------------------------------------------------------

    def unavailable(self, nemesis: str) -> str | None:
        """Why ``nemesis`` cannot run here, or None."""
        if nemesis in PARTITIONS:
            if self.net is None or self.net.reason is not None:
                return self.net.reason if self.net is not None else "network faults disabled"
        if nemesis in PROXIED:
            if self.net is None or self.net.nat_reason is not None or self.proxy is None:
                reason = self.net.nat_reason if self.net is not None else None
                return reason or "node-to-node traffic cannot be routed through a proxy here"
        return None

    # ---- process control -------------------------------------------------------------------

    def spawn(self, node: ClusterNode) -> None:
        pid = self.cluster.spawn(node)
        # Into its cgroup at once, before it forks etcd or opens connections: both inherit it.
        if self.net is not None:
            self.net.adopt(node.name, [pid])
        self._down.discard(node.name)

    def _kill(self, node: ClusterNode) -> None:
        """SIGKILL the node's whole group (its etcd member too) and wait until it is gone."""
        self.cluster.kill(node)
        self._paused.discard(node.name)  # SIGKILL works on a stopped process too
        self._down.add(node.name)

    def _all_whole(self) -> bool:
        """Every node answers /health "ok": none is rebuilding lost data, none is down."""
        for node in self.cluster.nodes:
            try:
                url = f"http://127.0.0.1:{node.ports.admin}/health"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if json.loads(resp.read()).get("status") != "ok":
                        return False
            except (OSError, ValueError):
                return False
        return True

    def sequencer_of(self, log_id: int) -> ClusterNode:
        """The node sequencing the tail segment of a log, asked of any live node."""
        for node in self._rng.sample(self.cluster.nodes, len(self.cluster.nodes)):
            if node.name in self._down or node.name in self._paused or not self.cluster.alive(node):
                continue
            try:
                with NodeClient(node.grpc_address, timeout_s=2.0) as client:
                    chain = LogClient(client, timeout_s=2.0).chain(log_id)
                if chain.segments:
                    return self.cluster.node(chain.segments[-1].sequencer)
            except Exception as e:  # any failure: ask the next node
                log.info("chain lookup failed on %s: %r", node.name, e)
        return self._rng.choice(self.cluster.nodes)

    def _resolve(self, fault: Fault) -> ClusterNode | None:
        if fault.target == "all":
            return None
        if fault.target.startswith("sequencer:log"):
            return self.sequencer_of(int(fault.target.removeprefix("sequencer:log")))
        return self.cluster.node(fault.target)

    def _peer_ports(self, node: ClusterNode) -> list[int]:
        return [node.ports.data, node.ports.etcd_client, node.ports.etcd_peer]

    # ---- faults ----------------------------------------------------------------------------

    def begin(self, fault: Fault) -> Active:
        node = self._resolve(fault)
        target = node.name if node is not None else "all"
        match fault.nemesis:
            case "kill-random" | "kill-sequencer":
                assert node is not None
                self._kill(node)
            case "wipe":
                assert node is not None
                whole = self._all_whole()
                self._kill(node)
                if whole:
                    for store in WIPED_STORES:
                        shutil.rmtree(node.base_dir / store, ignore_errors=True)
                else:
                    log.info("wipe of %s is a plain kill: a node is still rebuilding", node.name)
            case "slow-disk":
                assert node is not None
                hook = slow_fsync_file(node.base_dir)
                hook.parent.mkdir(parents=True, exist_ok=True)
                hook.write_text(str(SLOW_FSYNC_MS))
                self._slow.add(node.name)
            case "pause":
                assert node is not None
                if self.cluster.alive(node):
                    self.cluster.signal(node, signal.SIGSTOP)
                    self._paused.add(node.name)
            case "restart-all":
                for n in self.cluster.nodes:
                    self._kill(n)
            case "partition-random" | "partition-sequencer":
                assert node is not None and self.net is not None
                self.net.adopt(node.name, self.cluster.processes(node))
                self.net.isolate(node.name, node.ports.node, self._peer_ports(node))
                self._isolated.add(node.name)
            case "latency":
                assert self.proxy is not None
                for n in self.cluster.nodes:
                    for stream in ("upstream", "downstream"):
                        toxic = f"latency-{stream}"
                        self.proxy.add_latency(f"data-{n.name}", toxic, stream, LATENCY_MS, JITTER_MS)
                        self._toxics.append((f"data-{n.name}", toxic))
            case "slow-log-server":
                assert node is not None and self.proxy is not None
                self.proxy.add_latency(
                    f"data-{node.name}", "slow", "downstream", SLOW_LATENCY_MS, SLOW_JITTER_MS
                )
                self._toxics.append((f"data-{node.name}", "slow"))
            case other:
                raise ValueError(f"unknown nemesis {other}")
        return Active(fault, target, time.monotonic())

    def end(self, active: Active) -> None:
        match active.fault.nemesis:
            case "kill-random" | "kill-sequencer" | "wipe":
                node = self.cluster.node(active.target)
                if not self.cluster.alive(node):
                    self.spawn(node)
            case "pause":
                if active.target in self._paused:
                    self.cluster.signal(self.cluster.node(active.target), signal.SIGCONT)
                    self._paused.discard(active.target)
            case "restart-all":
                for n in self.cluster.nodes:
                    if not self.cluster.alive(n):
                        self.spawn(n)
            case "partition-random" | "partition-sequencer":
                node = self.cluster.node(active.target)
                assert self.net is not None
                self.net.heal(node.name, node.ports.node, self._peer_ports(node))
                self._isolated.discard(node.name)
            case "latency" | "slow-log-server":
                self._remove_toxics()
            case "slow-disk":
                slow_fsync_file(self.cluster.node(active.target).base_dir).unlink(missing_ok=True)
                self._slow.discard(active.target)

    def _remove_toxics(self) -> None:
        assert self.proxy is not None
        for proxy, toxic in self._toxics:
            self.proxy.remove(proxy, toxic)
        self._toxics.clear()

    def heal_all(self) -> None:
        """Undo everything: continue paused nodes, lift partitions and toxics, restart the dead."""
        for name in list(self._paused):
            node = self.cluster.node(name)
            if self.cluster.alive(node):
                self.cluster.signal(node, signal.SIGCONT)
        self._paused.clear()
        for name in list(self._slow):
            slow_fsync_file(self.cluster.node(name).base_dir).unlink(missing_ok=True)
        self._slow.clear()
        if self.net is not None:
            self.net.heal_all()
        self._isolated.clear()
        if self.proxy is not None and self._toxics:
            self._remove_toxics()
        for node in self.cluster.nodes:
            if not self.cluster.alive(node):
                self.cluster.kill(node)  # a dead server whose etcd member lives on
                self.spawn(node)

    def healthy(self) -> bool:
        return all(self.cluster.alive(n) for n in self.cluster.nodes) and not (
            self._paused or self._isolated or self._toxics or self._slow
        )


__all__ = [
    "KILL_RANDOM",
    "KILL_SEQUENCER",
    "PAUSE",
    "RESTART_ALL",
    "SLOW_DISK",
    "WIPE",
    "Active",
    "Nemeses",
    "ProxyThread",
]

"""One chaos run: a real local cluster, a workload, a nemesis schedule, then the checker.

Shape (Jepsen's: workload + nemesis + checker):

1. Start N nodes on free loopback ports (in their cgroups when network faults are possible;
   node-to-node data connections routed through `chaos.proxy` listeners when NAT is).
2. Workload, in threads with the synchronous gRPC client: appenders send unique payloads to a
   few logs through random nodes and record every outcome (ack with LSN, or an error, which
   is indeterminate). Like a client behind a load balancer, an appender gives up on a node
   after APPEND_TIMEOUT_S and avoids it for a while, so a dead or paused node holds up no
   appender for long; one follower per (node, log) reads with ``follow=True`` and reconnects
   from its last LSN + 1; samplers record each node's tail of each log.
3. Meanwhile the seeded schedule runs its faults one after the other.
4. Heal everything, stop the appenders, then a liveness phase: one append per (log, node)
   must succeed. Complete reads of every log from every node up to the final tail, stop the
   followers, check, and stop every process by pid (always, in ``finally``).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.checker import Append, CheckResult, History, Observation, TailSample, check
from chaos.nemesis import PROXIED, Active, Nemeses, ProxyThread
from chaos.netfault import NetFaults
from chaos.schedule import ALL_NEMESES, RESTART_ALL, Fault, make_schedule
from node.client import LogClient, NodeClient
from node.config import LOG_ONLY_ROLES
from node.local_cluster import ClusterNode, LocalCluster

log = logging.getLogger(__name__)

LOG_IDS = [1, 2, 3]
APPENDERS_PER_LOG = 2
# A client gives up on an append after this long (the outcome is then unknown) and avoids the
# node for AVOID_S. A long deadline would measure the fault, not the log: every appender would
# soon be waiting on the one stopped node while the others could take its appends.
APPEND_TIMEOUT_S = 1.0
AVOID_S = 3.0
# The liveness phase's deadline per attempt: after healing, an append may wait for a recovery.
LIVENESS_APPEND_TIMEOUT_S = 10.0
TAIL_TIMEOUT_S = 1.0
TAIL_INTERVAL_S = 0.5
RECONNECT_S = 0.2
# Before a fault starts, wait (bounded) for the previous one's recovery: faults are meant to
# be single failures, and a node still starting, or a log still on a nodeset of exactly R,
# would otherwise take a second hit.
SETTLE_TIMEOUT_S = 15.0
LIVENESS_TIMEOUT_S = 90.0
FINAL_READ_STALL_S = 30.0
FINAL_READ_LIMIT_S = 300.0
STARTUP_TIMEOUT_S = 90.0


@dataclass
class FaultRecord:
    fault: Fault
    target: str = ""
    started_s: float | None = None  # since the workload started
    ended_s: float | None = None
    skipped: str | None = None  # the reason, when the nemesis could not run
    error: str | None = None
    # The longest time one log went without an acknowledged append in the fault's window (the
    # worst log: a fault that stops one log's sequencer shows as that log's failover time). The
    # window runs to the next fault; for restart-all it begins at the restart.
    unavailable_s: float = 0.0
    unavailable_log: int | None = None
    unavailable_from_s: float | None = None  # where that gap began (since the workload started)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.fault.as_dict(),
            "resolved_target": self.target,
            "started_s": self.started_s,
            "ended_s": self.ended_s,
            "skipped": self.skipped,
            "error": self.error,
            "unavailable_s": round(self.unavailable_s, 3),
            "unavailable_log": self.unavailable_log,
            "unavailable_from_s": self.unavailable_from_s,
        }


@dataclass
class Report:
    seed: int
    nodes: int
    duration_s: float
    nemeses: list[str]
    result: CheckResult
    faults: list[FaultRecord]
    skipped: dict[str, str]  # nemesis -> reason
    max_unavailable_s: float
    liveness_s: float
    wall_s: float
    base_dir: str
    errors: list[str] = field(default_factory=list)  # harness failures (not log violations)

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.errors

    def per_nemesis(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in self.nemeses:
            ran = [f for f in self.faults if f.fault.nemesis == name and f.skipped is None]
            out[name] = {
                "status": f"skipped: {self.skipped[name]}" if name in self.skipped else "ran",
                "faults": len(ran),
                "max_unavailable_s": round(max((f.unavailable_s for f in ran), default=0.0), 3),
            }
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "nodes": self.nodes,
            "duration_s": self.duration_s,
            **self.result.counts(),
            "acked": self.result.acked,
            "max_unavailable_s": round(self.max_unavailable_s, 3),
            "liveness_s": round(self.liveness_s, 3),
            "wall_s": round(self.wall_s, 3),
            "nemeses": self.per_nemesis(),
            "skipped": self.skipped,
            "faults": [f.as_dict() for f in self.faults],
            "violations": [
                {"kind": v.kind, "log": v.log_id, "message": v.message} for v in self.result.violations
            ],
            "unlisted_violations": self.result.unlisted,
            "duplicate_examples": self.result.duplicate_examples,
            "errors": self.errors,
            "base_dir": self.base_dir,
        }


class _Clients:
    """One channel per node per thread (gRPC channels reconnect on their own)."""

    def __init__(self, cluster: LocalCluster, timeout_s: float) -> None:
        self._cluster = cluster
        self._timeout = timeout_s
        self._clients: dict[str, tuple[NodeClient, LogClient]] = {}

    def log(self, node: str) -> LogClient:
        if node not in self._clients:
            nc = NodeClient(self._cluster.node(node).grpc_address, timeout_s=self._timeout)
            self._clients[node] = (nc, LogClient(nc, timeout_s=self._timeout))
        return self._clients[node][1]

    def close(self) -> None:
        for nc, _ in self._clients.values():
            nc.close()
        self._clients.clear()


class Workload:
    def __init__(self, cluster: LocalCluster, seed: int, t0: float) -> None:
        self.cluster = cluster
        self.t0 = t0
        self._seed = seed
        self._lock = threading.Lock()
        self.appends: list[Append] = []
        self.tails: list[TailSample] = []
        self._followed: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
        self._stop_appends = threading.Event()
        self._stop_reads = threading.Event()
        self._follower_channels: dict[tuple[str, int], NodeClient] = {}
        self._threads: list[threading.Thread] = []
        self._readers: list[threading.Thread] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    # ---- appenders ---------------------------------------------------------------------------

    def _appender(self, log_id: int, index: int) -> None:
        rng = random.Random(f"{self._seed}-appender-{log_id}-{index}")
        clients = _Clients(self.cluster, APPEND_TIMEOUT_S)
        names = [n.name for n in self.cluster.nodes]
        avoid_until: dict[str, float] = {}
        seq = 0
        try:
            while not self._stop_appends.is_set():
                now = time.monotonic()
                usable = [n for n in names if avoid_until.get(n, 0.0) <= now]
                node = rng.choice(usable or names)
                payload = f"L{log_id}-a{index}-{seq}".encode()
                seq += 1
                if not self.append_once(clients, log_id, node, payload).acked:
                    avoid_until[node] = time.monotonic() + AVOID_S
                    # A refused or unreachable node answers at once: don't spin on it.
                    self._stop_appends.wait(RECONNECT_S)
        finally:
            clients.close()

    def append_once(self, clients: _Clients, log_id: int, node: str, payload: bytes) -> Append:
        started = self.now()
        try:
            lsn = clients.log(node).append(log_id, [payload])
            record = Append(log_id, payload, node, started, self.now(), lsn=lsn)
        except Exception as e:  # every failure is indeterminate, whatever its type
            record = Append(
                log_id, payload, node, started, self.now(), error=f"{type(e).__name__}: {e}"[:200]
            )
        with self._lock:
            self.appends.append(record)
        return record

    # ---- followers ---------------------------------------------------------------------------

    def _follower(self, node: str, log_id: int) -> None:
        seen = self._followed[(node, log_id)]
        address = self.cluster.node(node).grpc_address
        while not self._stop_reads.is_set():
            nc = NodeClient(address)
            with self._lock:
                self._follower_channels[(node, log_id)] = nc
            try:
                nxt = seen[-1][0] + 1 if seen else 1
                for entry in LogClient(nc).read(log_id, nxt, follow=True):
                    if entry.trim_gap_to:
                        continue  # nothing trims during a chaos run; the checker sees the hole
                    seen.append((entry.lsn, bytes(entry.payload)))
            except Exception as e:  # node down, paused, partitioned or the channel closed: retry
                log.debug("follower %s/%s: %r", node, log_id, e)
            finally:
                nc.close()
            self._stop_reads.wait(RECONNECT_S)

    # ---- tails -------------------------------------------------------------------------------

    def _sampler(self, node: str) -> None:
        clients = _Clients(self.cluster, TAIL_TIMEOUT_S)
        try:
            while not self._stop_reads.is_set():
                for log_id in LOG_IDS:
                    try:
                        tail, _ = clients.log(node).tail(log_id)
                    except Exception:  # unavailable nodes simply give no sample
                        continue
                    with self._lock:
                        self.tails.append(TailSample(node, log_id, self.now(), tail))
                self._stop_reads.wait(TAIL_INTERVAL_S)
        finally:
            clients.close()

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        for log_id in LOG_IDS:
            for i in range(APPENDERS_PER_LOG):
                self._threads.append(threading.Thread(target=self._appender, args=(log_id, i), daemon=True))
        for node in self.cluster.nodes:
            for log_id in LOG_IDS:
                self._followed[(node.name, log_id)] = []
                self._readers.append(
                    threading.Thread(target=self._follower, args=(node.name, log_id), daemon=True)
                )
            self._readers.append(threading.Thread(target=self._sampler, args=(node.name,), daemon=True))
        for th in self._threads + self._readers:
            th.start()

    def stop_appenders(self) -> None:
        self._stop_appends.set()
        for th in self._threads:
            th.join(APPEND_TIMEOUT_S + 5)

    def stop_readers(self) -> None:
        self._stop_reads.set()
        with self._lock:
            channels = list(self._follower_channels.values())
        for nc in channels:
            nc.close()  # cancels the blocked follow streams
        for th in self._readers:
            th.join(10)

    def follower_observations(self) -> list[Observation]:
        return [
            Observation(f"follow-{node}", node, log_id, tuple(entries))
            for (node, log_id), entries in sorted(self._followed.items())
        ]

    def ack_times(self, log_id: int) -> list[float]:
        with self._lock:
            return sorted(a.ended_s for a in self.appends if a.acked and a.log_id == log_id)


def read_to(address: str, log_id: int, final_tail: int, stall_s: float, limit_s: float) -> list[tuple[int, bytes]]:
    """Every record of [1, final_tail) as one node serves it, or what arrived before the stream
    made no progress for ``stall_s`` (or ran for ``limit_s``). A stall, not a total, ends it:
    a long run's logs take a while to read, nine at a time on two cores."""
    entries: list[tuple[int, bytes]] = []
    if final_tail <= 1:
        return entries
    nc = NodeClient(address)
    started = last = time.monotonic()
    done = threading.Event()

    def watchdog() -> None:
        while not done.wait(0.5):
            now = time.monotonic()
            if now - last > stall_s or now - started > limit_s:
                nc.close()  # ends the stuck stream
                return

    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    try:
        # follow=True: a node whose view of the tail lags still delivers up to final_tail.
        for entry in LogClient(nc).read(log_id, 1, follow=True):
            last = time.monotonic()
            if not entry.trim_gap_to:
                entries.append((entry.lsn, bytes(entry.payload)))
            if entry.lsn >= final_tail - 1 or entry.trim_gap_to >= final_tail - 1:
                break
    except Exception as e:
        log.info("final read of log %s from %s stopped: %r", log_id, address, e)
    finally:
        done.set()
        guard.join()
        nc.close()
    return entries


def longest_gap(ack_times: list[float], start: float, end: float) -> tuple[float, float]:
    """Longest interval within [start, end] containing no acknowledgement: (length, start)."""
    points = [start, *(t for t in ack_times if start < t < end), end]
    return max(((b - a, a) for a, b in zip(points, points[1:], strict=False)), default=(0.0, start))


def _wait(condition: Callable[[], bool], timeout_s: float, stop: threading.Event | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if stop is not None and stop.is_set():
            return False
        time.sleep(0.1)
    return condition()


def run_chaos(
    nodes: int,
    duration_s: float,
    seed: int,
    nemeses: list[str] | None = None,
    base_dir: Path | None = None,
    keep_dir: bool = False,
    after_run: Callable[[LocalCluster, History], None] | None = None,
) -> Report:
    """Run the whole thing; the report says what was checked, what failed and what was skipped.

    ``after_run`` is called after the faults with every node stopped and the appends recorded so
    far, before the liveness phase and the final reads (tests use it to tamper with a node's
    storage and show that the checker catches it).
    """
    wall0 = time.monotonic()
    nemeses = list(ALL_NEMESES) if nemeses is None else nemeses
    own_dir = base_dir is None
    base = Path(tempfile.mkdtemp(prefix="durastate-chaos-")) if base_dir is None else base_dir
    cluster = LocalCluster.create(base, nodes, use_free_ports=True, roles=LOG_ONLY_ROLES)
    schedule = make_schedule(seed, duration_s, nemeses, [n.name for n in cluster.nodes], LOG_IDS)
    errors: list[str] = []

    net = NetFaults(f"{os.getpid()}-{seed}")
    net.probe()
    proxy: ProxyThread | None = None
    if net.nat_reason is None and any(n in PROXIED for n in nemeses):
        proxy = ProxyThread(seed)
        proxy.start()
        for node in cluster.nodes:
            port = proxy.create(f"data-{node.name}", node.ports.data)
            net.route(node.ports.data, port)
    nem = Nemeses(cluster, random.Random(seed), net if net.reason is None else None, proxy)
    skipped = {name: reason for name in nemeses if (reason := nem.unavailable(name)) is not None}
    records = [FaultRecord(f) for f in schedule]
    workload: Workload | None = None
    liveness_s = 0.0
    history = History()
    try:
        for node in cluster.nodes:
            nem.spawn(node)
        cluster.wait_healthy(cluster.nodes, STARTUP_TIMEOUT_S)
        t0 = time.monotonic()
        workload = Workload(cluster, seed, t0)
        workload.start()

        # ---- faults, in schedule order -------------------------------------------------
        for rec in records:
            if rec.fault.nemesis in skipped:
                rec.skipped = skipped[rec.fault.nemesis]
                continue
            delay = t0 + rec.fault.start_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule's own timing, not synchronisation
            # A fault delayed by slow recoveries still runs (the run overruns a little), but
            # not indefinitely.
            if time.monotonic() - t0 > duration_s + SETTLE_TIMEOUT_S:
                rec.skipped = "no time left in the run (earlier recoveries took long)"
                continue
            _wait(lambda: _cluster_healthy(cluster, nem), SETTLE_TIMEOUT_S)
            active: Active | None = None
            try:
                rec.started_s = workload.now()
                active = nem.begin(rec.fault)
                rec.target = active.target
                time.sleep(rec.fault.duration_s)  # the fault lasts this long
            except Exception as e:
                rec.error = f"{type(e).__name__}: {e}"
                errors.append(f"nemesis {rec.fault.nemesis} at {rec.fault.start_s}s failed: {rec.error}")
            finally:
                if active is not None:
                    try:
                        nem.end(active)
                    except Exception as e:
                        errors.append(f"ending {rec.fault.nemesis} failed: {type(e).__name__}: {e}")
                rec.ended_s = workload.now()
        remaining = t0 + duration_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        chaos_end = workload.now()

        # ---- heal, then liveness ----------------------------------------------------------
        nem.heal_all()
        cluster.wait_healthy(cluster.nodes, STARTUP_TIMEOUT_S)
        workload.stop_appenders()
        if after_run is not None:
            # Before the liveness phase, so that its appends run on the tampered nodes too.
            for node in cluster.nodes:
                cluster.stop(node)
            after_run(cluster, History(appends=list(workload.appends)))
            for node in cluster.nodes:
                nem.spawn(node)
            cluster.wait_healthy(cluster.nodes, STARTUP_TIMEOUT_S)
        live0 = time.monotonic()
        final_tails = _liveness(workload, cluster)
        liveness_s = time.monotonic() - live0

        # ---- unavailability per fault window -------------------------------------------
        acks = {log_id: workload.ack_times(log_id) for log_id in LOG_IDS}
        ran = [r for r in records if r.started_s is not None]
        for i, rec in enumerate(ran):
            assert rec.started_s is not None
            # While every node is down nothing can answer: a whole-cluster outage counts from
            # the restart (its length is the schedule's, in the record's start and end).
            start = rec.ended_s if rec.fault.nemesis == RESTART_ALL and rec.ended_s else rec.started_s
            window_end = max(ran[i + 1].started_s if i + 1 < len(ran) else chaos_end, start)
            gaps = {log_id: longest_gap(acks[log_id], start, window_end) for log_id in LOG_IDS}
            rec.unavailable_log = max(gaps, key=lambda log_id: gaps[log_id][0])
            rec.unavailable_s, start = gaps[rec.unavailable_log]
            rec.unavailable_from_s = round(start, 3)

        history.appends = list(workload.appends)
        history.tails = list(workload.tails)
        history.final_tails = final_tails
        finals = _final_reads(cluster, final_tails)
        workload.stop_readers()
        history.observations = workload.follower_observations() + finals
    except Exception as e:
        errors.append(f"harness failed: {type(e).__name__}: {e}")
        if workload is not None:
            history.appends = list(workload.appends)
    finally:
        if workload is not None:
            workload._stop_appends.set()
            workload._stop_reads.set()
        try:
            _stop_cluster(cluster)
        finally:
            if proxy is not None:
                proxy.stop()
            net.close()
        if workload is not None:
            workload.stop_readers()
    result = check(history)
    max_unavailable = max((r.unavailable_s for r in records), default=0.0)
    report = Report(
        seed=seed,
        nodes=nodes,
        duration_s=duration_s,
        nemeses=nemeses,
        result=result,
        faults=records,
        skipped=skipped,
        max_unavailable_s=max_unavailable,
        liveness_s=liveness_s,
        wall_s=time.monotonic() - wall0,
        base_dir=str(base),
        errors=errors,
    )
    if own_dir and not keep_dir and report.ok:
        shutil.rmtree(base, ignore_errors=True)
    return report


def _answers_health(node: ClusterNode) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.ports.admin}/health", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _cluster_healthy(cluster: LocalCluster, nem: Nemeses) -> bool:
    return nem.healthy() and all(_answers_health(n) for n in cluster.nodes) and _logs_protected(cluster)


def _logs_protected(cluster: LocalCluster) -> bool:
    """Every log's open segment can lose a node: its nodeset has more members than its
    replication (as the watchdog makes it once the nodes are back). Until then the next fault
    would be a second one for that log: with a nodeset of exactly R, one more dead member
    blocks the find-tail's repair until it returns."""
    try:
        with NodeClient(cluster.nodes[0].grpc_address, timeout_s=TAIL_TIMEOUT_S) as nc:
            client = LogClient(nc, timeout_s=TAIL_TIMEOUT_S)
            for log_id in LOG_IDS:
                tail = client.chain(log_id).segments[-1]
                wanted = min(len(cluster.nodes), tail.replication + 1)
                if tail.sealed or len(tail.nodeset) < wanted:
                    return False
    except Exception:  # unreachable or refusing: not settled
        return False
    return True


def _liveness(workload: Workload, cluster: LocalCluster) -> dict[int, int]:
    """One append per (log, node) must succeed after healing; returns each log's final tail."""
    clients = _Clients(cluster, LIVENESS_APPEND_TIMEOUT_S)
    deadline = time.monotonic() + LIVENESS_TIMEOUT_S
    try:
        for log_id in LOG_IDS:
            for node in cluster.nodes:
                attempt = 0
                while True:
                    rec = workload.append_once(
                        clients, log_id, node.name, f"L{log_id}-final-{node.name}-{attempt}".encode()
                    )
                    if rec.acked:
                        break
                    attempt += 1
                    time.sleep(RECONNECT_S)  # retry backoff
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"liveness: no append to log {log_id} through {node.name} succeeded "
                            f"within {LIVENESS_TIMEOUT_S}s after healing (last error: {rec.error})"
                        )
        tails: dict[int, int] = {}
        for log_id in LOG_IDS:
            seen = []
            for node in cluster.nodes:
                try:
                    seen.append(clients.log(node.name).tail(log_id)[0])
                except Exception:
                    pass
            acked = [a.lsn for a in workload.appends if a.log_id == log_id and a.lsn is not None]
            tails[log_id] = max([*seen, max(acked, default=0) + 1])
        return tails
    finally:
        clients.close()


def _final_reads(cluster: LocalCluster, final_tails: dict[int, int]) -> list[Observation]:
    results: list[Observation] = []
    lock = threading.Lock()

    def one(node_name: str, address: str, log_id: int) -> None:
        entries = read_to(address, log_id, final_tails[log_id], FINAL_READ_STALL_S, FINAL_READ_LIMIT_S)
        with lock:
            results.append(
                Observation(f"final-{node_name}", node_name, log_id, tuple(entries), complete=True)
            )

    threads = [
        threading.Thread(target=one, args=(n.name, n.grpc_address, log_id))
        for n in cluster.nodes
        for log_id in LOG_IDS
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(FINAL_READ_LIMIT_S + 5)
    return sorted(results, key=lambda o: (o.log_id, o.node))


def _stop_cluster(cluster: LocalCluster) -> None:
    """Every node by its own pids; a stopped (SIGSTOP) node is continued first by `stop`."""
    for node in cluster.nodes:
        try:
            cluster.stop(node, timeout_s=5.0)
        except Exception:
            cluster.kill(node)

"""Append latency and throughput of the replicated log, and failover time, beside the physical floor.

    python -m bench.append_latency [--nodes 1|3] [--duration S] [--json] [--base-dir DIR]
    durastate bench append ...

Real node processes on loopback (``LocalCluster``, free ports). The benchmark process appends
the way a partition leader co-located with the sequencer would: it reads the log's chain from
the metadata store and sends ``AppendRequest`` frames straight to the sequencer's data port, so
no gRPC hop is counted. Concurrency C is C closed-loop tasks, each with one append in flight
(one record, unless ``--records-per-append``). Each point has its own log, a warm-up, then a
measured window: latency samples are the appends issued and acknowledged inside the window,
throughput the records acknowledged in it. A thread samples fsync on the same disk meanwhile,
since this disk's latency moves a lot under load and from one second to the next.

Failover (3 nodes): appends go through a surviving node's gRPC ``LogAppend`` at a fixed rate
(open loop, so an append is issued right after the kill whatever the earlier ones are doing);
the sequencer's node, chosen to be the one holding the etcd leader (the worst case), is killed
with SIGKILL together with its etcd member. Reported: time from the kill to the first success
among appends issued after it, and the longest gap between successes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.cluster import BenchCluster, ProcessInfo, machine_busy_s, process_info, register_member
from bench.common import BenchError, Window, int_list, positive_float, progress
from bench.common import run as run_loop
from bench.floor import measure_floor
from bench.stats import percentile, ratio, summary_ms, table
from bifrost.core import Chain
from bifrost.core._types import GenerationalNodeId, LogletParams
from bifrost.net.messaging import DataPortAuth
from bifrost.record import tag, untag
from bifrost.replicated.messages import (
    AppendRequest,
    AppendResponse,
    AppendStatus,
    GetTailRequest,
    WireCodec,
)
from bifrost.replicated.runtime import Network
from metadata.records import NodesConfig
from node.client import NodeUnreachable
from node.grpc_auth import call_metadata
from node.local_cluster import ClusterError
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc

CALL_TIMEOUT_S = 5.0
# The appender id in the tags of the records the bench writes (bifrost/record.py).
TAG_APPENDER = 10_000
DEFAULT_DURATION_S = 5.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_RECORD_BYTES = (100, 4096)
DEFAULT_CONCURRENCY = (1, 64)
DEFAULT_REPLICATION = {1: 1, 3: 2}
# Failed appends mean a sick cluster, whose latencies are not worth printing.
MAX_ERROR_FRACTION = 0.01

DISK_PROBE_INTERVAL_S = 0.02

FAILOVER_INTERVAL_S = 0.005
FAILOVER_STEADY_S = 1.0
FAILOVER_AFTER_S = 2.0
FAILOVER_GIVE_UP_S = 40.0

TARGETS = {
    "replicated_p50_ms": 1.5,
    "throughput_100b_c64_records_per_s": 50_000,
    "failover_s": 3.0,
    "peak_rss_mb_per_node": 300,
    "c2r_sequencer_p50_ms": 1.0,
    "c2r_other_p50_ms": 2.0,
}


# ---- one measured point ------------------------------------------------------------------


class DiskProbe:
    """Samples a 4-KiB write + fsync on a thread at a low fixed rate while a point runs: the
    floor measured once at the start says little about a disk whose latency moves under load."""

    def __init__(self, directory: Path, interval_s: float = DISK_PROBE_INTERVAL_S) -> None:
        self._directory = directory
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[float] = []

    def __enter__(self) -> DiskProbe:
        self._directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._sample, name="disk-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        fd, path = tempfile.mkstemp(dir=self._directory, prefix="disk-probe-")
        block = os.urandom(4096)
        try:
            while not self._stop.wait(self._interval_s):
                t0 = time.perf_counter()
                os.write(fd, block)
                os.fsync(fd)
                self.samples.append(time.perf_counter() - t0)
        finally:
            os.close(fd)
            os.unlink(path)


@dataclass(slots=True)
class PointResult:
    nodes: int
    replication: int
    record_bytes: int
    concurrency: int
    records_per_append: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    records_per_s: float
    samples: int
    errors: int
    log_id: int
    # The disk as the nodes saw it: a 4-KiB write + fsync every DISK_PROBE_INTERVAL_S during the
    # window (this VM's disk swings between ~0.1 ms and ~4 ms per fsync from one second to the next).
    disk_fsync_p50_ms: float = math.nan
    # CPU used during the window, in cores (1.0 = one core busy all the time), per process.
    cpu_cores: dict[str, float] = field(default_factory=dict)
    # Commit to read: from the appender seeing an append's acknowledgement to a follower
    # (Bifrost.read in follow mode, streamed over gRPC LogRead) delivering its record, on the
    # sequencer's node and on another node. p50/p99 ms; NaN when not measured.
    c2r_sequencer_p50_ms: float = math.nan
    c2r_sequencer_p99_ms: float = math.nan
    c2r_other_p50_ms: float = math.nan
    c2r_other_p99_ms: float = math.nan


@dataclass(slots=True)
class _Window(Window):
    # sequence number (the first 8 bytes of a record) -> when its append was acknowledged
    acked_at: dict[int, float] = field(default_factory=dict)


_SEQ = struct.Struct(">Q")


class _Numbered:
    """Unique record numbers across the appender tasks: a follower tells records apart by them."""

    def __init__(self) -> None:
        self.next = 1


async def _appender(
    network: Network, sequencer: int, template: AppendRequest, w: _Window, numbers: _Numbered
) -> None:
    clock = time.monotonic  # shared with the follower processes
    body = untag(template.payloads[0])[2][_SEQ.size :]
    while not w.stop:
        n = numbers.next
        numbers.next += len(template.payloads)
        payloads = tuple(tag(TAG_APPENDER, n + i, _SEQ.pack(n + i) + body) for i in range(len(template.payloads)))
        request = AppendRequest(template.params, payloads)
        t0 = clock()
        try:
            resp = await network.call(sequencer, request, CALL_TIMEOUT_S)
        except (TimeoutError, ConnectionError) as e:
            resp = AppendResponse(AppendStatus.UNAVAILABLE, message=repr(e))
        t1 = clock()
        if resp.status != AppendStatus.OK:
            w.failed(f"{resp.status} {resp.message}".strip())
            # A failing sequencer answers at once: don't spin on it.
            await asyncio.sleep(0.01)
            continue
        if w.answered(t0, t1, len(request.payloads)):
            w.acked_at[n] = t1


class _Follower:
    """bench/follower.py in a process of its own (see there why), following one node."""

    def __init__(self, address: str, log_id: int, out: Path, secret_file: Path) -> None:
        self._out = out
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.follower", address, str(log_id), str(out), str(secret_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # "following": the stream is open
        self.seen: dict[int, float] = {}

    def cpu_s(self) -> float:
        info = process_info(self._proc.pid)
        return info.cpu_s if info is not None else 0.0

    def stop(self) -> None:
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        try:
            self.seen = {int(k): v for k, v in json.loads(self._out.read_text()).items()}
        except (OSError, ValueError):
            self.seen = {}

    def commit_to_read(self, acked_at: dict[int, float]) -> list[float]:
        return [self.seen[n] - t for n, t in acked_at.items() if n in self.seen]


async def _until_admitted(network: Network, params: LogletParams) -> None:
    """The sequencer's node learns of a newly registered appender through its metadata watch:
    until then it refuses the connection. Wait for one answer before measuring."""
    deadline = time.monotonic() + CALL_TIMEOUT_S * 2
    while True:
        try:
            await network.call(params.sequencer.node, GetTailRequest(params), CALL_TIMEOUT_S)
            return
        except (TimeoutError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def measure_point(
    address_of: Callable[[int], tuple[str, int] | None],
    chain: Chain,
    record: bytes,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    cpu_snapshot: Callable[[], dict[str, float]],
    probe_dir: Path,
    secret: bytes,
    appender: GenerationalNodeId,
    records_per_append: int = 1,
    follower_addresses: Sequence[str] = (),
    secret_file: Path | None = None,
) -> tuple[_Window, dict[str, float], list[float], list[list[float]]]:
    params = chain.tail.params
    assert params is not None
    # ``appender`` is a member of the nodes config (the data port admits no one else). The
    # sequencer answers on the connection a request came in on: no listening socket needed.
    auth = DataPortAuth(secret, appender, lambda peer: None)
    network = Network(auth, WireCodec(), address_of, lambda *a: None)
    # Tagged as Bifrost tags records (bifrost/record.py), so that readers can read them back; each
    # record starts with its number, for the followers.
    request = AppendRequest(params=params, payloads=(tag(TAG_APPENDER, 1, record),) * records_per_append)
    await _until_admitted(network, params)
    w = _Window()
    numbers = _Numbered()
    followers = [
        _Follower(address, chain.log_id, probe_dir.parent / f"follower-{chain.log_id}-{i}.json", secret_file)
        for i, address in enumerate(follower_addresses)
        if secret_file is not None
    ]
    tasks = [
        asyncio.ensure_future(_appender(network, params.sequencer.node, request, w, numbers))
        for _ in range(concurrency)
    ]
    try:
        await asyncio.sleep(warmup_s)
        with DiskProbe(probe_dir) as probe:
            # The followers' processes too: reading costs CPU on this machine like appending does.
            before = cpu_snapshot() | {"followers": sum(f.cpu_s() for f in followers)}
            w.start = time.perf_counter()
            w.end = w.start + duration_s
            await asyncio.sleep(duration_s)
            after = cpu_snapshot() | {"followers": sum(f.cpu_s() for f in followers)}
            elapsed = time.perf_counter() - w.start
        w.stop = True
        await asyncio.wait(tasks, timeout=CALL_TIMEOUT_S + 1)
        # Followers get a moment to deliver the last acknowledged records.
        await asyncio.sleep(0.5)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await network.close()
        for f in followers:
            f.stop()
    cpu = {k: (after[k] - before[k]) / elapsed for k in after if k in before}
    c2r = [f.commit_to_read(w.acked_at) for f in followers]
    return w, cpu, probe.samples, c2r


# ---- failover --------------------------------------------------------------------------------


@dataclass(slots=True)
class FailoverResult:
    failover_s: float
    longest_gap_s: float
    killed: str
    killed_held_etcd_leader: bool
    appended_through: str
    appends_issued: int
    appends_failed: int
    sequencer_after: str


async def _failover_appends(
    address: str, log_id: int, kill: Callable[[], float], record: bytes, secret: bytes
) -> tuple[float, list[tuple[float, float, bool]]]:


    events: list[tuple[float, float, bool]] = []
    request = node_pb2.LogAppendRequest(log_id=log_id, records=[record])
    # Longer than Bifrost's own append deadline: the node, not the client, decides to give up.
    rpc_timeout_s = 35.0

    async with grpc.aio.insecure_channel(address) as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)

        async def one() -> None:
            t0 = time.perf_counter()
            try:
                await stub.LogAppend(request, timeout=rpc_timeout_s, metadata=call_metadata(secret))
                ok = True
            except grpc.aio.AioRpcError:
                ok = False
            events.append((t0, time.perf_counter(), ok))

        tasks: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        killed_at = math.inf
        while True:
            now = time.perf_counter()
            if killed_at == math.inf and now - started >= FAILOVER_STEADY_S:
                killed_at = kill()
            if now - killed_at > FAILOVER_GIVE_UP_S:
                break
            first_after = min((d for t0, d, ok in events if ok and t0 >= killed_at), default=None)
            if first_after is not None and now - first_after > FAILOVER_AFTER_S:
                break
            task = asyncio.ensure_future(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(FAILOVER_INTERVAL_S)
        # Appends still waiting are the node's business now; only their outcome is not needed.
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return killed_at, events


def measure_failover(bc: BenchCluster, log_id: int, record: bytes) -> tuple[FailoverResult, dict[str, float]]:
    """Returns the result and the peak RSS of the killed node's processes right before the kill.

    The log is created through the node holding the etcd leader, so the kill is the worst case:
    the survivors must detect the dead sequencer *and* wait for a new etcd leader before the
    chain's compare-and-set can go through."""
    first = bc.nodes[0]
    leader = bc.metadata_leader(first)
    via = bc.cluster.node(leader) if leader in {n.name for n in bc.nodes} else first
    chain = bc.ensure_log(via, log_id)
    assert chain.tail.params is not None
    victim = bc.node_by_id(via, chain.tail.params.sequencer.node)
    through = next(n for n in bc.nodes if n.name != victim.name)
    leader = bc.metadata_leader(through)
    peaks_before_kill: dict[str, float] = {}

    def kill() -> float:
        peaks_before_kill.update(_rss_by_role(bc.processes(victim)))
        bc.cluster.signal(victim, signal.SIGKILL)
        return time.perf_counter()

    killed_at, events = run_loop(
        _failover_appends(through.grpc_address, log_id, kill, record, bc.cluster.secret)
    )
    done_ok = sorted(d for _, d, ok in events if ok)
    after = [d for t0, d, ok in events if ok and t0 >= killed_at]
    if not after:
        failed = sum(1 for e in events if not e[2])
        raise BenchError(
            f"no append through {through.name} succeeded within {FAILOVER_GIVE_UP_S:.0f}s of killing "
            f"{victim.name} ({failed} of {len(events)} failed); see {victim.base_dir.parent}/*/node.log"
        )
    # Gaps are measured from the kill on: the steady phase before it is not failover.
    in_failover = [killed_at] + [d for d in done_ok if d >= killed_at]
    gaps = [b - a for a, b in zip(in_failover, in_failover[1:], strict=False)]
    new_chain = bc.chain(through, log_id)
    seq_after = "?"
    if new_chain is not None and new_chain.tail.params is not None:
        seq_after = bc.node_by_id(through, new_chain.tail.params.sequencer.node).name
    result = FailoverResult(
        failover_s=min(after) - killed_at,
        longest_gap_s=max(gaps, default=0.0),
        killed=victim.name,
        killed_held_etcd_leader=leader == victim.name,
        appended_through=through.name,
        appends_issued=len(events),
        appends_failed=sum(1 for e in events if not e[2]),
        sequencer_after=seq_after,
    )
    return result, peaks_before_kill


# ---- a whole cluster ----------------------------------------------------------------------


def _rss_by_role(procs: list[ProcessInfo]) -> dict[str, float]:
    """node_mb (the node process, listed first), etcd_mb (the rest of its group), total_mb."""
    if not procs:
        return {}
    node = procs[0].peak_rss_mb
    others = sum(p.peak_rss_mb for p in procs[1:])
    return {"node_mb": node, "etcd_mb": others, "total_mb": node + others}


def _address_book(nodes: NodesConfig) -> Callable[[int], tuple[str, int] | None]:
    book = {
        rec.node_id: (rec.address, rec.ports["data"]) for rec in nodes.nodes.values() if "data" in rec.ports
    }
    return book.get


@dataclass(slots=True)
class ClusterRun:
    points: list[PointResult]
    failover: FailoverResult | None
    peak_rss_mb: dict[str, dict[str, float]]


def run_cluster(
    base_dir: Path,
    nodes: int,
    replication: int,
    record_sizes: Sequence[int],
    concurrencies: Sequence[int],
    warmup_s: float,
    duration_s: float,
    failover: bool,
    records_per_append: int = 1,
) -> ClusterRun:
    points = [(size, c) for size in record_sizes for c in concurrencies]
    failover_log = len(points) + 1
    progress(f"starting {nodes} node(s), replication {replication}, under {base_dir}")
    with BenchCluster(base_dir, nodes, replication, num_logs=max(4, failover_log + 1)) as bc:
        first = bc.nodes[0]
        address_of = _address_book(bc.nodes_config(first))
        appender = register_member(bc, first, "bench-appender")

        def cpu_snapshot() -> dict[str, float]:
            # "machine": every core's busy time, anyone's: 2.0 on this 2-core VM means no CPU to spare.
            snap = {"bench": time.process_time(), "machine": machine_busy_s()}
            for node in bc.nodes:
                for i, proc in enumerate(bc.processes(node)):
                    snap[node.name if i == 0 else f"{node.name}-{proc.comm}"] = proc.cpu_s
            return snap

        results = []
        for log_id, (size, conc) in enumerate(points, start=1):
            # Logs created through the first node are sequenced by it: one placement for all points.
            chain = bc.ensure_log(first, log_id)
            record = os.urandom(size)
            progress(
                f"  {nodes}n R={replication} {size} B c={conc}: {warmup_s:g}s warm-up + {duration_s:g}s"
            )
            assert chain.tail.params is not None
            seq_node = bc.node_by_id(first, chain.tail.params.sequencer.node)
            others = [n for n in bc.nodes if n.name != seq_node.name]
            addresses = [seq_node.grpc_address] + ([others[0].grpc_address] if others else [])
            w, cpu, disk, c2r = run_loop(
                measure_point(
                    address_of,
                    chain,
                    record,
                    conc,
                    warmup_s,
                    duration_s,
                    cpu_snapshot,
                    base_dir / "disk-probe",
                    bc.cluster.secret,
                    appender,
                    records_per_append,
                    addresses,
                    bc.cluster.secret_path,
                )
            )
            c2r_ms = [summary_ms(d) if d else {"p50_ms": math.nan, "p99_ms": math.nan} for d in c2r]
            c2r_ms += [{"p50_ms": math.nan, "p99_ms": math.nan}] * (2 - len(c2r_ms))
            if w.sick(MAX_ERROR_FRACTION):
                raise BenchError(f"{nodes} node(s), {size} B, concurrency {conc}: appends: {w.failures()}")
            results.append(
                PointResult(
                    nodes=nodes,
                    replication=replication,
                    record_bytes=size,
                    concurrency=conc,
                    records_per_append=records_per_append,
                    records_per_s=w.done / duration_s,
                    samples=len(w.samples),
                    errors=w.errors,
                    log_id=log_id,
                    disk_fsync_p50_ms=percentile(disk, 50) * 1e3,
                    cpu_cores=cpu,
                    c2r_sequencer_p50_ms=c2r_ms[0]["p50_ms"],
                    c2r_sequencer_p99_ms=c2r_ms[0]["p99_ms"],
                    c2r_other_p50_ms=c2r_ms[1]["p50_ms"],
                    c2r_other_p99_ms=c2r_ms[1]["p99_ms"],
                    **summary_ms(w.samples),
                )
            )
        peaks = {node.name: _rss_by_role(bc.processes(node)) for node in bc.nodes}
        fo = None
        if failover and nodes > 1:
            progress(f"  failover: kill -9 the sequencer's node of log {failover_log}")
            fo, before_kill = measure_failover(bc, failover_log, os.urandom(100))
            peaks[fo.killed] = before_kill
            bc.start([bc.cluster.node(fo.killed)])
        for node in bc.nodes:
            now = _rss_by_role(bc.processes(node))
            peaks[node.name] = {k: max(v, peaks.get(node.name, {}).get(k, 0.0)) for k, v in now.items()}
    return ClusterRun(results, fo, peaks)


# ---- output ------------------------------------------------------------------------------------


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def to_json(floor: dict[str, float], runs: list[ClusterRun]) -> dict[str, Any]:
    fo = next((r.failover for r in runs if r.failover is not None), None)
    return {
        "floor": floor,
        "runs": [asdict(p) for r in runs for p in r.points],
        "failover_s": fo.failover_s if fo else None,
        "failover": asdict(fo) if fo else None,
        "node_peak_rss_mb": {str(len(r.peak_rss_mb)): r.peak_rss_mb for r in runs},
        "targets": TARGETS,
    }


def render(floor: dict[str, float], runs: list[ClusterRun]) -> str:
    fs, rtt = floor["fsync_p50_ms"], floor["rtt_p50_ms"]
    out = [
        f"floor: fsync 4 KiB p50 {_ms(fs)} ms (p99 {_ms(floor['fsync_p99_ms'])}), "
        f"TCP RTT p50 {_ms(rtt)} ms, gRPC RTT p50 {_ms(floor['grpc_rtt_p50_ms'])} ms",
        "",
    ]
    rows = []
    for r in runs:
        for p in r.points:
            cpu = " ".join(f"{k}={v:.2f}" for k, v in sorted(p.cpu_cores.items()) if v >= 0.05)
            rows.append(
                [
                    str(p.nodes),
                    str(p.replication),
                    str(p.record_bytes),
                    str(p.concurrency) + (f"x{p.records_per_append}" if p.records_per_append > 1 else ""),
                    _ms(p.p50_ms),
                    ratio(p.p50_ms, fs),
                    ratio(p.p50_ms, rtt),
                    _ms(p.p99_ms),
                    ratio(p.p99_ms, fs),
                    _ms(p.p999_ms),
                    f"{p.records_per_s:,.0f}",
                    f"{p.records_per_s * p.record_bytes / 2**20:.1f}",
                    f"{_ms(p.c2r_sequencer_p50_ms)} / {_ms(p.c2r_sequencer_p99_ms)}",
                    f"{_ms(p.c2r_other_p50_ms)} / {_ms(p.c2r_other_p99_ms)}",
                    _ms(p.disk_fsync_p50_ms),
                    cpu,
                ]
            )
    headers = ["nodes", "R", "bytes", "conc", "p50 ms", "/fsync", "/rtt", "p99 ms", "/fsync", "p999 ms"]
    out.append(
        table(
            [*headers, "records/s", "MiB/s", "c2r seq p50/p99", "c2r other p50/p99", "disk fsync p50 ms", "CPU cores"],
            rows,
        )
    )
    out.append(
        "/fsync, /rtt: ratio to the floor's fsync p50 and TCP RTT p50; c2r: commit to read, ms from the "
        "appender seeing the acknowledgement to a follower (Bifrost.read following the log, streamed over "
        "gRPC) receiving the record, on the sequencer's node and on another node; disk fsync p50: sampled "
        "on the same disk during the point; CPU cores: busy time / wall time per process during the point "
        "(followers: both c2r readers; machine: every core, other users' processes included)"
    )
    out.append("")
    out.append("targets (not asserted):")
    for r in runs:
        for p in r.points:
            if p.records_per_append > 1:
                continue
            if p.replication > 1 and p.concurrency == 1:
                t = TARGETS["replicated_p50_ms"]
                out.append(
                    f"  replicated append p50 at c=1, {p.record_bytes} B: {_ms(p.p50_ms)} ms"
                    f" (target <= {t} ms) {_verdict(p.p50_ms <= t)}"
                )
            if p.nodes > 1 and p.concurrency == 1 and p.record_bytes == 100:
                for where, value, t in (
                    ("the sequencer's node", p.c2r_sequencer_p50_ms, TARGETS["c2r_sequencer_p50_ms"]),
                    ("another node", p.c2r_other_p50_ms, TARGETS["c2r_other_p50_ms"]),
                ):
                    out.append(
                        f"  commit to read p50 at c=1 on {where}: {_ms(value)} ms (target <= {t} ms) "
                        f"{_verdict(value <= t)}"
                    )
            if p.nodes > 1 and p.record_bytes == 100 and p.concurrency == 64:
                t = TARGETS["throughput_100b_c64_records_per_s"]
                out.append(
                    f"  100 B at c=64, {p.nodes} nodes R={p.replication}: {p.records_per_s:,.0f} records/s"
                    f" (target >= {t:,}) {_verdict(p.records_per_s >= t)}"
                )
    for r in runs:
        if r.failover is not None:
            fo = r.failover
            t = TARGETS["failover_s"]
            out.append(
                f"  failover: {fo.failover_s:.2f} s from kill -9 of {fo.killed} to the first append issued "
                f"after it succeeding (target <= {t:g} s) {_verdict(fo.failover_s <= t)}; longest gap "
                f"between acknowledged appends {fo.longest_gap_s:.2f} s"
            )
            out.append(
                f"    appended through {fo.appended_through}; {fo.killed} "
                f"{'held' if fo.killed_held_etcd_leader else 'did not hold'} the etcd leader; new sequencer "
                f"{fo.sequencer_after}; {fo.appends_failed} of {fo.appends_issued} appends failed"
            )
    t = TARGETS["peak_rss_mb_per_node"]
    for r in runs:
        for name, rss in r.peak_rss_mb.items():
            if rss:
                out.append(
                    f"  peak RSS {len(r.peak_rss_mb)}-node cluster {name}: node {rss['node_mb']:.0f} MB + etcd "
                    f"{rss['etcd_mb']:.0f} MB = {rss['total_mb']:.0f} MB (target <= {t} MB per node) "
                    f"{_verdict(rss['total_mb'] <= t)}"
                )
    return "\n".join(out)


# ---- command line ------------------------------------------------------------------------------


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options; pass a parser (e.g. a CLI subcommand's) to add them to it."""
    p = parser or argparse.ArgumentParser(
        prog="durastate bench append", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument(
        "--nodes", type=int, choices=(1, 3), action="append", help="cluster size (default: 1 and 3)"
    )
    p.add_argument(
        "--replication",
        type=int,
        help="replication (default: 1 for one node, 2 for three); must fit every size",
    )
    p.add_argument(
        "--duration", type=positive_float, default=DEFAULT_DURATION_S, help="measured seconds per point"
    )
    p.add_argument(
        "--warmup", type=positive_float, default=DEFAULT_WARMUP_S, help="warm-up seconds per point"
    )
    p.add_argument(
        "--record-bytes",
        type=int_list,
        default=list(DEFAULT_RECORD_BYTES),
        help="record sizes, e.g. 100,4096",
    )
    p.add_argument(
        "--concurrency",
        type=int_list,
        default=list(DEFAULT_CONCURRENCY),
        help="appends in flight, e.g. 1,64",
    )
    p.add_argument(
        "--records-per-append",
        type=int,
        default=1,
        help="records in each AppendRequest (default 1; a partition leader batches its own appends)",
    )
    p.add_argument("--no-failover", action="store_true", help="skip the failover measurement")
    p.add_argument("--base-dir", type=Path, help="where the clusters live (default: a new temporary dir)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--json-out", type=Path, help="also write the JSON results to this file")
    return p


def run(args: argparse.Namespace) -> int:
    sizes: list[int] = sorted(set(args.nodes or (1, 3)))
    if args.records_per_append < 1:
        print("error: --records-per-append must be at least 1", file=sys.stderr)
        return 2
    if args.replication is not None and not 1 <= args.replication <= min(sizes):
        print(
            f"error: --replication {args.replication} does not fit a {min(sizes)}-node cluster "
            f"(narrow with --nodes)",
            file=sys.stderr,
        )
        return 2
    own_dir = args.base_dir is None
    base = (Path(tempfile.mkdtemp(prefix="durastate-bench-")) if own_dir else args.base_dir).absolute()
    # A cluster left by an earlier run has etcd members bound to other ports: start from nothing.
    used = [d.name for n in sizes if (d := base / f"cluster-{n}").exists()]
    if used:
        print(f"error: {base} already holds {', '.join(used)}; use an empty --base-dir", file=sys.stderr)
        return 2
    base.mkdir(parents=True, exist_ok=True)
    try:
        progress("measuring the floor (fsync, TCP and gRPC round trips)")
        floor = run_loop(measure_floor(base / "floor"))
        runs = [
            run_cluster(
                base / f"cluster-{n}",
                n,
                args.replication or DEFAULT_REPLICATION[n],
                args.record_bytes,
                args.concurrency,
                args.warmup,
                args.duration,
                not args.no_failover,
                args.records_per_append,
            )
            for n in sizes
        ]
    except (BenchError, ClusterError, NodeUnreachable) as e:
        # The node logs under the base dir are what explains a failure: keep them.
        print(f"error: {e} (node logs under {base})", file=sys.stderr)
        return 1
    if own_dir:
        shutil.rmtree(base, ignore_errors=True)
    report = to_json(floor, runs)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(floor, runs))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

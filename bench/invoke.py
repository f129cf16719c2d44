"""Invocations through the ingress: latency, throughput and cost per invocation, end to end, and
side by side with the real Restate server.

    durastate bench invoke [--setup single|cluster|both] [--workload noop,three,add,hot,promise,sleep]
        [--concurrency 1,32] [--duration S] [--warmup S] [--vs-restate] [--json]
    python -m bench.invoke ...

Run from a checkout: the services are ``tests/sdk_services/invoker_suite.py`` (its ``bench_app``),
written with the official Python SDK and served by hypercorn (uvloop) in a process of its own,
registered through the server's admin API (POST /deployments) as two deployments: the process's
root (bidi) and its ``/suspending`` mount (request/response). Workloads:

* ``noop``: ``Steps/noop``, a handler that returns at once;
* ``three``: ``Steps/three``, three ``ctx.run`` steps;
* ``add``: ``Counter/k{i}/add`` over 1024 keys, an exclusive virtual-object handler;
* ``hot``: ``Counter/hot/add``, every call on one key (they queue behind each other);
* ``promise``: ``Handshake/{id}/run``, a new workflow per request, whose run sends its shared
  handler ``open``, which resolves the durable promise the run awaits (two invocations and a
  promise per request; the figures are per request);
* ``sleep``: ``Pause/zero``, ``ctx.sleep(0)`` on the request/response deployment: the SDK suspends,
  the server fires the timer and resumes the invocation in a second attempt.

Setups: ``single``, one ``durastate server`` process with its defaults (local metadata, its own
temporary base dir, free ports); ``cluster``, three nodes with every role (etcd metadata, log and
partition replication 2). With ``--vs-restate`` the same points run against restate-server
1.7.12 (bench/restate_server.py; installed with npm under ~/.cache/durastate the first time,
``--restate-server PATH`` uses another copy of the same version): one node, or three with replication 2 as its cluster
docs configure them. Each server gets its own hypercorn process, the same app.

Load: a closed loop in this process, ``c`` tasks on aiohttp (HTTP/1.1, kept-alive connections),
each sending one request and waiting for its answer; on a cluster, task ``i`` talks to node
``i mod 3``'s ingress. After a warm-up, a measured window: latency from the requests issued
and answered inside it, throughput and costs from those answered inside it.

Columns: p50/p99 latency, requests per second, server CPU-ms per invocation (user + system time
of every server process, with its children such as etcd, over the window, divided by the
invocations answered in it), the SDK's hypercorn CPU-ms per invocation, this process's (the load
generator's) CPU-ms per invocation, log records per invocation (the nodes' metrics, summed:
``durastate_bifrost_appended_records_total``, or restate's
``restate_bifrost_sequencer_committed_records_total``), and failed requests. The ratios are
durastate / restate for the same setup, workload and concurrency.

However the run ends (done, failed, Ctrl-C, SIGTERM: exit status 130), every process it started
is stopped (bench/cleanup.py); a failed run keeps the servers' logs under its base dir.

The machine's cores are shared by the server, the SDK and the load generator: compare figures
from one run, not across machines. restate-server itself asks api.github.com for its latest
release once at start (unconditionally); every other connection here is on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench import pyspy, restate_server
from bench.cleanup import stops_everything_started
from bench.cluster import BenchCluster, cpu_s, descendants, machine_busy_s
from bench.common import BenchError, Window, int_list, positive_float, progress
from bench.common import run as run_loop
from bench.stats import percentile, table
from node.config import ROLES, BifrostConfig
from node.local_cluster import ClusterError, tail
from node.ports import LOOPBACK, free_ports

REPO = Path(__file__).resolve().parents[1]
# The benchmark serves the checkout's official-SDK test services with the tests' server helper,
# so the checkout's root must be importable also when the installed `durastate` command runs it.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from tests.sdk_services.invoker_suite import SUSPENDING_MOUNT  # noqa: E402
from tests.support.sdk_server import AsgiServer  # noqa: E402

APP = "tests.sdk_services.invoker_suite:bench_app"
OBJECT_KEYS = 1024
CLUSTER_NODES = 3
CLUSTER_REPLICATION = 2
DEFAULT_CONCURRENCY = (1, 32)
DEFAULT_DURATION_S = 10.0
DEFAULT_WARMUP_S = 2.0
REQUEST_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
# Failed requests mean a sick server, whose latencies are not worth printing.
MAX_ERROR_FRACTION = 0.01
DURASTATE_RECORDS_METRIC = "durastate_bifrost_appended_records_total"

# The targets, durastate / restate, printed and never asserted: (workload, setup,
# concurrency, ratio, bound, what); None matches any, and a concurrency of None means the highest
# one measured (where the reference figures put CPU per invocation).
TARGETS = (
    ("three", "cluster", 1, "p50", 1.0, "3 x ctx.run p50 on 3 nodes, c=1"),
    ("noop", "single", 1, "p50", 1.0, "no-op p50 on one node, c=1"),
    (None, None, None, "server_cpu", 2.0, "server CPU-ms per invocation at the highest concurrency"),
)


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    label: str
    path: Callable[[int], str]
    body: bytes | None


WORKLOADS = {
    w.name: w
    for w in (
        Workload("noop", "no-op", lambda i: "Steps/noop", None),
        Workload("three", "3 x ctx.run", lambda i: "Steps/three", b'"x"'),
        Workload("add", f"object add, {OBJECT_KEYS} keys", lambda i: f"Counter/k{i % OBJECT_KEYS}/add", b"1"),
        Workload("hot", "object add, one hot key", lambda i: "Counter/hot/add", b"1"),
        Workload("promise", "workflow + promise", lambda i: f"Handshake/w{i}/run", None),
        Workload("sleep", "sleep(0), suspend + resume", lambda i: "Pause/zero", None),
    )
}


# ---- the servers under test ------------------------------------------------------------------


class Server(Protocol):
    """What a measured point needs from a running server (one node or several)."""

    kind: str  # "durastate" | "restate"
    setup: str  # "single" | "cluster"
    ingress_ports: list[int]
    admin_port: int
    metrics_urls: list[str]
    records_metric: str

    def pids(self) -> list[int]: ...

    def node_pids(self) -> dict[str, int]:
        """durastate's node processes by node name, for py-spy (none for restate-server)."""
        ...


def _clean_env(prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    # The checkout under test first: with another cwd, `-m node.cli` could import another copy.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=1) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class DurastateSingle:
    """One ``durastate server`` process with its defaults, on free ports, in ``base_dir``."""

    kind = "durastate"
    setup = "single"
    records_metric = DURASTATE_RECORDS_METRIC

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        ingress, admin, node, data = free_ports(4)
        self.ingress_ports = [ingress]
        self.admin_port = admin
        self.metrics_urls = [f"http://{LOOPBACK}:{admin}/metrics"]
        self._ports = {"ingress": ingress, "admin": admin, "node": node, "data": data}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.base_dir / "node.log"

    def __enter__(self) -> DurastateSingle:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        flags = [a for name, port in self._ports.items() for a in (f"--{name}-port", str(port))]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "server", "--base-dir", str(self.base_dir / "data"), *flags],
                cwd=self.base_dir,
                env=_clean_env("DURASTATE_"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while _get(self.ingress_ports[0], "/restate/health") != 200:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"durastate server did not start; last lines of {self.log}:\n{tail(self.log)}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        return [] if self._proc is None or self._proc.poll() is not None else descendants([self._proc.pid])

    def node_pids(self) -> dict[str, int]:
        return {} if self._proc is None else {"n1": self._proc.pid}

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        children = [p for p in descendants([self._proc.pid]) if p != self._proc.pid]
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        for pid in children:  # none with the local metadata store; kept should that change
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class DurastateCluster:
    """Three nodes with every role (bench/cluster.py starts and stops them)."""

    kind = "durastate"
    setup = "cluster"
    records_metric = DURASTATE_RECORDS_METRIC

    def __init__(self, base_dir: Path) -> None:
        self._bc = BenchCluster(
            base_dir, CLUSTER_NODES, CLUSTER_REPLICATION, num_logs=BifrostConfig().num_logs, roles=ROLES
        )
        nodes = self._bc.nodes
        self.ingress_ports = [n.ports.ingress for n in nodes]
        self.admin_port = nodes[0].ports.admin
        self.metrics_urls = [f"http://{LOOPBACK}:{n.ports.admin}/metrics" for n in nodes]

    def __enter__(self) -> DurastateCluster:
        self._bc.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bc.stop_all()

    def pids(self) -> list[int]:
        return descendants(list(self.node_pids().values()))

    def node_pids(self) -> dict[str, int]:
        return {n.name: pid for n in self._bc.nodes if (pid := self._bc.cluster.pid(n)) is not None}


class Restate:
    """restate-server nodes (bench/restate_server.py) seen as a Server."""

    kind = "restate"
    records_metric = restate_server.RECORDS_METRIC

    def __init__(self, binary: Path, base_dir: Path, setup: str) -> None:
        self.setup = setup
        self._nodes = restate_server.RestateNodes(binary, base_dir, CLUSTER_NODES if setup == "cluster" else 1)
        self.ingress_ports = self._nodes.ingress_ports
        self.admin_port = self._nodes.admin_port
        self.metrics_urls = self._nodes.metrics_urls

    def __enter__(self) -> Restate:
        self._nodes.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._nodes.stop()

    def pids(self) -> list[int]:
        return self._nodes.pids()

    def node_pids(self) -> dict[str, int]:
        return {}


class UvloopAsgiServer(AsgiServer):
    """The SDK served as in the reference figures: hypercorn on uvloop."""

    def config_text(self) -> str:
        return super().config_text() + 'worker_class = "uvloop"\n'


def register(server: Server, uri: str) -> None:
    """POST /deployments, repeated until the server accepts it (a fresh cluster may not yet)."""
    body = json.dumps({"uri": uri}).encode()
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while True:
        req = urllib.request.Request(
            f"http://{LOOPBACK}:{server.admin_port}/deployments",
            data=body,
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                if resp.status in (200, 201):
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}: {e.read()[:300]!r}"
        except OSError as e:
            last = repr(e)
        if time.monotonic() > deadline:
            raise BenchError(f"{server.kind} did not register the deployment {uri}: {last}")
        time.sleep(0.2)


# ---- one measured point ----------------------------------------------------------------------


@dataclass(slots=True)
class Point:
    server: str
    setup: str
    nodes: int
    workload: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    invocations: int
    errors: int
    server_cpu_ms: float
    sdk_cpu_ms: float
    client_cpu_ms: float
    records_per_invocation: float | None
    others_cores: float
    # With --py-spy: share of the nodes' GIL-held samples per component (bench/pyspy.py).
    profile: dict[str, Any] | None = None


async def _scrape(session: aiohttp.ClientSession, urls: list[str], metric: str) -> float | None:
    total, seen = 0.0, False
    for url in urls:
        async with session.get(url) as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric:
                    total += sample.value
                    seen = True
    return total if seen else None


def _cpu(server_pids: list[int], sdk_pids: list[int]) -> tuple[float, float, float, float]:
    """CPU seconds so far: the server's, the SDK's, this process's, and the whole machine's."""
    t = os.times()
    return cpu_s(server_pids), cpu_s(sdk_pids), t.user + t.system, machine_busy_s()


async def _call(session: aiohttp.ClientSession, url: str, body: bytes | None) -> str | None:
    """One request; None when it was answered 200, else what went wrong."""
    # No body, no content type (aiohttp would otherwise say application/octet-stream).
    headers = {"content-type": "application/json"} if body is not None else {}
    skip = () if body is not None else ("Content-Type",)
    try:
        async with session.post(url, data=body, headers=headers, skip_auto_headers=skip) as resp:
            answer = await resp.read()
            return None if resp.status == 200 else f"HTTP {resp.status} {answer[:200]!r}"
    except (aiohttp.ClientError, TimeoutError) as e:
        return repr(e)


async def until_ready(server: Server, workloads: list[Workload], numbers: Iterator[int]) -> None:
    """Every workload answered once through every node: partitions have leaders, schema is known."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as session:
        for port in server.ingress_ports:
            for w in workloads:
                deadline = time.monotonic() + READY_TIMEOUT_S
                while True:
                    path = w.path(next(numbers))
                    error = await _call(session, f"http://{LOOPBACK}:{port}/{path}", w.body)
                    if error is None:
                        break
                    if time.monotonic() > deadline:
                        raise BenchError(f"{server.kind} {server.setup}: {path} not answered: {error}")
                    await asyncio.sleep(0.2)


async def measure_point(
    server: Server,
    sdk_pid: int,
    workload: Workload,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    numbers: Iterator[int],
    profile_dir: Path | None = None,
) -> Point:
    """One point; ``numbers`` are shared by every point on this server (a workflow id runs once)."""
    w = Window()
    urls = [f"http://{LOOPBACK}:{p}/" for p in server.ingress_ports]

    async def worker(i: int, session: aiohttp.ClientSession) -> None:
        base = urls[i % len(urls)]
        while not w.stop:
            url = base + workload.path(next(numbers))
            t0 = time.perf_counter()
            error = await _call(session, url, workload.body)
            t1 = time.perf_counter()
            if error is None:
                w.answered(t0, t1)
            else:
                w.failed(error)
                await asyncio.sleep(0.01)  # a failing server answers at once: don't spin on it

    # One connection per task at most, kept alive; no pool limit below the concurrency.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.ensure_future(worker(i, session)) for i in range(concurrency)]
        try:
            await asyncio.sleep(warmup_s)
            # Processes are fixed for the window: list them once, read their CPU at both ends.
            server_pids, sdk_pids = server.pids(), descendants([sdk_pid])
            records0 = await _scrape(session, server.metrics_urls, server.records_metric)
            cpu0 = _cpu(server_pids, sdk_pids)
            spy = None
            if profile_dir is not None and server.node_pids():
                label = f"{server.setup}-{workload.name}-c{concurrency}"
                spy = pyspy.PySpy(profile_dir, label, server.node_pids(), duration_s)
            w.start = time.perf_counter()
            w.end = w.start + duration_s
            await asyncio.sleep(duration_s)
            cpu1 = _cpu(server_pids, sdk_pids)
            elapsed = time.perf_counter() - w.start
            records1 = await _scrape(session, server.metrics_urls, server.records_metric)
            w.stop = True
            await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S)
            if spy is not None:
                await asyncio.to_thread(spy.wait)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    profile = None
    if spy is not None:
        samples, components, functions = pyspy.summarize(spy.files)
        profile = {"samples": samples, "components": dict(components), "functions": dict(functions[:15])}
    label = f"{server.kind} {server.setup} {workload.name} c={concurrency}"
    if w.sick(MAX_ERROR_FRACTION):
        raise BenchError(f"{label}: requests: {w.failures()}")
    n = w.done
    records = None if records0 is None or records1 is None else (records1 - records0) / n
    return Point(
        server=server.kind,
        setup=server.setup,
        nodes=len(server.ingress_ports),
        workload=workload.name,
        concurrency=concurrency,
        p50_ms=percentile(w.samples, 50) * 1e3,
        p99_ms=percentile(w.samples, 99) * 1e3,
        requests_per_s=n / elapsed,
        invocations=n,
        errors=w.errors,
        server_cpu_ms=(cpu1[0] - cpu0[0]) / n * 1e3,
        sdk_cpu_ms=(cpu1[1] - cpu0[1]) / n * 1e3,
        client_cpu_ms=(cpu1[2] - cpu0[2]) / n * 1e3,
        # What the rest of the machine used meanwhile (other programs on these shared cores).
        others_cores=max(0.0, (cpu1[3] - cpu0[3]) - sum(cpu1[i] - cpu0[i] for i in range(3))) / elapsed,
        records_per_invocation=records,
        profile=profile,
    )


# ---- a whole run -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    workloads: list[Workload]
    concurrencies: list[int]
    warmup_s: float
    duration_s: float
    profile_dir: Path | None = None


def measure_server(server_cm: Any, base_dir: Path, plan: Plan) -> list[Point]:
    """Start an SDK deployment and ``server_cm``, register, run every point, stop both."""
    points = []
    with ExitStack() as stack:
        (port,) = free_ports(1)
        sdk = UvloopAsgiServer(APP, port, base_dir / "sdk")
        stack.callback(sdk.stop)
        sdk.start()
        assert sdk.proc is not None
        server: Server = stack.enter_context(server_cm)
        register(server, sdk.url)
        register(server, sdk.url + SUSPENDING_MOUNT)
        numbers = itertools.count()
        run_loop(until_ready(server, plan.workloads, numbers))
        for workload in plan.workloads:
            for c in plan.concurrencies:
                progress(
                    f"  {server.kind} {server.setup} {workload.name} c={c}: "
                    f"{plan.warmup_s:g}s warm-up + {plan.duration_s:g}s"
                )
                points.append(
                    run_loop(
                        measure_point(
                            server,
                            sdk.proc.pid,
                            workload,
                            c,
                            plan.warmup_s,
                            plan.duration_s,
                            numbers,
                            plan.profile_dir,
                        )
                    )
                )
    return points


def ratios(points: list[Point]) -> list[dict[str, Any]]:
    """durastate / restate for every (setup, workload, concurrency) measured on both."""
    by_key = {(p.server, p.setup, p.workload, p.concurrency): p for p in points}
    out = []
    for p in points:
        r = by_key.get(("restate", p.setup, p.workload, p.concurrency))
        if p.server != "durastate" or r is None:
            continue
        out.append(
            {
                "setup": p.setup,
                "workload": p.workload,
                "concurrency": p.concurrency,
                "p50": p.p50_ms / r.p50_ms,
                "p99": p.p99_ms / r.p99_ms,
                "throughput": p.requests_per_s / r.requests_per_s,
                "server_cpu": p.server_cpu_ms / r.server_cpu_ms,
            }
        )
    return out


def verdicts(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target against the worst matching ratio row."""
    top = max((r["concurrency"] for r in rs), default=0)
    out = []
    for workload, setup, c, key, bound, what in TARGETS:
        found = [
            r
            for r in rs
            if workload in (None, r["workload"]) and setup in (None, r["setup"]) and r["concurrency"] == (c or top)
        ]
        if found:
            worst = max(found, key=lambda r: r[key])
            out.append(
                {
                    "target": what,
                    "bound": bound,
                    "ratio": worst[key],
                    "worst": f"{worst['setup']} {worst['workload']} c={worst['concurrency']}",
                    "met": worst[key] <= bound,
                }
            )
    return out


# ---- output ----------------------------------------------------------------------------------


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def render(points: list[Point], rs: list[dict[str, Any]], vs: list[dict[str, Any]]) -> str:
    rows = [
        [
            p.setup,
            str(p.nodes),
            p.server,
            WORKLOADS[p.workload].label,
            str(p.concurrency),
            _f(p.p50_ms),
            _f(p.p99_ms),
            f"{p.requests_per_s:,.0f}",
            _f(p.server_cpu_ms),
            _f(p.sdk_cpu_ms),
            _f(p.client_cpu_ms),
            _f(p.records_per_invocation, 1),
            _f(p.others_cores),
            str(p.errors),
        ]
        for p in points
    ]
    headers = ["setup", "nodes", "server", "workload", "c", "p50 ms", "p99 ms", "req/s"]
    out = [table([*headers, "server CPU-ms/inv", "SDK CPU-ms/inv", "load CPU-ms/inv", "records/inv", "others cores", "errors"], rows)]
    out.append(
        "CPU-ms/inv: user + system CPU over the window / invocations answered in it (server: every server "
        "process and its children; SDK: hypercorn; load: this process); records/inv: log records appended "
        "per invocation, from the nodes' metrics; others cores: CPU the rest of the machine used during the "
        "window, in cores (other programs on the shared cores: a large value makes the row suspect)"
    )
    if rs:
        out += ["", "durastate / restate (same run, same SDK process type, same load generator):"]
        out.append(
            table(
                ["setup", "workload", "c", "p50", "p99", "req/s", "server CPU-ms/inv"],
                [
                    [
                        r["setup"],
                        WORKLOADS[r["workload"]].label,
                        str(r["concurrency"]),
                        f"{r['p50']:.2f}x",
                        f"{r['p99']:.2f}x",
                        f"{r['throughput']:.2f}x",
                        f"{r['server_cpu']:.2f}x",
                    ]
                    for r in rs
                ],
            )
        )
    if vs:
        out += ["", "targets (durastate / restate; not asserted):"]
        for v in vs:
            out.append(
                f"  {v['target']}: {v['ratio']:.2f}x (target <= {v['bound']:g}x; worst: {v['worst']}) "
                f"{'met' if v['met'] else 'MISSED'}"
            )
    for p in points:
        if p.profile:
            out += [
                "",
                f"py-spy, {p.server} {p.setup} {p.workload} c={p.concurrency}: {p.profile['samples']} GIL-held "
                f"samples over {p.nodes} node(s) at {pyspy.RATE_HZ} Hz (the figures above are disturbed by it)",
                "  by component: "
                + ", ".join(f"{k} {v:.0%}" for k, v in list(p.profile["components"].items())[:12]),
                "  deepest own functions:",
                *(f"    {v:5.1%}  {k}" for k, v in list(p.profile["functions"].items())[:10]),
            ]
    return "\n".join(out)


def to_json(points: list[Point], rs: list[dict[str, Any]], vs: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    return {
        "plan": {
            "workloads": [w.name for w in plan.workloads],
            "concurrency": plan.concurrencies,
            "warmup_s": plan.warmup_s,
            "duration_s": plan.duration_s,
            "restate_version": restate_server.VERSION,
        },
        "rows": [asdict(p) for p in points],
        "ratios": rs,
        "targets": vs,
    }


# ---- command line ----------------------------------------------------------------------------


def _workload_list(text: str) -> list[Workload]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"workloads are {', '.join(WORKLOADS)}; got {text!r}")
    return [WORKLOADS[n] for n in names]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options; pass a parser (e.g. a CLI subcommand's) to add them to it."""
    p = parser or argparse.ArgumentParser(
        prog="durastate bench invoke", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--setup", choices=("single", "cluster", "both"), default="both")
    p.add_argument(
        "--workload",
        type=_workload_list,
        default=list(WORKLOADS.values()),
        help=f"comma-separated, of {','.join(WORKLOADS)} (default all)",
    )
    p.add_argument(
        "--concurrency",
        type=int_list,
        default=list(DEFAULT_CONCURRENCY),
        help="closed-loop clients per point, e.g. 1,32",
    )
    p.add_argument("--duration", type=positive_float, default=DEFAULT_DURATION_S, help="measured seconds per point")
    p.add_argument("--warmup", type=positive_float, default=DEFAULT_WARMUP_S, help="warm-up seconds per point")
    p.add_argument("--vs-restate", action="store_true", help=f"also run restate-server {restate_server.VERSION}")
    p.add_argument(
        "--restate-server",
        type=Path,
        help=f"a restate-server {restate_server.VERSION} binary (default: installed with npm under "
        f"{restate_server.DEFAULT_CACHE_DIR})",
    )
    p.add_argument("--base-dir", type=Path, help="where servers keep their data (default: a new temporary dir)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    p.add_argument("--json-out", type=Path, help="also write the JSON document to this file")
    p.add_argument(
        "--py-spy",
        type=Path,
        dest="py_spy",
        metavar="DIR",
        help="sample durastate's node processes with py-spy during each window (raw stacks to DIR, "
        "shares by component printed); figures measured so are disturbed by the sampling",
    )
    return p


def run(args: argparse.Namespace) -> int:
    setups = ["single", "cluster"] if args.setup == "both" else [args.setup]
    plan = Plan(args.workload, args.concurrency, args.warmup, args.duration, args.py_spy)
    own_dir = args.base_dir is None
    base = (Path(tempfile.mkdtemp(prefix="durastate-bench-invoke-")) if own_dir else args.base_dir).absolute()
    used = [d.name for d in base.iterdir()] if base.exists() else []
    if used:
        print(f"error: {base} is not empty ({', '.join(sorted(used)[:3])}); use an empty --base-dir", file=sys.stderr)
        return 2
    base.mkdir(parents=True, exist_ok=True)
    points: list[Point] = []
    try:
        with stops_everything_started():
            binary = None
            if args.vs_restate:
                binary = restate_server.ensure_installed(restate_server.DEFAULT_CACHE_DIR, args.restate_server)
            for setup in setups:
                where = base / f"durastate-{setup}"
                progress(f"durastate, {setup}, under {where}")
                server_cm = DurastateSingle(where) if setup == "single" else DurastateCluster(where)
                points += measure_server(server_cm, where, plan)
                if binary is not None:
                    where = base / f"restate-{setup}"
                    progress(f"restate-server {restate_server.VERSION}, {setup}, under {where}")
                    points += measure_server(Restate(binary, where, setup), where, plan)
    except KeyboardInterrupt:
        print("interrupted: every process this run started is stopped", file=sys.stderr)
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)
        return 130
    except (BenchError, ClusterError) as e:
        # The servers' logs under the base dir are what explains a failure: keep them.
        print(f"error: {e} (logs under {base})", file=sys.stderr)
        return 1
    if own_dir:
        shutil.rmtree(base, ignore_errors=True)
    rs = ratios(points)
    vs = verdicts(rs)
    report = to_json(points, rs, vs, plan)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(points, rs, vs))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""The append and invoke benchmarks run end to end against a real single node and leave nothing running
(the invoke benchmark with every workload, at one small concurrency).

Only that every figure exists and is positive: timings on a shared machine are not assertable."""

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import DURASTATE, clean_env

REPO = Path(__file__).resolve().parents[2]


def processes_under(base: Path) -> list[int]:
    """Live processes whose command line names the base dir: the nodes (their config path)
    and their etcd members (their data dir)."""
    needle = str(base).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def bench_dir(tmp_path: Path) -> Iterator[Path]:
    base = tmp_path / "bench"
    try:
        yield base
    finally:
        # The benchmark stops its nodes itself; this only keeps a failed run from leaking them.
        for pid in processes_under(base):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_bench(args: list[str], base: Path) -> dict:
    """`durastate <args> --json --base-dir <base>`; its JSON report."""
    result = subprocess.run(
        [*DURASTATE, *args, "--json", "--base-dir", str(base)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, f"benchmark failed:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


@pytest.mark.timeout(180)
def test_append_benchmark_on_one_node(bench_dir: Path) -> None:
    report = run_bench(["bench", "append", "--nodes", "1", "--duration", "1"], bench_dir)

    for key in ("fsync_p50_ms", "fsync_p99_ms", "rtt_p50_ms", "grpc_rtt_p50_ms"):
        assert report["floor"][key] > 0, key

    points = {(r["record_bytes"], r["concurrency"]) for r in report["runs"]}
    assert points == {(100, 1), (100, 64), (4096, 1), (4096, 64)}
    for run in report["runs"]:
        assert (run["nodes"], run["replication"]) == (1, 1)
        for key in ("p50_ms", "p99_ms", "p999_ms", "records_per_s"):
            assert run[key] > 0, (key, run)
        assert run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"], run

    assert report["failover_s"] is None, "failover needs more than one node"
    rss = report["node_peak_rss_mb"]["1"]["n1"]
    assert rss["node_mb"] > 0 and rss["etcd_mb"] > 0, rss

    assert processes_under(bench_dir) == [], "the benchmark left processes running"


@pytest.mark.timeout(120)
def test_invoke_benchmark_on_one_node(bench_dir: Path) -> None:
    report = run_bench(
        ["bench", "invoke", "--setup", "single", "--duration", "0.8", "--warmup", "0.2", "--concurrency", "2"],
        bench_dir,
    )

    workloads = ("noop", "three", "add", "hot", "promise", "sleep")
    assert report["plan"]["workloads"] == list(workloads)
    rows = {(r["server"], r["setup"], r["workload"], r["concurrency"]): r for r in report["rows"]}
    assert set(rows) == {("durastate", "single", w, 2) for w in workloads}
    for row in rows.values():
        assert row["nodes"] == 1 and row["errors"] == 0, row
        for key in ("p50_ms", "p99_ms", "requests_per_s", "invocations", "server_cpu_ms", "records_per_invocation"):
            assert row[key] > 0, (key, row)
        assert row["sdk_cpu_ms"] >= 0 and row["others_cores"] >= 0 and row["p50_ms"] <= row["p99_ms"], row
    # A workflow's request is two invocations and a promise, and a sleep's suspension and resumption
    # take more records than a no-op's whole life.
    records = {w: rows[("durastate", "single", w, 2)]["records_per_invocation"] for w in workloads}
    assert records["promise"] > records["noop"] and records["sleep"] > records["noop"], records
    # Without --vs-restate there is nothing to compare with.
    assert report["ratios"] == [] and report["targets"] == []

    assert processes_under(bench_dir) == [], "the benchmark left processes running"

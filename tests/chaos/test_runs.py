"""Real chaos runs: 3 node processes with their etcd members, RocksDB, faults, then the checker.

- a short run with process faults through `run_chaos` (in-process);
- the broken-log run: a record acknowledged during the run is overwritten in every node's
  RocksDB while the nodes are stopped; the checker must report it lost and divergent;
- the 60-second run with every nemesis through the CLI (in its private network namespace);
- `-m slow`: ten minutes per nemesis (`pytest -m slow tests/chaos`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from bifrost.record import TAG_BYTES
from chaos.checker import History
from chaos.runner import Report, run_chaos
from chaos.schedule import ALL_NEMESES, make_schedule
from node.local_cluster import LocalCluster
from tests.support.procs import clean_env

ROOT = Path(__file__).resolve().parents[2]


def _explain(report: Report) -> str:
    return json.dumps({k: v for k, v in report.as_dict().items() if k not in ("faults",)}, indent=1)[:4000]


def test_short_run_with_process_faults(tmp_path: Path) -> None:
    report = run_chaos(
        3, 24, seed=11, nemeses=["kill-sequencer", "pause", "kill-random"], base_dir=tmp_path / "c"
    )
    assert report.ok, _explain(report)
    r = report.result
    assert r.lost == 0 and r.divergent == 0 and r.acked > 0
    ran = {f.fault.nemesis for f in report.faults if f.started_s is not None}
    assert ran == {"kill-sequencer", "pause", "kill-random"}, report.faults
    assert report.skipped == {}


def _corrupt_everywhere(cluster: LocalCluster, payload: bytes, replacement: bytes) -> int:
    """Overwrite ``payload`` in every log-server's RocksDB (nodes are stopped); copies changed."""
    changed = 0
    for node in cluster.nodes:
        db = Rdict(str(node.base_dir / "log-server"), Options(raw_mode=True))
        try:
            # Stored records carry Bifrost's tag (bifrost/record.py) before the payload; the
            # forgery keeps the tag, as a bit flip in the payload would.
            hits = [(k, v) for k, v in db.items() if k[:1] == b"d" and v[TAG_BYTES:] == payload]
            for key, value in hits:
                db[key] = value[:TAG_BYTES] + replacement
            changed += len(hits)
            db.flush()
        finally:
            db.close()
    return changed


def test_checker_catches_a_log_server_that_loses_an_acknowledged_record(tmp_path: Path) -> None:
    """A log that breaks its promise must fail the run: the checker can fail."""
    tampered: dict[str, object] = {}

    def tamper(cluster: LocalCluster, history: History) -> None:
        victim = next(a for a in history.appends if a.acked and a.log_id == 1)
        tampered["victim"] = victim
        tampered["copies"] = _corrupt_everywhere(cluster, victim.payload, b"L1-not-what-was-acked")

    report = run_chaos(3, 6, seed=5, nemeses=[], base_dir=tmp_path / "c", after_run=tamper)
    assert tampered["copies"], "no stored copy of the victim record found"
    victim = tampered["victim"]
    r = report.result
    assert not report.ok
    assert r.lost == 1, _explain(report)
    # The followers read the genuine record during the run, the final reads the forged one.
    assert r.divergent == 1
    assert r.phantoms == 1  # the forged payload was never appended
    lost = [v for v in r.violations if v.kind == "lost"]
    assert f"at LSN {victim.lsn}" in lost[0].message  # type: ignore[attr-defined]


def _cli_run(tmp_path: Path, *args: str, timeout_s: float) -> tuple[int, dict, float]:
    """Run `python -m chaos --json ...`; whatever happens, the process group is gone afterwards."""
    out, err = tmp_path / "report.json", tmp_path / "stderr.txt"
    started = time.monotonic()
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chaos", "--json", "--base-dir", str(tmp_path / "c"), *args],
            cwd=ROOT,
            stdout=fout,
            stderr=ferr,
            start_new_session=True,
            env=clean_env(),
        )
        try:
            code = proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                # SIGINT first: the runner's finally stops the cluster's nodes by pid.
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    wall = time.monotonic() - started
    text = out.read_text()
    assert text.strip(), f"no report; stderr:\n{err.read_text()[-3000:]}"
    return code, json.loads(text), wall


def _assert_clean(code: int, report: dict) -> None:
    summary = {
        k: report[k] for k in ("operations", "acked", "lost", "divergent", "duplicates", "max_unavailable_s")
    }
    assert code == 0, json.dumps({**summary, "violations": report["violations"], "errors": report["errors"]})[
        :4000
    ]
    assert report["lost"] == 0 and report["divergent"] == 0 and report["acked"] > 0, summary
    for name, status in report["nemeses"].items():
        # A nemesis either ran or says why not: skipped ones are never reported as passed.
        assert (
            status["status"] == "ran" and status["faults"] >= 1 or status["status"].startswith("skipped: ")
        ), (
            name,
            status,
        )


def test_sixty_seconds_of_every_nemesis(tmp_path: Path) -> None:
    # Seed 20 schedules every nemesis at least once within 60 s (checked here, so a change to
    # the schedule's shape cannot silently drop one).
    faults = make_schedule(20, 60, list(ALL_NEMESES), ["n1", "n2", "n3"], [1, 2, 3])
    assert {f.nemesis for f in faults} == set(ALL_NEMESES)
    # The timeout only guards against a hang; no timing is asserted.
    code, report, _ = _cli_run(tmp_path, "--duration", "60", "--seed", "20", timeout_s=300)
    _assert_clean(code, report)
    assert set(report["nemeses"]) == set(ALL_NEMESES)
    if os.geteuid() == 0:
        # As root every nemesis can run here (private netns, cgroup v2, iptables).
        assert report["skipped"] == {}, report["skipped"]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("nemesis", ALL_NEMESES)
def test_ten_minutes_per_nemesis(tmp_path: Path, nemesis: str) -> None:
    code, report, _ = _cli_run(
        tmp_path, "--duration", "600", "--seed", "1", "--nemesis", nemesis, timeout_s=840
    )
    _assert_clean(code, report)

"""Disk faults on a real node (issue 7, item 4): a full disk makes the log-server read-only and
visible, appends fail at once with the reason instead of hanging until the client's deadline,
and everything recovers by itself once space is freed, with every acknowledged record intact.
A corrupted store is refused at start with one line naming the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.client import LogClient, NodeClient, NodeUnreachable
from node.ports import free_ports
from node.secret import read_file
from tests.support.procs import DURASTATE, Procs, clean_env
from tests.support.wait import wait_until

RECORD = b"x" * 64 * 1024


def _health(admin: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _env(base: Path) -> tuple[dict[str, str], int, str]:
    ingress, admin, node, data = free_ports(4)
    env = clean_env(
        DURASTATE_BASE_DIR=str(base / "data"),
        DURASTATE_PORTS_INGRESS=str(ingress),
        DURASTATE_PORTS_ADMIN=str(admin),
        DURASTATE_PORTS_NODE=str(node),
        DURASTATE_PORTS_DATA=str(data),
    )
    return env, admin, f"127.0.0.1:{node}"


def test_a_full_disk_is_visible_fails_fast_and_recovers(
    procs: Procs, tmp_path: Path, small_disk: Path
) -> None:
    env, admin, address = _env(small_disk)
    proc = procs.spawn([*DURASTATE, "server"], tmp_path / "node.log", cwd=tmp_path, env=env)
    try:
        wait_until(lambda: _health(admin)[0] == 200, 30, "node healthy")
        acked: dict[int, bytes] = {}
        secret = read_file(small_disk / "data" / "cluster.secret")
        with NodeClient(address, timeout_s=30, secret=secret) as node:
            log = LogClient(node, timeout_s=30)
            acked[log.append(1, [b"first"])] = b"first"
            # Leave a little room, then fill it with appends until the disk refuses one.
            free = os.statvfs(small_disk)
            filler_size = free.f_bavail * free.f_frsize - 1024 * 1024
            with open(small_disk / "filler", "wb") as f:
                f.write(b"\0" * max(filler_size, 0))
            failure = None
            for i in range(200):
                payload = RECORD[:-8] + f"{i:08d}".encode()
                try:
                    acked[log.append(1, [payload])] = payload
                except NodeUnreachable as e:
                    failure = str(e)
                    break
            assert failure is not None, "the disk never filled up"
            assert "DEADLINE_EXCEEDED" not in failure and "can take writes" in failure, failure
            status, body = _health(admin)
            assert status == 503 and "read-only" in body["reason"] and "No space left" in body["reason"], body
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            assert 'durastate_log_server_storage_state{state="read-only"} 1.0' in metrics
            assert "durastate_log_server_faults_total 1.0" in metrics
            (small_disk / "filler").unlink()
            wait_until(lambda: _health(admin)[0] == 200, 30, "recovery after space is freed")
            acked[log.append(1, [b"after"])] = b"after"
            got = {e.lsn: e.payload for e in log.read(1, 1, follow=False)}
        lost = [lsn for lsn, p in acked.items() if got.get(lsn) != p]
        assert not lost, f"acknowledged records lost: {lost}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_corrupted_store_is_refused_at_start_with_one_line(procs: Procs, tmp_path: Path) -> None:
    env, admin, address = _env(tmp_path)
    proc = procs.spawn([*DURASTATE, "server"], tmp_path / "node.log", cwd=tmp_path, env=env)
    wait_until(lambda: _health(admin)[0] == 200, 30, "node healthy")
    secret = read_file(tmp_path / "data" / "cluster.secret")
    with NodeClient(address, timeout_s=30, secret=secret) as node:
        LogClient(node, timeout_s=30).append(1, [f"record-{i}".encode() * 20 for i in range(2000)])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    # Make sure the data sits in an SST file (a clean stop may leave it in the WAL).
    from rocksdict import Options, Rdict

    db = Rdict(str(tmp_path / "data" / "log-server"), Options(raw_mode=True))
    db.flush()
    db.close()
    sst = sorted((tmp_path / "data" / "log-server").glob("*.sst"))[-1]
    data = bytearray(sst.read_bytes())
    data[len(data) // 3] ^= 0xFF
    sst.write_bytes(bytes(data))
    refused = procs.spawn([*DURASTATE, "server"], tmp_path / "refused.log", cwd=tmp_path, env=env)
    assert refused.wait(timeout=60) == 1
    lines = (tmp_path / "refused.log").read_text().strip().splitlines()
    errors = [line for line in lines if line.startswith("durastate:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(lines), lines
    assert "corrupted" in errors[0] and sst.name in errors[0], errors[0]


@pytest.mark.parametrize("store", ["metadata", "log-server"])
def test_a_truncated_current_file_is_refused_with_one_line(procs: Procs, tmp_path: Path, store: str) -> None:
    env, admin, _ = _env(tmp_path)
    proc = procs.spawn([*DURASTATE, "server"], tmp_path / "node.log", cwd=tmp_path, env=env)
    wait_until(lambda: _health(admin)[0] == 200, 30, "node healthy")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    current = tmp_path / "data" / store / "CURRENT"
    current.write_bytes(current.read_bytes()[:3])
    refused = procs.spawn([*DURASTATE, "server"], tmp_path / "refused.log", cwd=tmp_path, env=env)
    assert refused.wait(timeout=60) == 1
    lines = (tmp_path / "refused.log").read_text().strip().splitlines()
    errors = [line for line in lines if line.startswith("durastate:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(lines), lines
    assert store in errors[0], errors[0]

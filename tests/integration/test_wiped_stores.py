"""Wiped stores are detected and never trusted (issue 7, item 3).

Single node: a node whose log-server store is gone, or whose metadata store is gone while its
log data remains, refuses to start with one line saying what to do, and writes nothing.
Three nodes: a wiped log-server comes back non-authoritative; the log is reconfigured without
it and its records are rebuilt onto it from the other nodes; killing the one node that held the
records alone then loses nothing.
"""

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from rocksdict import AccessType, Options, Rdict

from node.client import LogClient, NodeClient
from node.local_cluster import LocalCluster
from node.ports import free_ports
from tests.integration.test_local_cluster import cluster_dir  # noqa: F401  (fixture)
from tests.integration.test_single_node import start_node, stop_node
from tests.support.procs import DURASTATE, Procs, clean_env, run_cli
from tests.support.wait import wait_until


def _contents(base: Path) -> dict[str, dict[bytes, bytes]]:
    """Every key and value of every RocksDB store under the base dir (not its files: RocksDB
    rewrites its MANIFEST and OPTIONS at every open, which changes nothing stored)."""
    stores = {}
    for store in ("metadata", "log-server"):
        path = base / store
        if not path.is_dir() or not any(path.iterdir()):
            stores[store] = {}
            continue
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            stores[store] = dict(db.items())
        finally:
            db.close()
    return stores


def _single_node(procs: Procs, tmp_path: Path) -> tuple[dict[str, str], str]:
    ingress, admin, node, data = free_ports(4)
    env = clean_env(
        DURASTATE_PORTS_INGRESS=str(ingress),
        DURASTATE_PORTS_ADMIN=str(admin),
        DURASTATE_PORTS_NODE=str(node),
        DURASTATE_PORTS_DATA=str(data),
    )
    proc = start_node(procs, tmp_path, env)
    address = f"127.0.0.1:{node}"
    assert run_cli("log", "append", "1", "x", "y", "--address", address, cwd=tmp_path).stdout.split() == [
        "1",
        "2",
    ]
    stop_node(proc)
    return env, address


def _refused(procs: Procs, tmp_path: Path, env: dict[str, str]) -> str:
    before = _contents(tmp_path / "durastate-data")
    proc = procs.spawn([*DURASTATE, "server"], tmp_path / "refused.log", cwd=tmp_path, env=env)
    assert proc.wait(timeout=60) == 1
    lines = (tmp_path / "refused.log").read_text().strip().splitlines()
    errors = [line for line in lines if line.startswith("durastate:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(lines), lines
    assert _contents(tmp_path / "durastate-data") == before, "a refused start must not change the stores"
    return errors[0]


def test_single_node_refuses_a_wiped_log_server(procs: Procs, tmp_path: Path) -> None:
    env, _ = _single_node(procs, tmp_path)
    shutil.rmtree(tmp_path / "durastate-data" / "log-server")
    (tmp_path / "durastate-data" / "log-server").mkdir()
    message = _refused(procs, tmp_path, env)
    assert "log-server store" in message and "only copy" in message and "remove the whole base dir" in message


def test_single_node_refuses_lost_metadata(procs: Procs, tmp_path: Path) -> None:
    env, _ = _single_node(procs, tmp_path)
    shutil.rmtree(tmp_path / "durastate-data" / "metadata")
    message = _refused(procs, tmp_path, env)
    assert "metadata store" in message and "is missing" in message and "restore" in message


def _health(cluster: LocalCluster, name: str) -> dict:
    url = f"http://127.0.0.1:{cluster.node(name).ports.admin}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def _read(cluster: LocalCluster, node: str, log_id: int) -> list[tuple[int, bytes]]:
    with NodeClient(cluster.node(node).grpc_address) as client:
        return [(e.lsn, e.payload) for e in LogClient(client, timeout_s=30).read(log_id, 1, follow=False)]


def test_a_wiped_replica_loses_nothing(cluster_dir: Path) -> None:  # noqa: F811
    base = str(cluster_dir)
    assert run_cli("cluster", "up", "--nodes", "3", "--base-dir", base, "--free-ports").returncode == 0
    cluster = LocalCluster.load(cluster_dir)
    n1, n2, n3 = (cluster.node(n) for n in ("n1", "n2", "n3"))
    cluster.kill(n3)
    payloads = [f"r{i}".encode() for i in range(50)]
    with NodeClient(n1.grpc_address) as client:
        first = LogClient(client, timeout_s=30).append(1, payloads)
    acked = {first + i: p for i, p in enumerate(payloads)}
    cluster.spawn(n3)
    cluster.wait_healthy([n3])
    cluster.kill(n2)
    shutil.rmtree(n2.base_dir / "log-server")
    cluster.spawn(n2)
    cluster.wait_healthy([n2])
    assert _health(cluster, "n2")["status"] == "degraded", "a wiped store must show"
    # Reconfigured without it, then rebuilt onto it: it is whole again.
    wait_until(lambda: _health(cluster, "n2")["status"] == "ok", 60, "n2 rebuilt and read-write")
    cluster.kill(n1)
    for node in ("n2", "n3"):
        # The first reads wait out the failure detector and the reconfiguration away from n1.
        got = dict(wait_until(lambda node=node: _read(cluster, node, 1), 60, f"a full read through {node}"))
        missing = {lsn: p for lsn, p in acked.items() if got.get(lsn) != p}
        assert not missing, f"{node} lost {len(missing)} acknowledged records"


def test_a_wiped_etcd_member_rejoins(cluster_dir: Path) -> None:  # noqa: F811
    base = str(cluster_dir)
    assert run_cli("cluster", "up", "--nodes", "3", "--base-dir", base, "--free-ports").returncode == 0
    cluster = LocalCluster.load(cluster_dir)
    n3 = cluster.node("n3")
    assert run_cli("metadata", "put", "k", "before", "--base-dir", base, "--node", "n1").returncode == 0
    cluster.kill(n3)
    shutil.rmtree(n3.base_dir / "etcd")
    cluster.spawn(n3)
    cluster.wait_healthy([n3])
    got = run_cli("metadata", "get", "k", "--base-dir", base, "--node", "n3", "--json")
    assert got.returncode == 0 and json.loads(got.stdout)["value"] == "before", got.stderr
    # It is a full member again: with n1 down, n2 and n3 still form the quorum.
    cluster.kill(cluster.node("n1"))
    put = wait_until(
        lambda: run_cli("metadata", "put", "k", "after", "--base-dir", base, "--node", "n3").returncode == 0,
        30,
        "a write through n3 with n1 down",
    )
    assert put
    # And it survives its own restart (no panic on a second start).
    cluster.kill(n3)
    cluster.spawn(n3)
    cluster.wait_healthy([n3])

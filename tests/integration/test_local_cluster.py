"""A 3-node local cluster with etcd metadata: leader loss, restart with a higher generation,
restart of every node keeping every acknowledged write, and a clean `cluster down`."""

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.client import NodeClient, put_with_retry
from node.local_cluster import LocalCluster
from tests.support.procs import run_cli
from tests.support.wait import wait_until


def cli_json(*args: str) -> dict:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, f"durastate {' '.join(args)} failed:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    base = tmp_path / "cluster"
    try:
        yield base
    finally:
        run_cli("cluster", "down", "--base-dir", str(base))
        # Whatever `down` missed is still stopped, by pid.
        if LocalCluster.exists(base):
            cluster = LocalCluster.load(base)
            for node in cluster.nodes:
                for pid in cluster.processes(node):
                    os.kill(pid, signal.SIGKILL)


def node_pids_with_children(cluster: LocalCluster) -> list[int]:
    return [p for node in cluster.nodes for p in cluster.processes(node)]


def still_running(pids: list[int]) -> list[int]:
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


def test_three_nodes_survive_leader_loss_and_full_restart(cluster_dir: Path) -> None:
    base = str(cluster_dir)
    status = cli_json("cluster", "up", "--nodes", "3", "--base-dir", base, "--free-ports")
    assert [n["alive"] for n in status["nodes"]] == [True, True, True]
    assert {n["generation"] for n in status["nodes"]} == {1}
    leader = status["metadata_leader"]
    assert leader in {"n1", "n2", "n3"}
    cluster = LocalCluster.load(cluster_dir)
    # Each node runs its own etcd member in its process group.
    assert all(len(cluster.processes(n)) >= 2 for n in cluster.nodes)

    # Kill the node that holds the etcd leader; a write through a survivor must go through.
    killed = run_cli("cluster", "kill", leader, "--base-dir", base)
    assert killed.returncode == 0, killed.stderr
    survivor = next(n for n in ("n1", "n2", "n3") if n != leader)
    put = cli_json(
        "metadata", "put", "after-failover", "yes", "--base-dir", base, "--node", survivor, "--timeout", "20"
    )
    assert put["version"] > 0
    status = cli_json("cluster", "status", "--base-dir", base)
    by_name = {n["name"]: n for n in status["nodes"]}
    assert by_name[leader]["alive"] is False
    assert by_name[leader]["generation"] == 1, "a dead node's generation comes from the metadata store"
    assert wait_until(
        lambda: cli_json("cluster", "status", "--base-dir", base)["metadata_leader"] not in (None, leader),
        20,
        "a new metadata leader",
    )

    # The killed node rejoins with a higher generation and sees the write made without it.
    restarted = cli_json("cluster", "start", leader, "--base-dir", base)
    assert restarted["nodes"][0]["generation"] == 2
    got = cli_json("metadata", "get", "after-failover", "--base-dir", base, "--node", leader)
    assert got["value"] == "yes"

    # Every acknowledged write survives a restart of all three nodes.
    acked: dict[str, int] = {}
    with NodeClient(cluster.node("n2").grpc_address) as client:
        for i in range(30):
            acked[f"key-{i}"] = put_with_retry(client, f"key-{i}", f"value-{i}".encode(), None, 10)
    before = node_pids_with_children(cluster)
    down = run_cli("cluster", "down", "--base-dir", base)
    assert down.returncode == 0, down.stderr
    assert still_running(before) == []
    status = cli_json("cluster", "up", "--base-dir", base)
    assert [n["alive"] for n in status["nodes"]] == [True, True, True]
    generations = {n["name"]: n["generation"] for n in status["nodes"]}
    assert generations == {"n1": 2, "n2": 2, "n3": 2} | {leader: 3}
    for node in ("n1", "n3"):
        with NodeClient(cluster.node(node).grpc_address) as client:
            for key, version in acked.items():
                found = client.get(key)
                assert found is not None and found.version == version, key
                assert found.value == f"value-{key.removeprefix('key-')}".encode()

    # `down` leaves nothing running: no node, no etcd member.
    before = node_pids_with_children(cluster)
    assert len(before) >= 6
    assert run_cli("cluster", "down", "--base-dir", base).returncode == 0
    assert still_running(before) == []


def test_status_of_a_missing_cluster_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("cluster", "status", "--base-dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert "no local cluster" in result.stderr

"""Issue 7 on a real 3-node cluster (etcd metadata): who may speak on the data port, forged
heartbeats, a too-large etcd value, and garbage written straight into etcd."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from bifrost.core._types import GenerationalNodeId
from bifrost.replicated.messages import Heartbeat
from metadata import EtcdMetadataStore
from metadata.records import NODES_CONFIG_KEY, NodesConfig, decode
from node.client import InvalidRequest, NodeClient
from node.config import LOG_ONLY_ROLES
from node.local_cluster import ClusterNode, LocalCluster
from tests.integration.test_local_cluster import cluster_dir  # noqa: F401  (fixture)
from tests.support.data_port import RawPeer
from tests.support.procs import run_cli


def cli(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, f"durastate {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def peer_alive(node: ClusterNode, peer: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports.admin}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r'durastate_peer_alive\{peer="' + peer + r'"\} (\S+)', text)
    assert found, text
    return float(found.group(1))


def refused(node: ClusterNode, reason: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports.admin}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r'durastate_data_port_refused_total\{reason="' + reason + r'"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_data_port_identity_forged_heartbeats_and_garbage_in_etcd(cluster_dir: Path) -> None:  # noqa: F811
    base = str(cluster_dir)
    cli(
        "cluster",
        "up",
        "--nodes",
        "3",
        "--base-dir",
        base,
        "--free-ports",
        "--roles",
        ",".join(LOG_ONLY_ROLES),
    )
    cluster = LocalCluster.load(cluster_dir)
    assert (cluster_dir / "cluster.secret").stat().st_mode & 0o777 == 0o600
    n1, _, n3 = cluster.nodes
    with NodeClient(n1.grpc_address) as client:
        found = client.get(NODES_CONFIG_KEY)
        assert found is not None
        ids = {
            name: GenerationalNodeId(rec.node_id, rec.generation)
            for name, rec in decode(NodesConfig, found.value).nodes.items()
        }
    cli("log", "append", "1", "one", "--base-dir", base)
    cli("log", "append", "2", "two", "--base-dir", base)

    # Only the cluster's nodes, in their current generation, get past the handshake; a node may
    # not speak for another.
    async def speak() -> None:
        for who, why in (
            (GenerationalNodeId(99, 1), "unknown node"),
            (GenerationalNodeId(ids["n2"].node, 0), "stale generation"),
        ):
            raw = await RawPeer.connect(n1.ports.data)
            with pytest.raises(ConnectionError, match=why):
                await raw.authenticate(cluster.secret, who, ids["n1"].node)
        raw = await RawPeer.connect(n1.ports.data)
        await raw.authenticate(cluster.secret, ids["n2"], ids["n1"].node)
        raw.send(0, Heartbeat(ids["n3"].node, 10**9))  # would make n1 ignore n3's real heartbeats
        await asyncio.sleep(0.1)
        raw.close()

    asyncio.run(speak())
    assert refused(n1, "unknown-node") == 1 and refused(n1, "stale-generation") == 1
    assert refused(n1, "heartbeat-not-from-its-node") == 1
    # n3 keeps heartbeating: n1 must not declare it dead (the failure timeout is 1 s).
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert peer_alive(n1, "n3") == 1.0
        time.sleep(0.2)

    # etcd's request limit: refused as too large, definitely not written (not "outcome unknown").
    with NodeClient(n1.grpc_address) as client:
        with pytest.raises(InvalidRequest, match="too large"):
            client.put("big", b"x" * int(3.9 * 1024 * 1024))
        assert client.get("big") is None

    # Garbage written straight into etcd (as with etcdctl): clear one-line errors naming the key,
    # running nodes keep their last good values, and --force with a good value repairs it.
    good = {
        key: json.loads(cli("metadata", "get", key, "--json", "--base-dir", base))["value"]
        for key in (NODES_CONFIG_KEY, "log_chain_1")
    }

    async def corrupt() -> None:
        store = EtcdMetadataStore([f"127.0.0.1:{n1.ports.etcd_client}"])
        try:
            for key in good:
                await store.put(key, b"\x01garbage")
        finally:
            await store.close()

    asyncio.run(corrupt())
    chain = run_cli("log", "chain", "1", "--base-dir", base)
    assert chain.returncode == 1 and "Traceback" not in chain.stderr
    assert len(chain.stderr.strip().splitlines()) == 1 and "'log_chain_1'" in chain.stderr
    assert cli("log", "append", "2", "still", "--base-dir", base).split() == ["2"]
    cli("metadata", "put", "log_chain_1", good["log_chain_1"], "--force", "--base-dir", base)
    assert cli("log", "read", "1", "--base-dir", base) == "1 one\n"

    cli("cluster", "kill", "n3", "--base-dir", base)
    restart = run_cli("cluster", "start", "n3", "--base-dir", base)
    assert restart.returncode == 1
    last = [line for line in n3.log_path.read_text().splitlines() if line.startswith("durastate:")][-1]
    assert "cannot start" in last and "'nodes_config'" in last, last
    cli(
        "metadata",
        "put",
        NODES_CONFIG_KEY,
        good[NODES_CONFIG_KEY],
        "--force",
        "--base-dir",
        base,
        "--node",
        "n1",
    )
    status = json.loads(cli("cluster", "start", "n3", "--base-dir", base, "--json"))
    assert status["nodes"][0]["generation"] == ids["n3"].generation + 1
    assert cli("log", "append", "1", "after", "--base-dir", base).split() == ["2"]

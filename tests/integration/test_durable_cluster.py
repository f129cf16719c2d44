"""Durable execution on a real 3-node cluster (etcd metadata, replication 2): a node that leads
partitions is killed while virtual objects are being updated through another node's ingress.

Every update carries an idempotency key and is repeated, with the same key, until it is
answered: the other nodes take over the dead node's partitions, re-invoke what was running
from the journals, and every update is applied exactly once, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata.partitions import PARTITION_TABLE_KEY, PartitionTable
from metadata.records import NODES_CONFIG_KEY, NodesConfig, decode
from node.client import NodeClient
from node.local_cluster import LocalCluster
from processor.ids import partition_for_key, partition_key_of
from tests.integration.test_local_cluster import cluster_dir  # noqa: F401  (fixture)
from tests.support.durable import NodeHttp
from tests.support.procs import run_cli
from tests.support.sdk_server import AsgiServers, asgi_servers  # noqa: F401
from tests.support.wait import wait_until

SUITE = "tests.sdk_services.invoker_suite:app"
ADDS_PER_KEY = 30
# The victim is killed once its keys have this many updates answered.
KILL_AFTER = 10


def cli(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, f"durastate {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def cluster(cluster_dir: Path) -> Iterator[LocalCluster]:  # noqa: F811
    cli("cluster", "up", "--nodes", "3", "--base-dir", str(cluster_dir), "--free-ports")
    yield LocalCluster.load(cluster_dir)


def http_of(cluster: LocalCluster, name: str) -> NodeHttp:
    ports = cluster.node(name).ports
    return NodeHttp(ports.ingress, ports.admin)


def node_names(cluster: LocalCluster) -> dict[int, str]:
    with NodeClient(cluster.node("n1").grpc_address, secret=cluster.secret) as client:
        found = client.get(NODES_CONFIG_KEY)
    assert found is not None
    return {n.node_id: name for name, n in decode(NodesConfig, found.value).nodes.items()}


def partition_table(cluster: LocalCluster, via: str) -> PartitionTable:
    def read() -> PartitionTable | None:
        with NodeClient(cluster.node(via).grpc_address, secret=cluster.secret) as client:
            found = client.get(PARTITION_TABLE_KEY)
        if found is None:
            return None
        table = decode(PartitionTable, found.value)
        return table if all(p.leader for p in table.partitions) else None

    return wait_until(read, 60, "every partition to have a leader")


class Updater(threading.Thread):
    """Adds 1 to one counter ``ADDS_PER_KEY`` times, each add repeated with its idempotency key
    until answered; records what each add answered."""

    def __init__(self, http: NodeHttp, key: str) -> None:
        super().__init__()
        self.http, self.key = http, key
        self.answers: list[int] = []
        self.repeats = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(ADDS_PER_KEY):
                self.answers.append(self._add(f"{self.key}-{i}"))
        except BaseException as e:  # reported by the test
            self.error = e

    def _add(self, idempotency_key: str) -> int:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = self.http.call(f"Counter/{self.key}/add", 1, headers={"idempotency-key": idempotency_key})
                if r.status == 200:
                    return int(r.json())
            except OSError:
                pass
            self.repeats += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"add {idempotency_key} not answered within 120 s")
            time.sleep(0.2)  # a client's back-off between repeats, not synchronisation


def test_updates_are_exactly_once_when_a_leader_node_dies(
    cluster: LocalCluster,
    asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    sdk = asgi_servers.start(SUITE)
    entry = http_of(cluster, "n1")
    entry.register(sdk.url)
    table = partition_table(cluster, "n1")
    count = len(table.partitions)
    # One counter per partition, so that every leader, the victim's too, has work.
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < count:
        keys.setdefault(partition_for_key(partition_key_of(f"k{n}"), count), f"k{n}")
        n += 1
    names = node_names(cluster)
    # A node other than the ingress's (n1) that leads at least one partition.
    victim_id = next(p.leader for p in table.partitions if names[p.leader] != "n1")
    victim = names[victim_id]
    victim_keys = [keys[p] for p, placement in enumerate(table.partitions) if placement.leader == victim_id]
    assert victim_keys, f"{victim} leads nothing: {table}"

    updaters = [Updater(entry, key) for key in keys.values()]
    for u in updaters:
        u.start()
    watched = [u for u in updaters if u.key in victim_keys]
    wait_until(lambda: all(len(u.answers) >= KILL_AFTER for u in watched), 60, "updates before the kill")
    cli("cluster", "kill", victim, "--base-dir", str(cluster.base_dir))
    for u in updaters:
        u.join(timeout=300)
    for u in updaters:
        assert u.error is None, f"{u.key}: {u.error!r}"
        # Each add ran once, after the one before it: the answers count up by one.
        assert u.answers == list(range(1, ADDS_PER_KEY + 1)), (u.key, u.answers)
    assert ok_get(entry, keys.values()) == {k: ADDS_PER_KEY for k in keys.values()}
    after = partition_table(cluster, "n1")
    assert all(p.leader != victim_id for p in after.partitions), after

    # The victim comes back, catches up from the log and answers like everyone else.
    cli("cluster", "start", victim, "--base-dir", str(cluster.base_dir))
    back = http_of(cluster, victim)
    wait_until(
        lambda: ok_get(back, keys.values()) == {k: ADDS_PER_KEY for k in keys.values()},
        60,
        "the restarted node to answer the same counts",
    )


def ok_get(http: NodeHttp, keys: object) -> dict[str, int]:
    out = {}
    for key in keys:  # type: ignore[attr-defined]
        r = http.call(f"Counter/{key}/get")
        assert r.status == 200, r
        out[key] = int(r.json())
    return out

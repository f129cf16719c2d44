"""Durable execution on a real 3-node cluster (etcd metadata, replication 2) with services of the
official Python SDK (tests/sdk_services/invoker_suite.py under hypercorn).

* Every handler kind answers through the ingress of every node: any node appends to the target
  partition's log and gets the answer from that partition's leader, wherever it runs.
* A node that leads partitions is killed (kill -9) while counters are updated and 3-step
  handlers run through another node's ingress. Every request carries an idempotency key and is
  repeated, with the same key, until answered: the other nodes take over the dead node's
  partitions and re-invoke what was running from the journals. Every update is applied exactly
  once and in order, and no step whose result a handler used runs again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from metadata.partitions import PARTITION_TABLE_KEY, PartitionTable
from metadata.records import NODES_CONFIG_KEY, NodesConfig, decode
from node.client import NodeClient
from node.local_cluster import LocalCluster
from processor.ids import partition_for_key, partition_key_of
from tests.support.durable import NodeHttp, Response
from tests.support.procs import run_cli
from tests.support.sdk_server import AsgiServer, AsgiServers, asgi_servers, module_asgi_servers  # noqa: F401
from tests.support.wait import wait_until

SUITE = "tests.sdk_services.invoker_suite:app"
NODES = ("n1", "n2", "n3")


def cli(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, f"durastate {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@contextlib.contextmanager
def running_cluster(base: Path) -> Iterator[LocalCluster]:
    try:
        cli("cluster", "up", "--nodes", "3", "--base-dir", str(base), "--free-ports")
        yield LocalCluster.load(base)
    finally:
        run_cli("cluster", "down", "--base-dir", str(base))
        # Whatever `down` missed is still stopped, by pid.
        if LocalCluster.exists(base):
            cluster = LocalCluster.load(base)
            for node in cluster.nodes:
                for pid in cluster.processes(node):
                    os.kill(pid, signal.SIGKILL)


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


def wait_nodesets_of_three(cluster: LocalCluster) -> int:
    """Until every partition has a leader and every log's open segment is on all three nodes;
    returns the number of partitions. Nodes start at different moments, and a log created while
    only two were up gets a nodeset of two (no fault tolerance with replication 2) until the
    watchdog grows it: only then is a kill survivable."""
    logs = len(partition_table(cluster, "n1").partitions)

    def spread() -> bool:
        for log_id in range(logs):
            out = run_cli("log", "chain", str(log_id), "--base-dir", str(cluster.base_dir), "--json")
            if out.returncode != 0 or len(json.loads(out.stdout)["segments"][-1]["nodeset"]) != 3:
                return False
        return True

    wait_until(spread, 60, "every log's nodeset to span the three nodes")
    return logs


def ok(r: Response) -> object:
    assert r.status == 200, r
    return r.json()


# --- every handler kind, through every node ------------------------------------------------


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
    module_asgi_servers: AsgiServers,  # noqa: F811
) -> Iterator[LocalCluster]:
    sdk = module_asgi_servers.start(SUITE)
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        http_of(cluster, "n2").register(sdk.url)
        yield cluster


@pytest.mark.parametrize("via", NODES)
def test_every_handler_kind_answers_through_every_node(shared: LocalCluster, via: str) -> None:
    http = http_of(shared, via)
    assert ok(http.call("Greeter/greet", via)) == f"Hello, {via}!"
    assert ok(http.call("Steps/three", via)) == f"{via}0-{via}1-{via}2"
    assert ok(http.call("Sleeper/nap", 100)) == "awake"
    assert ok(http.call("Caller/call_greeter", via)) == f"Hello, {via}!"
    key = f"kinds-{via}"
    assert ok(http.call(f"Counter/{key}/add", 5)) == 5
    assert ok(http.call("Caller/add_to", {"key": key, "delay_ms": 200})) == 6
    wait_until(lambda: http.call(f"Counter/{key}/get").json() == 7, 30, "the delayed add to run")
    idem = {"idempotency-key": f"once-{via}"}
    first, again = (http.call(f"Counter/{key}/add", 1, headers=idem) for _ in range(2))
    assert (first.json(), again.json()) == (8, 8)
    assert first.headers["x-restate-id"] == again.headers["x-restate-id"]
    sent = http.call(f"Counter/{key}/add/send", 1, headers={"idempotency-key": f"sent-{via}"})
    resent = http.call(f"Counter/{key}/add/send", 1, headers={"idempotency-key": f"sent-{via}"})
    assert (sent.status, sent.json()["status"]) == (202, "Accepted")
    assert (resent.status, resent.json()["status"]) == (202, "PreviouslyAccepted")
    wait_until(lambda: http.call(f"Counter/{key}/get").json() == 9, 30, "the sent add to run once")
    # Another node reads the same state.
    other = http_of(shared, NODES[(NODES.index(via) + 1) % 3])
    assert ok(other.call(f"Counter/{key}/get")) == 9


# --- kill -9 of a leader's node ---------------------------------------------------------------

ADDS_PER_KEY = 60
JOBS_PER_WORKER = 12
# The victim is killed once its counters have this many answers (of ADDS_PER_KEY).
KILL_AFTER = 10


class Worker(threading.Thread):
    """Sends ``count`` requests one after another, each repeated with its idempotency key until
    answered (a client's way through a failover); records each answer."""

    def __init__(self, count: int, request: Callable[[int, dict[str, str]], Response]) -> None:
        super().__init__()
        self.count, self.request = count, request
        self.answers: list[object] = []
        self.repeats = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(self.count):
                self.answers.append(self._answer(i))
        except BaseException as e:  # reported by the test
            self.error = e

    def _answer(self, i: int) -> object:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = self.request(i, {"idempotency-key": f"{self.name}-{i}"})
                if r.status == 200:
                    return r.json()
            except OSError:
                pass
            self.repeats += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"request {i} of {self.name} not answered within 120 s")
            time.sleep(0.2)  # a client's back-off between repeats, not synchronisation


def used_steps_repeated(lines: list[str]) -> list[str]:
    """Steps that executed again after the handler had moved past them (used their result)."""
    seen: dict[str, int] = {}
    repeated = []
    for line in lines:
        name, step = line.rsplit(" ", 1)
        k = int(step)
        if k < seen.get(name, -1):
            repeated.append(line)
        seen[name] = max(seen.get(name, -1), k)
    return repeated


def test_a_leader_node_killed_mid_handler_loses_nothing_and_repeats_no_used_step(
    tmp_path: Path,
    asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    sdk = asgi_servers.start(SUITE)
    with running_cluster(tmp_path / "cluster") as cluster:
        entry = http_of(cluster, "n1")
        entry.register(sdk.url)
        count = wait_nodesets_of_three(cluster)
        table = partition_table(cluster, "n1")
        names = node_names(cluster)
        # A node other than the ingress's (n1) that leads at least one partition.
        victim_id = next(p.leader for p in table.partitions if names[p.leader] != "n1")
        victim = names[victim_id]
        # One counter per partition, so that every leader, the victim's too, has work.
        keys: dict[int, str] = {}
        n = 0
        while len(keys) < count:
            keys.setdefault(partition_for_key(partition_key_of(f"k{n}"), count), f"k{n}")
            n += 1
        steps_log = tmp_path / "steps.log"

        def add(key: str) -> Callable[[int, dict[str, str]], Response]:
            return lambda i, headers: entry.call(f"Counter/{key}/add", 1, headers=headers)

        def job(w: int) -> Callable[[int, dict[str, str]], Response]:
            # Plain-service invocations: random partitions, the victim's among them.
            return lambda i, headers: entry.call(
                "Steps/recorded", {"name": f"w{w}-{i}", "log": str(steps_log)}, headers=headers
            )

        counters = {key: Worker(ADDS_PER_KEY, add(key)) for key in keys.values()}
        jobs = [Worker(JOBS_PER_WORKER, job(w)) for w in range(4)]
        workers = [*counters.values(), *jobs]
        for w in workers:
            w.start()
        # Killed while the victim's counters are mid-way: their remaining adds need the failover.
        mine = [
            counters[keys[p]] for p, placement in enumerate(table.partitions) if placement.leader == victim_id
        ]
        wait_until(lambda: all(len(w.answers) >= KILL_AFTER for w in mine), 60, "answers before the kill")
        # Counted just before the SIGKILL: kill() returns only once the node's processes are
        # reaped, by when the failover may have let the victim's counters finish.
        unfinished_at_kill = [ADDS_PER_KEY - len(w.answers) for w in mine]
        cluster.kill(cluster.node(victim))
        for w in workers:
            w.join(timeout=300)
        for w in workers:
            assert w.error is None, f"{w.name}: {w.error!r}"
        for key, w in counters.items():
            # Each add ran once, after the one before it: the answers count up by one.
            assert w.answers == list(range(1, ADDS_PER_KEY + 1)), (key, w.answers)
        for w, worker in enumerate(jobs):
            assert worker.answers == [f"w{w}-{i}0-w{w}-{i}1-w{w}-{i}2" for i in range(JOBS_PER_WORKER)]
        lines = steps_log.read_text().splitlines()
        assert used_steps_repeated(lines) == [], "a step ran again after its result was used"
        assert any(n > 0 for n in unfinished_at_kill), "the victim's counters were done before the kill"
        assert {line for line in lines} == {
            f"w{w}-{i} {k}" for w in range(4) for i in range(JOBS_PER_WORKER) for k in range(3)
        }
        wait_until(
            lambda: all(p.leader != victim_id for p in partition_table(cluster, "n1").partitions),
            60,
            "the controller to move every leader off the dead node",
        )

        # The victim comes back, catches up from the log and answers like everyone else.
        cli("cluster", "start", victim, "--base-dir", str(cluster.base_dir))
        back = http_of(cluster, victim)
        expected = {key: ADDS_PER_KEY for key in keys.values()}
        wait_until(
            lambda: {key: back.call(f"Counter/{key}/get").json() for key in keys.values()} == expected,
            60,
            "the restarted node to answer the same counts",
        )

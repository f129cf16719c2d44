"""The replicated log on a real 3-node cluster: appends keep going while the sequencer's node is
killed, and afterwards every acknowledged record is readable at the same LSN from every node."""

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.client import LogClient, NodeClient, NodeUnreachable
from node.config import LOG_ONLY_ROLES
from node.local_cluster import LocalCluster
from tests.integration.test_local_cluster import cluster_dir  # noqa: F401  (fixture)
from tests.support.procs import run_cli
from tests.support.wait import wait_until


def cli(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, f"durastate {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def chain_of(base: str, log_id: int, node: str | None = None) -> dict:
    extra = ["--node", node] if node else []
    return json.loads(cli("log", "chain", str(log_id), "--base-dir", base, "--json", *extra))


def read_all(cluster: LocalCluster, node: str, log_id: int) -> list[tuple[int, bytes]]:
    with NodeClient(cluster.node(node).grpc_address) as client:
        return [(e.lsn, e.payload) for e in LogClient(client).read(log_id, 1, follow=False)]


class Appenders:
    """Threads appending unique payloads through one node, recording every acknowledgement."""

    def __init__(self, address: str, log_id: int, threads: int = 4) -> None:
        self.acked: dict[bytes, int] = {}
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(address, log_id, t)) for t in range(threads)
        ]

    def _run(self, address: str, log_id: int, t: int) -> None:
        with NodeClient(address) as node:
            client = LogClient(node, timeout_s=30)
            i = 0
            while not self._stop.is_set():
                payload = f"t{t}-{i}".encode()
                try:
                    lsn = client.append(log_id, [payload])
                except NodeUnreachable:
                    with self._lock:
                        self.errors += 1
                    continue
                with self._lock:
                    self.acked[payload] = lsn
                i += 1

    def __enter__(self) -> "Appenders":
        for th in self._threads:
            th.start()
        return self

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=60)


@pytest.fixture
def cluster(cluster_dir: Path) -> Iterator[tuple[str, LocalCluster]]:  # noqa: F811
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
    yield base, LocalCluster.load(cluster_dir)


def test_cli_done_when_scenario(cluster: tuple[str, LocalCluster]) -> None:
    base, _ = cluster
    first = cli("log", "append", "1", *[f"pre-{i}" for i in range(100)], "--base-dir", base).split()
    assert first == [str(i) for i in range(1, 101)]
    sequencer = chain_of(base, 1)["segments"][-1]["sequencer"]
    cli("cluster", "kill", sequencer, "--base-dir", base)
    survivor = next(n for n in ("n1", "n2", "n3") if n != sequencer)
    after = cli(
        "log", "append", "1", *[f"post-{i}" for i in range(100)], "--base-dir", base, "--node", survivor
    )
    assert after.split() == [str(i) for i in range(101, 201)]
    chain = chain_of(base, 1, survivor)["segments"]
    assert len(chain) == 2 and chain[0]["sealed"] and not chain[1]["sealed"]
    assert chain[1]["base_lsn"] == 101 and chain[1]["sequencer"] != sequencer
    expected = "".join(f"{i + 1} pre-{i}\n" for i in range(100)) + "".join(
        f"{i + 101} post-{i}\n" for i in range(100)
    )
    for node in ("n1", "n2", "n3"):
        if node != sequencer:
            assert cli("log", "read", "1", "--from", "1", "--base-dir", base, "--node", node) == expected
    assert cli("log", "tail", "1", "--base-dir", base, "--node", survivor).strip() == "201"


def test_appends_survive_killing_the_sequencer(cluster: tuple[str, LocalCluster]) -> None:
    base, local = cluster
    log_id = 2
    # Create the log's first segment, then find who sequences it.
    with NodeClient(local.node("n1").grpc_address) as node:
        LogClient(node).append(log_id, [b"first"])
    sequencer = chain_of(base, log_id)["segments"][-1]["sequencer"]
    appender_node = next(n for n in ("n1", "n2", "n3") if n != sequencer)
    others = [n for n in ("n1", "n2", "n3") if n != sequencer]

    with Appenders(local.node(appender_node).grpc_address, log_id) as appenders:
        wait_until(lambda: appenders.count() >= 200, 30, "200 acknowledged appends before the kill")
        local.signal(local.node(sequencer), signal.SIGKILL)
        at_kill = appenders.count()
        wait_until(
            lambda: appenders.count() >= at_kill + 200, 60, "200 more acknowledged appends after the kill"
        )

    chain = chain_of(base, log_id, appender_node)["segments"]
    assert len(chain) >= 2 and chain[-1]["sequencer"] != sequencer, chain

    # The killed node comes back (new generation) and must read the same log as everyone else.
    cli("cluster", "start", sequencer, "--base-dir", base)
    reads = {node: read_all(local, node, log_id) for node in [*others, sequencer]}
    reference = reads[others[0]]
    for node, entries in reads.items():
        assert entries[: len(reference)] == reference[: len(entries)], f"{node} diverges"
    lsns = [lsn for lsn, _ in reference]
    assert lsns == list(range(1, len(lsns) + 1)), "LSNs must be dense and unique"
    by_lsn = dict(reference)
    for payload, lsn in appenders.acked.items():
        assert by_lsn.get(lsn) == payload, f"acknowledged {payload!r} at LSN {lsn} is not there"
    duplicates = len(reference) - len({p for _, p in reference})
    print(
        f"acked={len(appenders.acked)} records={len(reference)} duplicates={duplicates} errors={appenders.errors}"
    )


def test_bad_input_is_refused_and_writes_nothing(cluster: tuple[str, LocalCluster]) -> None:
    base, _ = cluster
    cli("log", "append", "3", "a", "b", "--base-dir", base)
    unknown = run_cli("log", "append", "99", "x", "--base-dir", base)
    assert unknown.returncode == 1 and "unknown log 99" in unknown.stderr
    from_zero = run_cli("log", "read", "3", "--from", "0", "--base-dir", base)
    assert from_zero.returncode == 2 and "--from must be >= 1" in from_zero.stderr
    beyond = run_cli("log", "trim", "3", "10", "--base-dir", base)
    assert beyond.returncode == 2 and "its tail is 3" in beyond.stderr
    assert cli("log", "tail", "3", "--base-dir", base).strip() == "3"
    assert cli("log", "read", "3", "--base-dir", base) == "1 a\n2 b\n"
    cli("log", "trim", "3", "1", "--base-dir", base)
    assert cli("log", "read", "3", "--base-dir", base) == "1 <trimmed up to 1>\n2 b\n"

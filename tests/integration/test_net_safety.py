"""Issue 7's network and edge observations, each against a real `durastate server` process:
forged data-port traffic, floods of connections and frames, slow HTTP clients, the gRPC token,
limits that fit the maximum record, one-line errors and reserved metadata keys."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bifrost.core import RequestHeader, Seal, Store, Trim
from bifrost.core._types import GenerationalNodeId, LogletParams, loglet_id
from bifrost.replicated.messages import (
    AppendRequest,
    AppendResponse,
    AppendStatus,
    GetTailRequest,
    GetTailResponse,
)
from node.client import InvalidRequest, NodeClient
from node.config import LOG_ONLY_ROLES
from node.grpc_auth import call_metadata
from node.ports import free_ports
from node.secret import read_file
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc
from tests.support.data_port import RawPeer
from tests.support.procs import DURASTATE, Procs, clean_env, run_cli
from tests.support.wait import wait_until


@dataclass
class Node:
    proc: subprocess.Popen
    cwd: Path
    ports: dict[str, int]
    env: dict[str, str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['node']}"

    @property
    def secret(self) -> bytes:
        return read_file(self.cwd / "durastate-data" / "cluster.secret")

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run_cli(*args, "--address", self.address, cwd=self.cwd, timeout=timeout)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def identity(self) -> GenerationalNodeId:
        with NodeClient(self.address, secret=self.secret) as client:
            return GenerationalNodeId(1, client.node_info().generation)


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
        return resp.status == 200


def start_node(procs: Procs, cwd: Path, prefix: tuple[str, ...] = ()) -> Node:
    names = ("ingress", "admin", "node", "data")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    # Only the log: these tests count the records they append.
    env = clean_env(
        **{f"DURASTATE_PORTS_{n.upper()}": str(p) for n, p in ports.items()},
        DURASTATE_ROLES=",".join(LOG_ONLY_ROLES),
    )
    cwd.mkdir(parents=True, exist_ok=True)
    proc = procs.spawn([*prefix, *DURASTATE, "server"], cwd / "node.log", cwd=cwd, env=env)
    node = Node(proc, cwd, ports, env)
    wait_until(lambda: proc.poll() is None and healthy(ports["admin"]), 60, "node health")
    return node


def stop(node: Node) -> None:
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    procs = Procs()
    try:
        yield start_node(procs, tmp_path_factory.mktemp("node"))
    finally:
        procs.stop_all()


def one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


# --- the data port --------------------------------------------------------------------------


def test_forged_store_trim_and_seal_without_the_secret_change_nothing(node: Node) -> None:
    assert node.cli("log", "append", "1", "a").stdout.split() == ["1"]
    seq = node.identity()
    lid = loglet_id(1, 0)
    forged = [
        Store(RequestHeader(lid, 2), 2, seq, (b"forged",)),  # where the next real append goes
        Trim(RequestHeader(lid, 10**6), 10**6),
        Seal(RequestHeader(lid, 1), seq),
    ]

    async def attack() -> bytes:
        raw = await RawPeer.connect(node.ports["data"])
        hello = await raw.reader.readexactly(37)
        for i, message in enumerate(forged):
            raw.send(i, message)
        await raw.closed_by_peer()
        return hello

    hello = asyncio.run(attack())
    assert hello.startswith(b"DSH1\x01"), "the node greets with its handshake, then refuses"
    assert node.cli("log", "append", "1", "real").stdout.split() == ["2"]
    assert node.cli("log", "read", "1").stdout == "1 a\n2 real\n"
    assert node.cli("log", "tail", "1").stdout.strip() == "3"
    assert metric(node.metrics(), "durastate_data_port_refused_total", reason="malformed") >= 1


def test_an_authenticated_peer_cannot_plant_a_sequencer_or_store_for_another(node: Node) -> None:
    me = node.identity()
    # Log 2 is not used yet: params with a nodeset that can never commit would wedge it.
    bogus = LogletParams(loglet_id(2, 0), me, 2, (1, 5))

    async def attack() -> tuple[object, object]:
        raw = await RawPeer.connect(node.ports["data"])
        assert await raw.authenticate(node.secret, me, 1) == me
        raw.send(1, GetTailRequest(bogus))
        tail = (await raw.receive())[1]
        raw.send(2, AppendRequest(bogus, (b"x",)))
        append = (await raw.receive())[1]
        raw.send(3, Store(RequestHeader(loglet_id(1, 0), 1), 5, GenerationalNodeId(5, 1), (b"forged",)))
        raw.close()
        return tail, append

    tail, append = asyncio.run(attack())
    assert tail == GetTailResponse(found=False)
    assert isinstance(append, AppendResponse) and append.status == AppendStatus.NOT_SEQUENCER
    assert node.cli("log", "append", "2", "fine", timeout=60).stdout.split() == ["1"]
    assert node.cli("log", "read", "2").stdout == "1 fine\n"
    text = node.metrics()
    assert metric(text, "durastate_data_port_refused_total", reason="loglet-not-in-chain") == 2
    assert metric(text, "durastate_data_port_refused_total", reason="store-not-from-its-sequencer") == 1


def test_floods_of_connections_and_huge_frames_are_cut_with_a_low_fd_limit(
    procs: Procs, tmp_path: Path
) -> None:
    node = start_node(procs, tmp_path, prefix=("prlimit", "--nofile=1024:1024", "--"))
    rss_before = _rss_kib(node.proc.pid)

    async def huge_frames() -> None:
        peers = [await RawPeer.connect(node.ports["data"]) for _ in range(10)]
        for raw in peers:
            raw.send_raw((64 * 1024 * 1024).to_bytes(4, "big") + b"\0" * (1024 * 1024))
        for raw in peers:
            await raw.closed_by_peer(timeout_s=10)

    asyncio.run(huge_frames())
    assert _rss_kib(node.proc.pid) - rss_before < 50 * 1024, "frames must not be buffered"

    async def idle_flood() -> None:
        conns = []
        for _ in range(1500):
            conns.append(await asyncio.open_connection("127.0.0.1", node.ports["data"]))
        # While they are all open (or refused), the node still answers HTTP and gRPC.
        assert await asyncio.to_thread(healthy, node.ports["admin"])
        with NodeClient(node.address, secret=node.secret) as client:
            assert (await asyncio.to_thread(client.node_info)).name == "n1"
        for _, writer in conns:
            writer.close()

    asyncio.run(idle_flood())
    assert metric(node.metrics(), "durastate_data_port_refused_total", reason="too-many-handshakes") > 1000
    assert node.cli("log", "append", "1", "still works").returncode == 0


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- HTTP -----------------------------------------------------------------------------------


def test_slow_http_clients_are_closed_and_health_keeps_answering(node: Node) -> None:
    port = node.ports["admin"]

    async def slowloris() -> None:
        conns = []
        for _ in range(500):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            conns.append((reader, writer))
        assert await asyncio.to_thread(healthy, port)

        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                return await reader.read() == b""
            except ConnectionResetError:
                return True

        async with asyncio.timeout(40):
            assert all(await asyncio.gather(*(closed(r) for r, _ in conns)))
        for _, writer in conns:
            writer.close()

    asyncio.run(slowloris())
    text = node.metrics()
    assert metric(text, "durastate_edge_refused_total", listener="http-admin", reason="header-timeout") >= 500


# --- gRPC -----------------------------------------------------------------------------------


def test_grpc_needs_the_cluster_token_but_health_stays_open(node: Node, tmp_path: Path) -> None:
    with grpc.insecure_channel(node.address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        stub = node_pb2_grpc.NodeServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.LogAppend(node_pb2.LogAppendRequest(log_id=1, records=[b"x"]), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            stub.MetadataPut(
                node_pb2.MetadataPutRequest(key="k", value=b"v"),
                timeout=5,
                metadata=(("x-durastate-token", "1.00"),),
            )
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("ab" * 32)
    result = run_cli("log", "tail", "1", "--address", node.address, "--secret-file", str(wrong), cwd=tmp_path)
    one_line_error(result, 1, "refused the call", "cluster secret")
    # Elsewhere, the secret comes from the environment.
    env = clean_env(DURASTATE_SECURITY_SECRET=node.secret.hex())
    assert run_cli("log", "tail", "1", "--address", node.address, cwd=tmp_path, env=env).returncode == 0
    nowhere = run_cli("log", "tail", "1", "--address", node.address, cwd=tmp_path)
    one_line_error(nowhere, 1, "no cluster secret")
    assert metric(node.metrics(), "durastate_edge_refused_total", listener="grpc", reason="wrong-token") >= 2


def test_a_record_of_the_maximum_size_appends_and_reads_back_through_the_cli(
    node: Node, tmp_path: Path
) -> None:
    limit = 8 * 1024 * 1024
    record = tmp_path / "max.bin"
    record.write_bytes(b"r" * limit)
    appended = node.cli("log", "append", "3", "--file", str(record))
    assert appended.returncode == 0, appended.stderr
    lsn = appended.stdout.split()[0]
    read = node.cli("log", "read", "3", "--from", lsn, "--json")
    assert read.returncode == 0, read.stderr[-500:]
    assert json.loads(read.stdout.splitlines()[0]) == {"lsn": int(lsn), "payload": "r" * limit}
    over = tmp_path / "over.bin"
    over.write_bytes(b"o" * (limit + 1))
    one_line_error(node.cli("log", "append", "3", "--file", str(over)), 2, "over the limit")
    half = tmp_path / "half.bin"
    half.write_bytes(b"h" * (limit // 2 + 1))
    one_line_error(
        node.cli("log", "append", "3", "--file", str(half), "--file", str(half)),
        2,
        "append batch of 2 records",
    )


# --- metadata -------------------------------------------------------------------------------


def test_cli_and_grpc_errors_are_one_line(node: Node) -> None:
    one_line_error(
        node.cli("metadata", "put", "k", "v", "--expect-version", "0"), 2, "--expect-version must be >= 1"
    )
    with NodeClient(node.address, secret=node.secret) as client:
        with pytest.raises(InvalidRequest, match="too large"):
            client.put("big", b"x" * int(3.9 * 1024 * 1024))
        assert client.get("big") is None
    # Straight to the gRPC service: a bad request is INVALID_ARGUMENT with the reason, not UNKNOWN.
    with grpc.insecure_channel(node.address) as channel:
        with pytest.raises(grpc.RpcError) as e:
            node_pb2_grpc.NodeServiceStub(channel).MetadataPut(
                node_pb2.MetadataPutRequest(
                    key="k", value=b"v", precondition=node_pb2.PRECONDITION_MATCHES_VERSION
                ),
                metadata=call_metadata(node.secret),
                timeout=5,
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "expected version must be >= 1 (versions start at 1)"
    one_line_error(node.cli("log", "append", "99", "x"), 1, "unknown log 99")


def test_reserved_keys_need_force_and_a_value_of_their_type(node: Node) -> None:
    node.cli("log", "append", "0", "x")
    one_line_error(node.cli("metadata", "put", "log_chain_0", "garbage"), 2, "'log_chain_0'", "--force")
    one_line_error(
        node.cli("metadata", "put", "nodes_config", "garbage", "--force"), 2, "not a valid NodesConfig"
    )
    one_line_error(node.cli("metadata", "put", "schema", "{}", "--force"), 2, "cannot be written by hand")
    got = json.loads(node.cli("metadata", "get", "log_chain_0", "--json").stdout)
    written = node.cli(
        "metadata",
        "put",
        "log_chain_0",
        got["value"],
        "--force",
        "--expect-version",
        str(got["version"]),
        "--json",
    )
    assert written.returncode == 0, written.stderr
    assert node.cli("log", "append", "0", "y").stdout.split() == ["2"]


def test_bad_stored_values_give_one_line_errors_naming_the_key(procs: Procs, tmp_path: Path) -> None:
    from bifrost.chain_store import chain_key
    from metadata.local import LocalMetadataStore

    node = start_node(procs, tmp_path)
    assert node.cli("log", "append", "2", "x").returncode == 0
    stop(node)

    def corrupt(key: str) -> None:
        async def put() -> None:
            store = LocalMetadataStore.open(tmp_path / "durastate-data" / "metadata")
            try:
                await store.put(key, b"\x01garbage")
            finally:
                await store.close()

        asyncio.run(put())

    corrupt(chain_key(2))
    node = start_node(procs, tmp_path)
    one_line_error(node.cli("log", "chain", "2"), 1, "'log_chain_2'")
    one_line_error(node.cli("log", "seal", "2"), 1, "'log_chain_2'")
    assert node.cli("log", "append", "1", "other logs work").returncode == 0
    stop(node)

    corrupt("nodes_config")
    proc = procs.spawn([*DURASTATE, "server"], tmp_path / "restart.log", cwd=tmp_path, env=node.env)
    assert proc.wait(timeout=60) == 1
    last = (tmp_path / "restart.log").read_text().strip().splitlines()[-1]
    assert last.startswith("durastate: cannot start:") and "'nodes_config'" in last, last


def test_a_node_reachable_from_other_machines_needs_an_explicit_secret(tmp_path: Path) -> None:
    result = run_cli("server", "--address", "0.0.0.0", cwd=tmp_path)
    one_line_error(result, 2, "give the cluster secret")
    result = run_cli("server", "--secret-file", str(tmp_path / "missing"), cwd=tmp_path)
    one_line_error(result, 2, "cannot read the cluster secret file")
    assert not (tmp_path / "durastate-data").exists()


def test_print_config_shows_the_secret_file_not_the_secret(tmp_path: Path) -> None:
    env = clean_env(DURASTATE_SECURITY_SECRET="cd" * 32)
    result = run_cli("server", "--print-config", cwd=tmp_path, env=env)
    assert result.returncode == 0
    assert "cd" * 32 not in result.stdout and "secret: set, not printed" in result.stdout
    assert os.listdir(tmp_path) == []

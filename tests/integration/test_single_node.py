"""A single node with the embedded defaults: health, node info, generations, metadata, SIGTERM."""

import json
import re
import signal
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.client import NodeClient
from node.ports import free_ports
from node.secret import read_file
from tests.support.procs import DURASTATE, Procs, clean_env, run_cli
from tests.support.wait import wait_until


def healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:
        return resp.status == 200


def start_node(procs: Procs, cwd: Path, env: dict[str, str]):
    proc = procs.spawn([*DURASTATE, "server"], cwd / "node.log", cwd=cwd, env=env)
    admin, ingress = env["DURASTATE_PORTS_ADMIN"], env["DURASTATE_PORTS_INGRESS"]
    wait_until(lambda: healthy(f"http://127.0.0.1:{admin}/health"), 30, "admin health")
    assert healthy(f"http://127.0.0.1:{ingress}/restate/health")
    return proc


def stop_node(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_single_node_defaults_restart_and_metadata(procs: Procs, tmp_path: Path) -> None:
    ingress, admin, node, data = free_ports(4)
    # No flags: ports come from the environment only because two test runs may share a machine.
    env = clean_env(
        DURASTATE_PORTS_INGRESS=str(ingress),
        DURASTATE_PORTS_ADMIN=str(admin),
        DURASTATE_PORTS_NODE=str(node),
        DURASTATE_PORTS_DATA=str(data),
    )
    address = f"127.0.0.1:{node}"

    proc = start_node(procs, tmp_path, env)
    assert (tmp_path / "durastate-data").is_dir(), "the default base dir lives in the working directory"
    # A single node makes its cluster secret on first start; the CLI, run in the same directory,
    # finds it there.
    secret_path = tmp_path / "durastate-data" / "cluster.secret"
    assert secret_path.stat().st_mode & 0o777 == 0o600
    secret = read_file(secret_path)
    with grpc.insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    with NodeClient(address, secret=secret) as client:
        info = client.node_info()
        assert (info.name, info.generation, info.metadata_backend) == ("n1", 1, "local")
        assert info.ports["ingress"] == ingress
        assert info.metadata_leader == "n1"

    put = run_cli("metadata", "put", "greeting", "hello", "--address", address, "--json", cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    v1 = json.loads(put.stdout)["version"]
    stale = run_cli(
        "metadata",
        "put",
        "greeting",
        "again",
        "--expect-version",
        str(v1 + 100),
        "--address",
        address,
        cwd=tmp_path,
    )
    assert stale.returncode == 1
    assert f"current version is {v1}" in stale.stderr
    # The single node runs the log with replication 1: append, read back, and see it in /metrics.
    # Log 1 is also partition 1's (its leader's announcement is in it): x and y land together
    # wherever its tail is, and the partition skips them as records that are not commands.
    lsns = [
        int(n)
        for n in run_cli("log", "append", "1", "x", "y", "--address", address, cwd=tmp_path).stdout.split()
    ]
    assert len(lsns) == 2 and lsns[1] == lsns[0] + 1
    written = f"{lsns[0]} x\n{lsns[1]} y\n"
    read = run_cli("log", "read", "1", "--from", str(lsns[0]), "--address", address, cwd=tmp_path).stdout
    assert read == written
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    appended = re.search(r"^durastate_bifrost_appended_records_total (\S+)$", text, re.M)
    assert appended is not None and float(appended.group(1)) >= 2
    stop_node(proc)

    proc = start_node(procs, tmp_path, env)
    again = run_cli("log", "read", "1", "--from", str(lsns[0]), "--address", address, cwd=tmp_path).stdout
    assert again.startswith(written), "the log survives a restart"
    assert read_file(secret_path) == secret, "a restart keeps the secret"
    with NodeClient(address, secret=secret) as client:
        assert client.node_info().generation == 2, "a restarted node must have a higher generation"
    got = run_cli("metadata", "get", "greeting", "--address", address, "--json", cwd=tmp_path)
    assert json.loads(got.stdout) == {"key": "greeting", "found": True, "version": v1, "value": "hello"}
    stop_node(proc)


def test_print_config_writes_nothing(tmp_path: Path) -> None:
    result = run_cli("server", "--print-config", "--node-name", "n7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'node_name = "n7"' in result.stdout
    assert 'backend = "local"' in result.stdout
    assert list(tmp_path.iterdir()) == []

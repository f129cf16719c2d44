"""The official TypeScript SDK (@restatedev/restate-sdk 1.17.2, installed with npm on first use)
against a durastate node: tests/sdk_services/ts/services.mjs served by Node over h2c, registered
and invoked like the Python services, with the same assertions. Runs wherever node and npm are."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.ports import free_ports
from tests.support.durable import NodeHttp, Response, request, running_node
from tests.support.wait import wait_until

SDK = "@restatedev/restate-sdk@1.17.2"
SERVICES = Path(__file__).resolve().parents[1] / "sdk_services" / "ts" / "services.mjs"
CACHE = Path(os.environ.get("DURASTATE_TS_SDK_DIR", Path.home() / ".cache" / "durastate" / "ts-sdk-1.17.2"))

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node and npm are not installed"
)


def installed_sdk() -> Path:
    """The npm prefix holding the SDK; installed once per machine (a lock keeps two test runs
    from installing into it at the same time)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (CACHE / "node_modules" / "@restatedev" / "restate-sdk" / "package.json").exists():
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(CACHE),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    SDK,
                ],
                check=True,
                timeout=600,
                capture_output=True,
            )
    return CACHE


@pytest.fixture(scope="module")
def ts_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix = installed_sdk()
    workdir = tmp_path_factory.mktemp("ts")
    # Node resolves the SDK from the script's own directory: the script goes next to node_modules.
    script = prefix / f"services-{os.getpid()}.mjs"
    shutil.copy(SERVICES, script)
    (port,) = free_ports(1)
    with open(workdir / "node.log", "wb") as log:
        proc = subprocess.Popen(
            ["node", str(script), str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(lambda: proc.poll() is not None or _answers(port), 30, "the TypeScript services")
        assert proc.poll() is None, (workdir / "node.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        script.unlink(missing_ok=True)


def _answers(port: int) -> bool:
    """The server listens (it speaks HTTP/2 only: a connection is all we can ask of it here)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, ts_deployment: str) -> Iterator[NodeHttp]:
    with running_node(tmp_path_factory.mktemp("node")) as node:
        registered = node.http.register(ts_deployment)
        assert {s["name"] for s in registered["services"]} >= {"Greeter", "Counter", "Signup", "Approvals"}
        yield node.http


def ok(r: Response) -> object:
    assert r.status == 200, r
    return r.json() if r.body else None


def test_services_objects_steps_sleep_and_calls(http: NodeHttp) -> None:
    assert ok(http.call("Greeter/greet", "Ada")) == "Hello, Ada!"
    assert ok(http.call("Counter/ts/add", 5)) == 5
    assert ok(http.call("Counter/ts/add", 2)) == 7
    assert ok(http.call("Counter/ts/get")) == 7
    assert ok(http.call("Steps/three", "x")) == "x0-x1-x2"
    assert ok(http.call("Sleeper/nap", 200)) == "awake"
    assert ok(http.call("Caller/call_greeter", "Bo")) == "Hello, Bo!"
    key = {"idempotency-key": "ts-once"}
    assert (
        ok(http.call("Counter/ts/add", 1, headers=key))
        == ok(http.call("Counter/ts/add", 1, headers=key))
        == 8
    )


def test_a_workflow_with_a_promise(http: NodeHttp) -> None:
    assert http.call("Signup/ts@x/run/send", "ts@x").status == 202
    assert request(http.ingress, "GET", "/restate/workflow/Signup/ts@x/output").status == 470
    assert http.call("Signup/ts@x/confirm", "99").status == 200
    r = request(http.ingress, "GET", "/restate/workflow/Signup/ts@x/attach")
    assert (r.status, r.json()) == (200, "ts@x confirmed with 99")


def test_an_awakeable(http: NodeHttp, tmp_path: Path) -> None:
    path = tmp_path / "id"
    sent = http.call("Approvals/request/send", str(path))
    invocation = sent.json()["invocationId"]
    awakeable = wait_until(lambda: path.exists() and path.read_text(), 30, "the awakeable's id")
    assert (
        request(http.ingress, "POST", f"/restate/awakeables/{awakeable}/resolve", b'"granted"').status == 202
    )
    r = request(http.ingress, "GET", f"/restate/invocation/{invocation}/attach")
    assert (r.status, r.json()) == (200, "granted")

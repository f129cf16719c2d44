"""Durable execution on a single node, end to end: services written with the official Python SDK
(tests/sdk_services/invoker_suite.py, served by hypercorn) are registered through the admin API
and invoked through the ingress; the node journals every step in its log.

Crashes: the SDK's process killed mid-handler, the node killed mid-handler and restarted. In
both, the invocation finishes and no completed step runs again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.durable import NodeHttp, Response, running_node
from tests.support.sdk_server import AsgiServer, AsgiServers, module_asgi_servers  # noqa: F401
from tests.support.wait import wait_until

SUITE = "tests.sdk_services.invoker_suite:app"


@pytest.fixture(scope="module")
def suite(module_asgi_servers: AsgiServers) -> AsgiServer:  # noqa: F811
    return module_asgi_servers.start(SUITE)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, suite: AsgiServer) -> Iterator[NodeHttp]:
    """A node shared by the tests that only invoke (each uses its own keys)."""
    with running_node(tmp_path_factory.mktemp("node")) as node:
        node.http.register(suite.url)
        yield node.http


def ok(r: Response) -> object:
    assert r.status == 200, r
    return r.json()


def test_handlers_of_every_kind(shared: NodeHttp) -> None:
    assert ok(shared.call("Greeter/greet", "Ada")) == "Hello, Ada!"
    assert ok(shared.call("Steps/three", "x")) == "x0-x1-x2"
    assert ok(shared.call("Sleeper/nap", 200)) == "awake"
    assert ok(shared.call("Caller/call_greeter", "Bo")) == "Hello, Bo!"
    assert ok(shared.call("Steps/run_failing")) == "gave up: RuntimeError('this step always fails')"
    # Retried twice by the service's retry policy, answered by the third attempt.
    assert ok(shared.call("Flaky/flaky", "handlers-of-every-kind")) == 3


def test_retries_exhausted_end_the_invocation_with_the_error(shared: NodeHttp) -> None:
    r = shared.call("Flaky/always")
    assert r.status == 500, r
    assert "this handler always fails" in r.json()["message"]


def test_a_virtual_object_runs_one_handler_per_key_at_a_time(shared: NodeHttp) -> None:
    deltas = list(range(1, 41))
    with ThreadPoolExecutor(8) as pool:
        totals = list(pool.map(lambda d: ok(shared.call("Counter/serial/add", d)), deltas))
    # Exclusive handlers on one key run one after another: every add sees the previous total.
    assert sorted(totals) == sorted(set(totals)), totals
    assert max(totals) == sum(deltas)
    assert ok(shared.call("Counter/serial/get")) == sum(deltas)
    assert ok(shared.call("Counter/other/get")) == 0


def test_calls_and_sends_between_services(shared: NodeHttp) -> None:
    # Caller (a plain service: a random partition) calls and then sends to a counter's key
    # (its own partition), once at once and once 300 ms later.
    assert ok(shared.call("Caller/add_to", {"key": "between"})) == 1
    wait_until(lambda: shared.call("Counter/between/get").json() == 2, 30, "the sent add to run")
    assert ok(shared.call("Caller/add_to", {"key": "between", "delay_ms": 300})) == 3
    wait_until(lambda: shared.call("Counter/between/get").json() == 4, 30, "the delayed add to run")


def test_send_returns_at_once_and_the_invocation_runs(shared: NodeHttp) -> None:
    r = shared.call("Counter/sent/add/send", 5)
    assert r.status == 202, r
    body = r.json()
    assert body["status"] == "Accepted" and body["invocationId"].startswith("inv_")
    wait_until(lambda: shared.call("Counter/sent/get").json() == 5, 30, "the sent add to run")


def test_an_idempotent_call_runs_once(shared: NodeHttp) -> None:
    key = {"idempotency-key": "add-once"}
    first = shared.call("Counter/idem/add", 1, headers=key)
    again = shared.call("Counter/idem/add", 1, headers=key)
    assert (first.status, first.json()) == (again.status, again.json()) == (200, 1)
    assert first.headers["x-restate-id"] == again.headers["x-restate-id"]
    assert "idempotency-expires" in again.headers
    assert ok(shared.call("Counter/idem/get")) == 1


def test_killing_the_sdk_mid_handler_repeats_no_completed_step(tmp_path: Path) -> None:
    servers = AsgiServers(tmp_path)
    try:
        sdk = servers.start(SUITE)
        with running_node(tmp_path / "node") as node:
            node.http.register(sdk.url)
            marker = tmp_path / "marker"
            answers: list[Response] = []
            caller = threading.Thread(
                target=lambda: answers.append(node.http.call("Crashy/once", str(marker)))
            )
            caller.start()
            wait_until(marker.exists, 30, "the handler to pass its first step and hang")
            sdk.kill()
            # The same deployment comes back on the same address.
            restarted = AsgiServer(SUITE, sdk.port, tmp_path)
            servers.servers.append(restarted)
            restarted.start()
            caller.join(timeout=60)
            assert answers and answers[0].status == 200, answers
            assert answers[0].json() == "one+two"
            assert Path(f"{marker}.steps").read_text() == "first\n", "the journaled first step ran again"
    finally:
        servers.stop_all()


def test_killing_the_node_mid_handler_resumes_from_the_journal(tmp_path: Path, suite: AsgiServer) -> None:
    with running_node(tmp_path / "node") as node:
        node.http.register(suite.url)
        marker = tmp_path / "marker"
        key = {"idempotency-key": "crash-the-node"}
        caller = threading.Thread(
            target=lambda: _ignore_errors(lambda: node.http.call("Crashy/once", str(marker), headers=key))
        )
        caller.start()
        wait_until(marker.exists, 30, "the handler to pass its first step and hang")
        node.kill()
        caller.join(timeout=30)
        node.start()
        # The restarted node leads again and re-invokes from the journal; asking with the same
        # idempotency key attaches to that invocation.
        r = node.http.call("Crashy/once", str(marker), headers=key)
        assert (r.status, r.json()) == (200, "one+two"), r
        assert Path(f"{marker}.steps").read_text() == "first\n", "the journaled first step ran again"


def test_a_durable_sleep_survives_a_node_restart(tmp_path: Path, suite: AsgiServer) -> None:
    with running_node(tmp_path / "node") as node:
        node.http.register(suite.url)
        r = node.http.call("Sleeper/nap/send", 1500, headers={"idempotency-key": "nap"})
        assert r.status == 202, r
        node.stop()
        node.start()
        r = node.http.call("Sleeper/nap", 1500, headers={"idempotency-key": "nap"})
        assert (r.status, r.json()) == (200, "awake"), r


def _ignore_errors(fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except OSError:
        pass  # the node was killed under the request

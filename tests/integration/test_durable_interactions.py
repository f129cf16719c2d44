"""Invocations that wait on the outside world, with the official Python SDK
(tests/sdk_services/interactions.py under hypercorn): awakeables resolved through the ingress and
from another handler, a workflow's durable promise, attach and output, cancel (with the handler's
compensation), kill and purge through the admin API. On a single node, then on a 3-node cluster
whose partition leader dies while a workflow waits on its promise, an invocation sleeps, and a
cancel is on its way."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_durable_cluster import (
    NODES,
    cli,
    http_of,
    node_names,
    partition_table,
    running_cluster,
    wait_nodesets_of_three,
)
from tests.support.durable import NodeHttp, Response, request, running_node
from tests.support.sdk_server import AsgiServers, module_asgi_servers  # noqa: F401
from tests.support.wait import wait_until

APP = "tests.sdk_services.interactions:app"


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, module_asgi_servers: AsgiServers) -> Iterator[NodeHttp]:  # noqa: F811
    sdk = module_asgi_servers.start(APP)
    with running_node(tmp_path_factory.mktemp("node")) as node:
        node.http.register(sdk.url)
        yield node.http


class Background:
    """A request in a thread: the test goes on while it waits."""

    def __init__(self, send: Callable[[], Response]) -> None:
        self.response: Response | None = None
        self._thread = threading.Thread(target=self._run, args=(send,))
        self._thread.start()

    def _run(self, send: Callable[[], Response]) -> None:
        self.response = send()

    def result(self, timeout_s: float = 60) -> Response:
        self._thread.join(timeout_s)
        assert self.response is not None, "no answer in time"
        return self.response


def get(http: NodeHttp, path: str) -> Response:
    return request(http.ingress, "GET", path)


def admin(http: NodeHttp, method: str, path: str) -> Response:
    return request(http.admin, method, path)


def written(path: Path) -> str:
    return wait_until(lambda: path.exists() and path.read_text(), 30, f"{path.name} to be written")


def test_an_awakeable_resolved_through_the_ingress(http: NodeHttp, tmp_path: Path) -> None:
    waiting = Background(lambda: http.call("Approvals/request", str(tmp_path / "id")))
    awakeable = written(tmp_path / "id")
    assert awakeable.startswith("sign_1")
    r = request(http.ingress, "POST", f"/restate/awakeables/{awakeable}/resolve", b'"yes"')
    assert (r.status, r.body) == (202, b"")
    assert (waiting.result().status, waiting.result().json()) == (200, "yes")
    # Resolving it again is accepted and changes nothing.
    assert request(http.ingress, "POST", f"/restate/a/{awakeable}/resolve", b'"again"').status == 202


def test_an_awakeable_rejected_by_another_handler(http: NodeHttp, tmp_path: Path) -> None:
    waiting = Background(lambda: http.call("Approvals/request", str(tmp_path / "id")))
    awakeable = written(tmp_path / "id")
    assert http.call("Approvals/approve", {"id": awakeable, "reject": "denied"}).status == 200
    r = waiting.result()
    assert (r.status, r.json()["message"], r.headers["x-restate-error-source"]) == (
        403,
        "denied",
        "invocation",
    )


def test_a_bad_awakeable_id_is_refused(http: NodeHttp) -> None:
    r = request(http.ingress, "POST", "/restate/awakeables/sign_1nope/resolve", b'"x"')
    assert r.status == 400 and "bad awakeable id" in r.json()["message"]


def test_a_workflow_waits_on_its_promise(http: NodeHttp) -> None:
    sent = http.call("Signup/ada@x/run/send", "ada@x")
    assert (sent.status, sent.json()["status"]) == (202, "Accepted")
    r = get(http, "/restate/workflow/Signup/ada@x/output")
    assert (r.status, r.json()["code"]) == (470, 470)
    attached = Background(lambda: get(http, "/restate/workflow/Signup/ada@x/attach"))
    assert http.call("Signup/ada@x/confirm", "4242").status == 200
    assert attached.result().json() == "ada@x confirmed with 4242"
    assert get(http, "/restate/workflow/Signup/ada@x/output").json() == "ada@x confirmed with 4242"
    # run executes at most once per key: a call gets 409, a send PreviouslyAccepted.
    again = http.call("Signup/ada@x/run", "ada@x")
    assert (again.status, again.json()["message"]) == (409, "the workflow method was already invoked")
    resent = http.call("Signup/ada@x/run/send", "ada@x")
    assert resent.json()["status"] == "PreviouslyAccepted"
    assert get(http, "/restate/workflow/Signup/nobody/output").status == 404


def test_attach_and_output_by_id_and_by_idempotency_key(http: NodeHttp, tmp_path: Path) -> None:
    sent = http.call("Approvals/request/send", str(tmp_path / "id"), headers={"idempotency-key": "req-1"})
    invocation = sent.json()["invocationId"]
    assert get(http, f"/restate/invocation/{invocation}/output").status == 470
    by_key = Background(lambda: get(http, "/restate/invocation/Approvals/request/req-1/attach"))
    from_handler = Background(lambda: http.call("Attacher/attach", invocation))
    awakeable = written(tmp_path / "id")
    request(http.ingress, "POST", f"/restate/awakeables/{awakeable}/resolve", b'"ok"')
    assert by_key.result().json() == "ok"
    assert from_handler.result().json() == "ok"
    assert get(http, f"/restate/invocation/{invocation}/output").json() == "ok"
    assert get(http, "/restate/invocation/inv_1nope/attach").status == 400


def test_cancel_runs_the_compensation_and_ends_with_409(http: NodeHttp, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    sent = http.call("Long/wait/send", str(notes))
    invocation = sent.json()["invocationId"]
    wait_until(lambda: notes.exists() and "started" in notes.read_text(), 30, "the handler to start")
    assert admin(http, "PATCH", f"/invocations/{invocation}/cancel").status == 202
    r = wait_until(
        lambda: (out := get(http, f"/restate/invocation/{invocation}/output")).status != 470 and out,
        30,
        "the end",
    )
    assert (r.status, r.json()["message"]) == (409, "cancelled")
    assert notes.read_text() == "started\ncompensated\n"


def test_a_handler_cancels_another_invocation(http: NodeHttp, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    invocation = http.call("Long/wait/send", str(notes)).json()["invocationId"]
    wait_until(lambda: notes.exists(), 30, "the handler to start")
    assert http.call("Attacher/cancel", invocation).status == 200
    r = get(http, f"/restate/invocation/{invocation}/attach")
    assert (r.status, r.json()["message"]) == (409, "cancelled")
    assert notes.read_text() == "started\ncompensated\n"


def test_kill_ends_without_the_handler_and_purge_forgets(http: NodeHttp, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    invocation = http.call("Long/wait/send", str(notes)).json()["invocationId"]
    wait_until(lambda: notes.exists(), 30, "the handler to start")
    attached = Background(lambda: get(http, f"/restate/invocation/{invocation}/attach"))
    r = admin(http, "PATCH", f"/invocations/{invocation}/purge")
    assert (r.status, r.json()["message"]) == (409, "the invocation is not completed yet")
    assert admin(http, "PATCH", f"/invocations/{invocation}/kill").status == 200
    r = attached.result()
    assert (r.status, r.json()["message"]) == (409, "killed")
    assert notes.read_text() == "started\n", "a killed handler runs nothing more"
    assert admin(http, "PATCH", f"/invocations/{invocation}/purge").status == 200
    wait_until(lambda: get(http, f"/restate/invocation/{invocation}/output").status == 404, 30, "the purge")
    for action in ("kill", "cancel", "purge", "pause", "resume"):
        r = admin(http, "PATCH", f"/invocations/{invocation}/{action}")
        assert (r.status, r.json()["message"]) == (404, "invocation not found"), action
    assert admin(http, "PATCH", "/invocations/garbage/kill").status == 400


def test_lazy_state_is_read_on_demand(http: NodeHttp) -> None:
    for n, total in ((2, 2), (3, 5), (4, 9)):
        r = http.call("LazyCounter/k/add", n)
        assert (r.status, r.json()) == (200, total)
    assert http.call("LazyCounter/k/get").json() == {"total": 9, "keys": 1}
    assert http.call("LazyCounter/other/get").json() == {"total": None, "keys": 0}


def paused_total(http: NodeHttp) -> float:
    metrics = request(http.admin, "GET", "/metrics").body.decode()
    return next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("durastate_invoker_paused_total ")
    )


def test_retries_run_out_into_a_pause_and_resume_runs_it_again(http: NodeHttp, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    before = paused_total(http)
    invocation = http.call("Fixable/until_fixed/send", str(attempts)).json()["invocationId"]
    wait_until(lambda: paused_total(http) > before, 30, "the retry policy to pause the invocation")
    assert attempts.read_text() == "attempt\n" * 3, "max_attempts counts the first attempt"
    assert get(http, f"/restate/invocation/{invocation}/output").status == 470
    (tmp_path / "attempts.fixed").touch()
    assert admin(http, "PATCH", f"/invocations/{invocation}/resume").status == 200
    r = get(http, f"/restate/invocation/{invocation}/attach")
    assert (r.status, r.json()) == (200, "fixed after 4 attempts")
    assert admin(http, "PATCH", f"/invocations/{invocation}/resume?deployment=dp_bad").status == 400


def test_a_paused_invocation_resumes_and_a_cancel_reaches_it(http: NodeHttp, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    invocation = http.call("Long/wait/send", str(notes)).json()["invocationId"]
    wait_until(lambda: notes.exists(), 30, "the handler to start")
    assert admin(http, "PATCH", f"/invocations/{invocation}/pause").status == 202
    assert admin(http, "PATCH", f"/invocations/{invocation}/pause").status == 200, "paused already"
    assert admin(http, "PATCH", f"/invocations/{invocation}/resume").status == 200
    assert admin(http, "PATCH", f"/invocations/{invocation}/pause").status == 202
    # Paused: the cancel is journaled and resumes it, so the handler runs its compensation.
    assert admin(http, "PATCH", f"/invocations/{invocation}/cancel").status == 202
    r = get(http, f"/restate/invocation/{invocation}/attach")
    assert (r.status, r.json()["message"]) == (409, "cancelled")
    assert notes.read_text() == "started\ncompensated\n"


# --- a 3-node cluster whose leader dies while invocations wait ---------------------------------


def test_waiting_invocations_survive_their_leaders_death(
    tmp_path: Path,
    module_asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    sdk = module_asgi_servers.start(APP)
    with running_cluster(tmp_path / "cluster") as cluster:
        entry = http_of(cluster, "n1")
        entry.register(sdk.url)
        wait_nodesets_of_three(cluster)
        names = node_names(cluster)
        # Workflows on many keys, so that the victim leads some of them.
        emails = [f"user{i}@x" for i in range(8)]
        for email in emails:
            assert entry.call(f"Signup/{email}/run/send", email).status == 202
        notes = [tmp_path / f"notes{i}" for i in range(6)]
        sleepers = [entry.call("Long/wait/send", str(n)).json()["invocationId"] for n in notes]
        # Suspended on a 5 s sleep (the stream closes after 0.5 s idle) when the leader dies.
        nappers = [entry.call("Napper/nap/send", 5000).json()["invocationId"] for _ in range(6)]
        for n in notes:
            wait_until(n.exists, 30, "every long handler to start")
        table = partition_table(cluster, "n1")
        victim_id = next(p.leader for p in table.partitions if names[p.leader] != "n1")
        victim = names[victim_id]
        # Cancels on their way while the leader dies.
        for invocation in sleepers[:3]:
            assert request(entry.admin, "PATCH", f"/invocations/{invocation}/cancel").status == 202
        cli("cluster", "kill", victim, "--base-dir", str(cluster.base_dir))
        for invocation in sleepers[3:]:
            assert _eventually_202(
                lambda i=invocation: request(entry.admin, "PATCH", f"/invocations/{i}/cancel")
            )
        for email in emails:
            confirmed = _retry(lambda e=email: entry.call(f"Signup/{e}/confirm", "7"))
            assert confirmed.status == 200, confirmed
        for email in emails:
            r = _retry(lambda e=email: get(entry, f"/restate/workflow/Signup/{e}/attach"))
            assert r.json() == f"{email} confirmed with 7"
        for invocation, n in zip(sleepers, notes, strict=True):
            r = _retry(lambda i=invocation: get(entry, f"/restate/invocation/{i}/attach"))
            assert (r.status, r.json()["message"]) == (409, "cancelled")
            # "started" was used before the kill: never again. The compensation may run twice
            # if the leader died before its result was journaled (at least once, as promised).
            lines = n.read_text().splitlines()
            assert lines[0] == "started" and set(lines[1:]) == {"compensated"}, lines
        for invocation in nappers:
            r = _retry(lambda i=invocation: get(entry, f"/restate/invocation/{i}/attach"))
            assert (r.status, r.json()) == (200, "awake")
        other = http_of(cluster, next(n for n in NODES if n not in ("n1", victim)))
        assert (
            json.loads(get(other, f"/restate/workflow/Signup/{emails[0]}/output").body)
            == f"{emails[0]} confirmed with 7"
        )


def _retry(send: Callable[[], Response]) -> Response:
    """A client's way through a failover: repeat (safe: attach, confirm of a promise) until
    the answer is not the ingress's 503."""

    def attempt() -> Response | None:
        try:
            r = send()
        except OSError:
            return None
        return None if r.status == 503 else r

    return wait_until(attempt, 90, "an answer through the failover")


def _eventually_202(send: Callable[[], Response]) -> bool:
    return _retry(send).status == 202


def test_every_interaction_works_across_the_nodes_of_a_cluster(
    tmp_path: Path,
    module_asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    """Each request goes to a different node than the one before: the partition's leader may be
    any of them, and none of these paths may assume it is the node that was asked."""
    sdk = module_asgi_servers.start(APP)
    with running_cluster(tmp_path / "cluster") as cluster:
        n1, n2, n3 = (http_of(cluster, name) for name in NODES)
        n1.register(sdk.url)
        # An awakeable made through n1, resolved through n2, attached by idempotency key via n3.
        path = tmp_path / "awakeable"
        sent = n1.call("Approvals/request/send", str(path), headers={"idempotency-key": "a-1"})
        invocation = sent.json()["invocationId"]
        awakeable = written(path)
        assert request(n2.ingress, "POST", f"/restate/awakeables/{awakeable}/resolve", b'"yes"').status == 202
        r = get(n3, "/restate/invocation/Approvals/request/a-1/attach")
        assert (r.status, r.json()) == (200, "yes")
        assert get(n1, f"/restate/invocation/{invocation}/output").json() == "yes"
        # Lazy state, written through n2 and read through n3.
        assert n2.call("LazyCounter/c/add", 5).json() == 5
        assert n3.call("LazyCounter/c/get").json() == {"total": 5, "keys": 1}
        # Paused by its retry policy (on whichever node leads), resumed through another node.
        attempts = tmp_path / "attempts"
        before = sum(paused_total(h) for h in (n1, n2, n3))
        invocation = n2.call("Fixable/until_fixed/send", str(attempts)).json()["invocationId"]
        wait_until(lambda: sum(paused_total(h) for h in (n1, n2, n3)) > before, 60, "the pause")
        (tmp_path / "attempts.fixed").touch()
        assert admin(n3, "PATCH", f"/invocations/{invocation}/resume").status == 200
        r = get(n1, f"/restate/invocation/{invocation}/attach")
        assert (r.status, r.json()) == (200, "fixed after 4 attempts")
        # Paused through n1, cancelled through n2: the compensation runs; purged, then unknown.
        notes = tmp_path / "notes"
        invocation = n3.call("Long/wait/send", str(notes)).json()["invocationId"]
        wait_until(notes.exists, 30, "the handler to start")
        assert admin(n1, "PATCH", f"/invocations/{invocation}/pause").status == 202
        assert admin(n2, "PATCH", f"/invocations/{invocation}/cancel").status == 202
        r = get(n3, f"/restate/invocation/{invocation}/attach")
        assert (r.status, r.json()["message"]) == (409, "cancelled")
        assert notes.read_text() == "started\ncompensated\n"
        assert admin(n1, "PATCH", f"/invocations/{invocation}/purge").status == 200
        assert admin(n2, "PATCH", f"/invocations/{invocation}/kill").status == 404

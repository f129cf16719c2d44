"""The invoker against the official Python SDK (restate-sdk 1.3.0) served by hypercorn.

Services: tests/sdk_services/invoker_suite.py. The deployment is discovered over h2c (the SDK
then says BIDI_STREAM, and attempts run bidi) or over HTTP/1.1 (REQUEST_RESPONSE: every step
that needs an answer suspends and resumes), and every test runs both ways. The partition is
the in-memory double of tests/unit/processor/invoker/partition_double.py: it journals the
invoker's effects and hands back the actions the state machine would.

Each test runs in ``asyncio.run`` under a deadline; servers are stopped by pid at teardown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from processor.core import (
    End,
    Fail,
    HandlerType,
    JournalCommand,
    Result,
    RunCompletion,
    ServiceType,
    Suspended,
    Target,
)
from processor.invoker._targets import Defaults
from processor.invoker.core import OnMaxAttempts, RetryPolicy
from processor.invoker.invoker import Invoker, InvokerConfig
from processor.invoker.transport import Transport
from processor.protocol import MessageType, decode_payload
from tests.support.sdk_server import AsgiServer, AsgiServers, asgi_servers, module_asgi_servers  # noqa: F401
from tests.support.wait import wait_until
from tests.unit.processor.invoker.partition_double import PartitionDouble
from tests.unit.processor.invoker.sdk_env import DEPLOYMENT_ID, discover

APP = "tests.sdk_services.invoker_suite:app"
DEADLINE_S = 60.0
FAST_RETRIES = Defaults(retry=RetryPolicy(100, 2.0, 1_000, None, OnMaxAttempts.PAUSE))
T = TypeVar("T")

GREETER = Target("Greeter", "greet", ServiceType.SERVICE)
STEPS = Target("Steps", "three", ServiceType.SERVICE)
RUN_FAILING = Target("Steps", "run_failing", ServiceType.SERVICE)
SLEEPER = Target("Sleeper", "nap", ServiceType.SERVICE)
CALLER = Target("Caller", "call_greeter", ServiceType.SERVICE)
FLAKY = Target("Flaky", "flaky", ServiceType.SERVICE)
ALWAYS = Target("Flaky", "always", ServiceType.SERVICE)
CRASHY = Target("Crashy", "once", ServiceType.SERVICE)


def counter(handler: str, key: str) -> Target:
    kind = HandlerType.EXCLUSIVE if handler == "add" else HandlerType.SHARED
    return Target("Counter", handler, ServiceType.VIRTUAL_OBJECT, kind, key)


@pytest.fixture(params=["h2c", "http1.1"])
def http11(request: pytest.FixtureRequest) -> bool:
    return request.param == "http1.1"


@pytest.fixture(scope="module")
def server(module_asgi_servers: AsgiServers) -> Iterator[AsgiServer]:  # noqa: F811
    yield module_asgi_servers.start(APP)


class Env:
    def __init__(self, transport: Transport, invoker: Invoker, partition: PartitionDouble) -> None:
        self.transport = transport
        self.invoker = invoker
        self.partition = partition

    async def call(self, target: Target, argument: bytes) -> tuple[bytes, Result]:
        invocation_id = self.partition.invoke(target, DEPLOYMENT_ID, argument)
        return invocation_id, await self.partition.result(invocation_id)

    def effects(self, invocation_id: bytes) -> list:
        return [e for e in self.partition.log.effects if e.invocation_id == invocation_id]


def run(
    server: AsgiServer,
    http11: bool,
    main: Callable[[Env], Awaitable[T]],
    config: InvokerConfig | None = None,
) -> T:
    async def go() -> T:
        async with Transport() as transport:
            schema = await discover(transport, server.host, server.port, http11)
            partition = PartitionDouble()
            invoker = Invoker(
                transport, lambda: schema, partition, config or InvokerConfig(defaults=FAST_RETRIES)
            )
            partition.invoker = invoker
            invoker.start()
            try:
                return await main(Env(transport, invoker, partition))
            finally:
                await invoker.stop()

    async def bounded() -> T:
        return await asyncio.wait_for(go(), DEADLINE_S)

    return asyncio.run(bounded())


async def until(condition: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    """Wait for ``condition`` on the loop, failing with ``what`` at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


def commands(env: Env, invocation_id: bytes) -> list[str]:
    return [MessageType(e.type_id).name for e in env.effects(invocation_id) if isinstance(e, JournalCommand)]


def test_greeter_completes(server: AsgiServer, http11: bool) -> None:
    async def main(env: Env) -> None:
        inv, result = await env.call(GREETER, b'"Bob"')
        assert result == Result(value=b'"Hello, Bob!"')
        effects = env.effects(inv)
        assert [type(e) for e in effects] == [JournalCommand, End]
        assert effects[0].command_index == 1 and effects[0].type_id == MessageType.OUTPUT_COMMAND
        assert env.partition.log.dropped == []
        assert env.invoker.stats.attempts_started == 1

    run(server, http11, main)


def test_counter_state_ops_are_journal_commands(server: AsgiServer, http11: bool) -> None:
    async def main(env: Env) -> None:
        key = f"c-{http11}"
        _, first = await env.call(counter("add", key), b"5")
        add, second = await env.call(counter("add", key), b"3")
        get, total = await env.call(counter("get", key), b"")
        assert (first.value, second.value, total.value) == (b"5", b"8", b"8")
        # Eager state: the SDK read "count" from the StartMessage and journaled the read inline.
        assert commands(env, add) == ["GET_EAGER_STATE_COMMAND", "SET_STATE_COMMAND", "OUTPUT_COMMAND"]
        set_state = next(e for e in env.effects(add) if e.type_id == MessageType.SET_STATE_COMMAND)
        message = decode_payload(set_state.type_id, set_state.raw)
        assert (message.key, message.value.content) == (b"count", b"8")
        assert commands(env, get) == ["GET_EAGER_STATE_COMMAND", "OUTPUT_COMMAND"]
        assert env.partition.state[("Counter", key)] == {b"count": b"8"}

    run(server, http11, main)


@pytest.mark.parametrize("version", [6, 7])
def test_three_runs_journal_three_completions(server: AsgiServer, http11: bool, version: int) -> None:
    # v6: each run's result comes back as its RunCompletionNotification; v7: as an ack.
    async def main(env: Env) -> None:
        inv, result = await env.call(STEPS, b'"s"')
        assert result == Result(value=b'"s0-s1-s2"')
        runs = [e for e in env.effects(inv) if isinstance(e, RunCompletion)]
        assert [(r.completion_id, r.value) for r in runs] == [(1, b'"s0"'), (2, b'"s1"'), (3, b'"s2"')]
        assert isinstance(env.effects(inv)[-1], End)
        assert env.partition.entries(inv) == [
            "INPUT_COMMAND",
            *["RUN_COMMAND", "RUN_COMPLETION"] * 3,
            "OUTPUT_COMMAND",
        ]
        # Bidi: one attempt. Request/response: each step suspends, and the next attempt resumes.
        assert env.invoker.stats.attempts_started == (4 if http11 else 1)
        assert env.partition.log.dropped == []

    run(server, http11, main, InvokerConfig(defaults=FAST_RETRIES, max_protocol_version=version))


@pytest.mark.parametrize("version", [6, 7])
def test_sleep_suspends_and_resumes_on_its_completion(server: AsgiServer, http11: bool, version: int) -> None:
    # v7 suspensions carry a Future tree; the invoker flattens it to the ids any of which resumes.
    async def main(env: Env) -> None:
        inv = env.partition.invoke(SLEEPER, DEPLOYMENT_ID, b"3600000")

        def suspended() -> Suspended | None:
            return next((e for e in env.effects(inv) if isinstance(e, Suspended)), None)

        # Bidi: the SDK waits on the open stream until the inactivity timeout closes it.
        await until(lambda: suspended() is not None, "the suspension")
        sleep = next(e for e in env.effects(inv) if isinstance(e, JournalCommand))
        completion_id = decode_payload(sleep.type_id, sleep.raw).result_completion_id
        assert suspended().awaiting.completion_ids == (completion_id,)
        assert 1 in suspended().awaiting.signal_ids  # the SDKs always await cancel too
        assert (inv, completion_id) in env.partition.sleeps
        await env.partition.wait_applied()
        env.partition.fire_sleep(inv, completion_id)
        assert await env.partition.result(inv) == Result(value=b'"awake"')
        assert env.partition.entries(inv) == [
            "INPUT_COMMAND",
            "SLEEP_COMMAND",
            "SLEEP_COMPLETION",
            "OUTPUT_COMMAND",
        ]

    config = InvokerConfig(
        defaults=Defaults(inactivity_timeout_ms=200, retry=FAST_RETRIES.retry), max_protocol_version=version
    )
    run(server, http11, main, config)


def test_call_to_another_service(server: AsgiServer, http11: bool) -> None:
    async def main(env: Env) -> None:
        inv, result = await env.call(CALLER, b'"Al"')
        assert result == Result(value=b'"Hello, Al!"')
        call = next(e for e in env.effects(inv) if isinstance(e, JournalCommand))
        assert call.call is not None and call.call.target == GREETER
        assert call.call.deployment_id == DEPLOYMENT_ID
        assert env.partition.entries(inv) == [
            "INPUT_COMMAND",
            "CALL_COMMAND",
            "CALL_INVOCATION_ID_COMPLETION",
            "CALL_COMPLETION",
            "OUTPUT_COMMAND",
        ]

    run(server, http11, main)


def test_retryable_errors_are_retried_with_backoff(server: AsgiServer, http11: bool) -> None:
    async def main(env: Env) -> None:
        inv, result = await env.call(FLAKY, f'"{http11}"'.encode())
        assert result == Result(value=b"3")  # the third attempt succeeded
        stats = env.invoker.stats
        assert (stats.attempts_failed, stats.retries_scheduled) == (2, 2)
        # The service's own policy (from its manifest): 50 ms, then 100 ms.
        assert (stats.retry_delay_ms_total, stats.last_retry_delay_ms) == (150, 100)

    run(server, http11, main)


def test_exhausted_retries_kill_the_invocation(server: AsgiServer, http11: bool) -> None:
    async def main(env: Env) -> None:
        inv, result = await env.call(ALWAYS, b"")
        assert result.failure is not None and "this handler always fails" in result.failure.message
        assert env.invoker.stats.attempts_failed == 5  # max_attempts 5, the first one included
        assert env.invoker.stats.killed == 1
        assert isinstance(env.effects(inv)[-1], Fail)

    run(server, http11, main)


def test_a_failing_run_gives_up_after_its_attempts(server: AsgiServer, http11: bool) -> None:
    # The SDK counts a step's attempts with StartMessage.retry_count_since_last_stored_entry:
    # had the invoker sent a wrong count, the step would be retried for ever.
    async def main(env: Env) -> None:
        inv, result = await env.call(RUN_FAILING, b"")
        assert result.value is not None and result.value.startswith(b'"gave up')
        runs = [e for e in env.effects(inv) if isinstance(e, RunCompletion)]
        assert len(runs) == 1 and runs[0].failure is not None
        assert env.invoker.stats.attempts_failed == 2  # the step's attempts 1 and 2 failed the attempt

    run(server, http11, main)


def test_an_sdk_killed_mid_attempt_is_retried_once_back(
    asgi_servers: AsgiServers,  # noqa: F811
    http11: bool,
    tmp_path: Path,
) -> None:
    server = asgi_servers.start(APP)
    marker = tmp_path / "hang"

    async def main(env: Env) -> None:
        inv = env.partition.invoke(CRASHY, DEPLOYMENT_ID, f'"{marker}"'.encode())
        loop = asyncio.get_running_loop()
        # The first step is journaled before the handler hangs; kill -9 the SDK process there.
        await loop.run_in_executor(None, wait_until, marker.exists, 30, "the handler to hang")
        runs = [e for e in env.effects(inv) if isinstance(e, RunCompletion)]
        assert [r.value for r in runs] == [b'"one"']
        server.kill()
        # The broken stream, then a refused connection.
        await until(lambda: env.invoker.stats.attempts_failed >= 2, "two failed attempts")
        await loop.run_in_executor(None, server.start)
        assert await env.partition.result(inv) == Result(value=b'"one+two"')
        # The completed step was replayed from the journal, never executed again.
        assert Path(f"{marker}.steps").read_text() == "first\n"
        assert env.partition.log.dropped == []

    run(server, http11, main)


def test_goaway_after_a_few_requests_loses_no_invocation(
    asgi_servers: AsgiServers,  # noqa: F811
    http11: bool,
) -> None:
    # hypercorn closes a connection after keep_alive_max_requests (with GOAWAY on HTTP/2): the
    # invoker's later attempts go to new connections, and every invocation completes once.
    # (Many long streams at once on such a connection are cut again and again: the server's
    # limit has to be well above the concurrency, as its default of 1000 is.)
    server = asgi_servers.start(APP, keep_alive_max_requests=3)

    async def main(env: Env) -> None:
        for n in range(5):
            _, result = await env.call(GREETER, f'"{n}"'.encode())
            assert result == Result(value=f'"Hello, {n}!"'.encode())
            _, result = await env.call(STEPS, f'"{n}"'.encode())
            assert result == Result(value=f'"{n}0-{n}1-{n}2"'.encode())
        assert env.transport.connections_opened >= 4
        assert env.partition.log.dropped == []

    run(server, http11, main)

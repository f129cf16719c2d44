"""The invoker shell's own logic between attempts: retries and backoff, the counters of the
StartMessage, fencing, aborts, exhausted retries, refused streams, proposals that fail, the
concurrency limit.

The partition is the in-memory double (partition_double.py); the deployment is a scripted fake
transport: each attempt runs the next script, which reads the frames the invoker sent and
answers with SDK frames. Retry intervals are a millisecond, so nothing here waits for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from metadata.schema import Deployment, Handler, ProtocolType, Schema, Service, register
from metadata.schema import OnMaxAttempts as ManifestOnMax
from metadata.schema import RetryPolicy as ManifestRetry
from metadata.schema import ServiceType as SchemaServiceType
from processor.core import (
    AbortAttempt,
    End,
    Fail,
    InvokeAction,
    JournalCommand,
    Pause,
    Result,
    ServiceType,
    StatusKind,
    Target,
)
from processor.invoker._stream import ResponseHead
from processor.invoker._targets import Defaults
from processor.invoker.core import OnMaxAttempts, RetryPolicy
from processor.invoker.invoker import Invoker, InvokerConfig
from processor.invoker.transport import ConnectFailed, ConnectionLost, NotProcessed, StreamStateError
from processor.protocol import Decoder, Sender, content_type, encode, pb

from .partition_double import PartitionDouble

GREETER = Target("Greeter", "greet", ServiceType.SERVICE)
DEPLOYMENT = "dp_1shell"
FAST = Defaults(retry=RetryPolicy(1, 2.0, 4, None, OnMaxAttempts.PAUSE))


class FakeStream:
    """One attempt's exchange: what the invoker sent, and a reply the script writes."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.sent = bytearray()
        self.ended = asyncio.Event()
        self.was_reset = False
        self._replies: asyncio.Queue[bytes | None | Exception] = asyncio.Queue()
        self._frames = Decoder(sender=Sender.RUNTIME)
        self.received: list = []  # frames the invoker sent, decoded
        self._arrived = asyncio.Event()

    # -- the invoker's side --
    async def send(self, data: bytes) -> None:
        if self.was_reset:
            raise StreamStateError("reset")
        self.sent += data
        self.received.extend(self._frames.receive_data(data))
        self._arrived.set()

    async def end(self) -> None:
        self.ended.set()

    async def response(self) -> ResponseHead:
        return ResponseHead(200, (("content-type", content_type(self.version)),))

    async def receive(self) -> bytes | None:
        if self.was_reset:
            raise StreamStateError("reset")
        item = await self._replies.get()
        if isinstance(item, Exception):
            raise item
        return item

    def reset(self) -> None:
        self.was_reset = True
        self._replies.put_nowait(StreamStateError("reset"))

    async def __aenter__(self) -> FakeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    # -- the script's side --
    def reply(self, *messages: Any, flags: int = 0) -> None:
        self._replies.put_nowait(b"".join(encode(m, flags) for m in messages))

    def finish(self) -> None:
        self._replies.put_nowait(None)

    def fail(self, error: Exception) -> None:
        self._replies.put_nowait(error)

    async def start(self) -> pb.StartMessage:
        while not self.received:
            self._arrived.clear()
            await self._arrived.wait()
        return self.received[0].message


Script = Callable[[FakeStream], Awaitable[None]]


@dataclass
class FakeTransport:
    """Runs ``scripts[n]`` for the n-th attempt; ``refuse`` raises instead of opening."""

    scripts: list[Script | Exception] = field(default_factory=list)
    streams: list[FakeStream] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0
    gate: asyncio.Event | None = None  # when set up, opening waits for it
    opening: int = 0

    async def open_stream(self, endpoint: object, path: str, headers: object) -> FakeStream:
        self.opening += 1
        if self.gate is not None:
            await self.gate.wait()
        n = len(self.streams)
        script = self.scripts[n] if n < len(self.scripts) else self.scripts[-1]
        if isinstance(script, Exception):
            self.streams.append(FakeStream(6))
            raise script
        stream = FakeStream(6)
        self.streams.append(stream)
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)

        async def play() -> None:
            try:
                await script(stream)
            finally:
                self.open_now -= 1

        asyncio.get_running_loop().create_task(play())
        return stream


def schema(retry: ManifestRetry | None = None) -> Schema:
    service = Service(
        "Greeter", SchemaServiceType.SERVICE, (Handler("greet"),), retry=retry or ManifestRetry()
    )
    deployment = Deployment(
        id=DEPLOYMENT,
        uri="http://127.0.0.1:1",
        protocol_type=ProtocolType.BIDI_STREAM,
        http_version="HTTP/2.0",
        created_at_ms=0,
        min_protocol_version=5,
        max_protocol_version=7,
        services=(service,),
    )
    return register(Schema(), deployment).schema


def run(
    scripts: list[Script | Exception],
    main: Callable[[Invoker, PartitionDouble, FakeTransport], Awaitable[None]],
    *,
    config: InvokerConfig | None = None,
    partition: PartitionDouble | None = None,
    the_schema: Schema | None = None,
) -> None:
    async def go() -> None:
        transport = FakeTransport(scripts)
        part = partition or PartitionDouble()
        current = the_schema or schema()
        invoker = Invoker(transport, lambda: current, part, config or InvokerConfig(defaults=FAST))  # type: ignore[arg-type]
        part.invoker = invoker
        invoker.start()
        try:
            await main(invoker, part, transport)
        finally:
            await invoker.stop()

    asyncio.run(asyncio.wait_for(go(), 20))


# --- scripts ---------------------------------------------------------------------------------


async def greet(stream: FakeStream) -> None:
    await stream.start()
    stream.reply(pb.OutputCommandMessage(value=pb.Value(content=b"hi")), pb.EndMessage())
    await stream.ended.wait()
    stream.finish()


def error(code: int = 500, delay: int | None = None) -> Script:
    async def script(stream: FakeStream) -> None:
        await stream.start()
        message = pb.ErrorMessage(code=code, message=f"error {code}")
        if delay is not None:
            message.next_retry_delay = delay
        stream.reply(message)

    return script


def run_then_error(completion_id: int) -> Script:
    """Journals a run step (command and completion), then fails the attempt."""

    async def script(stream: FakeStream) -> None:
        await stream.start()
        stream.reply(
            pb.RunCommandMessage(result_completion_id=completion_id),
            pb.ProposeRunCompletionMessage(result_completion_id=completion_id, value=b"v"),
            pb.ErrorMessage(code=500, message="after the run"),
        )

    return script


def starts(transport: FakeTransport) -> list[pb.StartMessage]:
    return [s.received[0].message for s in transport.streams if s.received]


async def until(condition: Callable[[], object]) -> None:
    """Poll ``condition`` on the loop (``run`` bounds every test with a deadline)."""
    while not condition():
        await asyncio.sleep(0.001)


# --- tests -----------------------------------------------------------------------------------


def test_retries_count_attempts_and_then_succeed() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        assert [s.retry_count_since_last_stored_entry for s in starts(transport)] == [0, 1, 2]
        assert invoker.stats.retries_scheduled == 2
        assert invoker.stats.retry_delay_ms_total == 1 + 2  # 1 ms doubling
        await until(lambda: not invoker.knows(inv))  # nothing kept once it ended

    run([error(), error(), greet], main)


def test_the_retry_count_restarts_when_the_journal_grows() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        counts = [(s.known_entries, s.retry_count_since_last_stored_entry) for s in starts(transport)]
        # Attempt 1 fails without progress; attempt 2 journals a run step (RunCommand and its
        # completion) and then fails: the count starts again from that failure.
        assert counts == [(1, 0), (1, 1), (3, 1), (3, 2)]

    run([error(), run_then_error(1), error(), greet], main)


def test_the_sdks_retry_delay_overrides_the_policy() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        await part.result(inv)
        assert invoker.stats.last_retry_delay_ms == 1  # the policy's next delay would be 2
        assert invoker.stats.retry_delay_ms_total == 1 + 1

    run([error(), error(delay=1), greet], main)


def test_a_new_attempt_waits_until_the_previous_effects_are_applied() -> None:
    # Commits take 50 ms: had the retry started at once, its replay would miss the run step.
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        assert [s.known_entries for s in starts(transport)] == [1, 3]
        assert part.entries(inv) == ["INPUT_COMMAND", "RUN_COMMAND", "RUN_COMPLETION", "OUTPUT_COMMAND"]
        assert part.log.dropped == []

    run([run_then_error(1), greet], main, partition=PartitionDouble(commit_delay_s=0.05))


def test_kill_after_max_attempts_fails_the_invocation_with_the_last_error() -> None:
    kill = ManifestRetry(initial_interval_ms=1, max_attempts=3, on_max_attempts=ManifestOnMax.KILL)

    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        result = await part.result(inv)
        assert result.failure is not None and (result.failure.code, result.failure.message) == (
            503,
            "error 503",
        )
        assert len(transport.streams) == 3  # max_attempts counts the first attempt
        assert isinstance(part.log.effects[-1], Fail)
        assert invoker.stats.killed == 1

    run([error(503)], main, the_schema=schema(kill))


def test_pause_after_max_attempts_stops_retrying() -> None:
    pause = ManifestRetry(initial_interval_ms=1, max_attempts=2, on_max_attempts=ManifestOnMax.PAUSE)

    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        await until(lambda: part.status[inv].kind is StatusKind.PAUSED)
        assert len(transport.streams) == 2
        assert part.log.effects == [Pause(inv, fence=0)]
        assert invoker.stats.paused == 1 and not invoker.knows(inv)
        # The admin API's resume runs it again, with a fresh retry budget.
        transport.scripts.extend([error(), greet])
        part.resume(inv)
        assert await part.result(inv) == Result(value=b"hi")
        assert len(transport.streams) == 4

    run([error(), error()], main, the_schema=schema(pause))


def part_invoke_action(part: PartitionDouble, inv: bytes) -> InvokeAction:
    status = part.status[inv]
    return InvokeAction(inv, status.invocation.target, status.invocation.deployment_id)


def test_refused_streams_are_retried_at_once_without_counting() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        assert [s.retry_count_since_last_stored_entry for s in starts(transport)] == [0, 0, 0, 1]
        assert invoker.stats.retry_delay_ms_total == 0 + 0 + 1

    async def refused(stream: FakeStream) -> None:
        await stream.start()
        stream.fail(NotProcessed("GOAWAY below this stream"))

    async def lost(stream: FakeStream) -> None:
        await stream.start()
        stream.fail(ConnectionLost("connection lost"))

    run([refused, refused, lost, greet], main)


def test_refusals_count_after_a_few_in_a_row() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        await part.result(inv)
        counts = [s.retry_count_since_last_stored_entry for s in starts(transport)]
        assert counts == [0, 0, 0, 0, 1]

    async def refused(stream: FakeStream) -> None:
        await stream.start()
        stream.fail(NotProcessed("refused"))

    run([refused, refused, refused, refused, greet], main)


def test_connect_failures_are_counted_attempts() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        assert [s.retry_count_since_last_stored_entry for s in starts(transport)] == [2]
        assert invoker.stats.attempts_failed == 2

    run([ConnectFailed("refused"), ConnectFailed("refused"), greet], main)


def test_an_aborted_attempt_proposes_nothing_more() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        await until(lambda: transport.streams and transport.streams[0].received)
        stream = transport.streams[0]
        invoker.handle(AbortAttempt(inv))
        stream.reply(pb.OutputCommandMessage(value=pb.Value(content=b"late")), pb.EndMessage())
        await part.wait_applied()
        await asyncio.sleep(0.01)  # give a wrongly surviving attempt the chance to propose
        assert part.log.effects == []
        assert stream.was_reset
        assert not invoker.knows(inv)

    async def hang(stream: FakeStream) -> None:
        await stream.start()
        await asyncio.Event().wait()

    run([hang], main)


def test_a_failed_proposal_stops_the_attempt_and_retries() -> None:
    class FlakyLog(PartitionDouble):
        def __init__(self) -> None:
            super().__init__()
            self.refuse = 1

        def propose(self, effect: Any) -> asyncio.Future[None]:
            if self.refuse:
                self.refuse -= 1
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                future.set_exception(RuntimeError("not the leader any more"))
                return future
            return super().propose(effect)

    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        assert len(transport.streams) == 2
        assert transport.streams[0].was_reset
        assert [type(e) for e in part.log.effects] == [JournalCommand, End]

    async def slow_greet(stream: FakeStream) -> None:
        await stream.start()
        stream.reply(pb.OutputCommandMessage(value=pb.Value(content=b"hi")))
        await asyncio.Event().wait()  # never ends by itself

    run([slow_greet, greet], main, partition=FlakyLog())


def test_the_concurrency_limit_queues_attempts() -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        ids = [part.invoke(GREETER, DEPLOYMENT, b"x") for _ in range(5)]
        results = await asyncio.gather(*(part.result(i) for i in ids))
        assert results == [Result(value=b"hi")] * 5
        assert transport.most_open == 2

    async def slow(stream: FakeStream) -> None:
        await asyncio.sleep(0.005)
        await greet(stream)

    run([slow], main, config=InvokerConfig(concurrency=2, defaults=FAST))


@pytest.mark.parametrize("kind", ["unknown deployment", "bad version"])
def test_attempts_that_cannot_start_are_retried(kind: str) -> None:
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        deployment = "dp_gone" if kind == "unknown deployment" else DEPLOYMENT
        inv = part.invoke(GREETER, deployment, b"x")
        await until(lambda: invoker.stats.attempts_failed >= 3)
        assert transport.streams == []
        assert part.log.effects == []
        assert invoker.knows(inv)

    config = InvokerConfig(defaults=FAST, max_protocol_version=5 if kind == "bad version" else 6)
    the_schema = schema()
    if kind == "bad version":
        d = the_schema.deployments[DEPLOYMENT]
        the_schema = Schema(
            {DEPLOYMENT: msgspec.structs.replace(d, min_protocol_version=6)}, the_schema.active
        )
    run([greet], main, config=config, the_schema=the_schema)


def test_notifications_before_the_stream_opens_follow_the_replay() -> None:
    # The journal is read before the stream opens; a notification journaled in between is kept
    # and sent right after the replay (and one already in the replay is not sent twice).
    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        transport.gate = asyncio.Event()
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        await until(lambda: transport.opening)
        part.sleeps[(inv, 1)] = 0
        part.fire_sleep(inv, 1)  # journaled at index 1, forwarded to the attempt not yet begun
        transport.gate.set()
        await part.result(inv)
        names = [type(f.message).__name__ for f in transport.streams[0].received]
        assert names == [
            "StartMessage",
            "InputCommandMessage",
            "SleepCompletionNotificationMessage",
        ]
        assert transport.streams[0].received[0].message.known_entries == 1

    async def wait_then_greet(stream: FakeStream) -> None:
        await until(lambda: len(stream.received) == 3)
        await greet(stream)

    run([wait_then_greet], main)


def test_an_invoke_for_a_running_attempt_is_ignored() -> None:
    go_on = asyncio.Event()

    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        await until(lambda: transport.streams and transport.streams[0].received)
        invoker.handle(part_invoke_action(part, inv))  # e.g. a new leader's re-invoke, duplicated
        go_on.set()
        assert await part.result(inv) == Result(value=b"hi")
        assert invoker.stats.attempts_started == 1

    async def held(stream: FakeStream) -> None:
        await go_on.wait()
        await greet(stream)

    run([held], main)


def test_a_store_read_that_fails_is_retried() -> None:
    class Unreadable(PartitionDouble):
        failures = 2

        def read_journal(self, invocation_id: bytes) -> Any:
            if self.failures:
                self.failures -= 1
                raise OSError("the store is unreadable")
            return super().read_journal(invocation_id)

    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        assert invoker.stats.attempts_failed == 2
        # Reading failed, the deployment never saw anything: the SDK's counter did not move.
        assert [s.retry_count_since_last_stored_entry for s in starts(transport)] == [0]

    run([greet], main, partition=Unreadable())


def test_a_proposal_refused_at_once_is_a_failed_attempt() -> None:
    class Refusing(PartitionDouble):
        refuse = 1

        def propose(self, effect: Any) -> asyncio.Future[None]:
            if self.refuse:
                self.refuse -= 1
                raise RuntimeError("the log is sealed")
            return super().propose(effect)

    async def main(invoker: Invoker, part: PartitionDouble, transport: FakeTransport) -> None:
        inv = part.invoke(GREETER, DEPLOYMENT, b"x")
        assert await part.result(inv) == Result(value=b"hi")
        assert len(transport.streams) == 2 and invoker.stats.attempts_failed == 1

    run([greet], main, partition=Refusing())

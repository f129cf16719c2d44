"""Services written with the official Python SDK for the invoker's tests and benchmark.

hypercorn tests.sdk_services.invoker_suite:app

* ``Greeter/greet`` (from greeter.py) and ``Steps/noop``: one round trip, no journal entries.
* ``Counter/{key}/add`` (exclusive, adds to the ``count`` state) and ``Counter/{key}/get`` (shared).
* ``Steps/three``: three ``ctx.run`` steps; ``Steps/recorded``: the same, each step's execution
  recorded in a file (crash tests count re-executions); ``Steps/run_failing``: a step that fails for ever,
  with the step's own retry policy (3 attempts), so it ends with a TerminalError.
* ``Sleeper/nap``: sleeps for the given milliseconds, durably.
* ``Caller/call_greeter``: calls ``Greeter/greet`` and returns its answer; ``Caller/add_to``
  calls a counter's ``add`` and then sends it another (optionally delayed) add.
* ``Flaky/flaky``: raises (a retryable error) on the first two attempts of each argument, then
  answers with the attempt number; the counter lives in the serving process. ``Flaky/always``
  always raises. The service's retry policy (manifest v4): 50 ms doubling up to 200 ms, at most
  5 attempts, then kill.
* ``Crashy/once``: a ``ctx.run`` step, then, the first time a given marker file is absent, it
  creates the file and hangs (the test kills the process); once the file exists, it finishes
  with a second step. Every execution of the first step appends a line to ``<marker>.steps``.

``bench_app`` (bench/invoke.py) serves all of the above plus two services for its points:

* ``Handshake/{id}/run``: a workflow whose run sends its own shared handler ``Handshake/{id}/open``,
  which resolves the durable promise ``opened`` that the run awaits (one ingress request per
  workflow: the promise is resolved inside the server).
* ``Pause/zero``: ``ctx.sleep(0)``, served from the mount ``/suspending`` of the same process by an
  endpoint that declares REQUEST_RESPONSE, so the SDK suspends on the sleep and the server resumes
  the invocation once its timer fires (a bidi stream would take the timer's completion in-stream).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import restate
from restate.retry_policy import InvocationRetryPolicy

from tests.sdk_services.greeter import greeter

steps = restate.Service("Steps")


@steps.handler()
async def noop(ctx: restate.Context) -> str:
    return ""


@steps.handler()
async def three(ctx: restate.Context, name: str) -> str:
    parts = []
    for n in range(3):

        async def step(n: int = n) -> str:
            return f"{name}{n}"

        parts.append(await ctx.run_typed(f"step{n}", step))
    return "-".join(parts)


@steps.handler()
async def recorded(ctx: restate.Context, job: dict[str, str]) -> str:
    """Three steps, each appending "<name> <step>" to the file ``job["log"]`` when it executes."""
    parts = []
    for n in range(3):

        async def step(n: int = n) -> str:
            with open(job["log"], "a") as f:
                f.write(f"{job['name']} {n}\n")
            return f"{job['name']}{n}"

        parts.append(await ctx.run_typed(f"step{n}", step))
    return "-".join(parts)


@steps.handler()
async def run_failing(ctx: restate.Context) -> str:
    async def fail() -> str:
        raise RuntimeError("this step always fails")

    options = restate.RunOptions(max_attempts=3, initial_retry_interval=timedelta(milliseconds=10))
    try:
        return await ctx.run_typed("fail", fail, options)
    except restate.TerminalError as error:
        return f"gave up: {error.message}"


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    total = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", total)
    return total


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


sleeper = restate.Service("Sleeper")


@sleeper.handler()
async def nap(ctx: restate.Context, millis: int) -> str:
    await ctx.sleep(timedelta(milliseconds=millis))
    return "awake"


caller = restate.Service("Caller")


@caller.handler()
async def call_greeter(ctx: restate.Context, name: str) -> str:
    from tests.sdk_services.greeter import greet

    return await ctx.service_call(greet, arg=name)


@caller.handler()
async def add_to(ctx: restate.Context, order: dict[str, int | str]) -> int:
    """Calls ``Counter/{key}/add`` with 1, then sends it 1 more (after ``delay_ms``, if given):
    returns what the call answered."""
    key = str(order["key"])
    total = await ctx.object_call(add, key=key, arg=1)
    delay = int(order.get("delay_ms", 0))
    ctx.object_send(add, key=key, arg=1, send_delay=timedelta(milliseconds=delay) if delay else None)
    return total


flaky = restate.Service(
    "Flaky",
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=50),
        max_interval=timedelta(milliseconds=200),
        max_attempts=5,
        on_max_attempts="kill",
    ),
)
_attempts: dict[str, int] = {}


@flaky.handler("flaky")
async def flaky_handler(ctx: restate.Context, key: str) -> int:
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] <= 2:
        raise RuntimeError(f"attempt {_attempts[key]} of {key} fails")
    return _attempts[key]


@flaky.handler()
async def always(ctx: restate.Context) -> str:
    raise RuntimeError("this handler always fails")


crashy = restate.Service("Crashy")


@crashy.handler()
async def once(ctx: restate.Context, marker: str) -> str:
    path = Path(marker)

    async def first() -> str:
        with open(f"{marker}.steps", "a") as f:
            f.write("first\n")
        return "one"

    async def second() -> str:
        return "two"

    a = await ctx.run_typed("first", first)
    if not path.exists():
        path.write_text("hanging")
        await asyncio.sleep(3600)  # killed here by the test
    b = await ctx.run_typed("second", second)
    return f"{a}+{b}"


app = restate.app(services=[greeter, steps, counter, sleeper, caller, flaky, crashy])


handshake = restate.Workflow("Handshake")
_OPENED = "opened"


@handshake.handler("open")
async def open_handshake(ctx: restate.WorkflowSharedContext, word: str) -> None:
    await ctx.promise(_OPENED, type_hint=str).resolve(word)


@handshake.main()
async def run(ctx: restate.WorkflowContext) -> str:
    ctx.workflow_send(open_handshake, key=ctx.key(), arg="open")
    return await ctx.promise(_OPENED, type_hint=str).value()


pause = restate.Service("Pause")


@pause.handler()
async def zero(ctx: restate.Context) -> str:
    await ctx.sleep(timedelta(0))
    return ""


SUSPENDING_MOUNT = "/suspending"
_bidi = restate.app(services=[greeter, steps, counter, sleeper, caller, flaky, crashy, handshake])
_suspending = restate.app(services=[pause], protocol="request_response")


async def bench_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Two deployments in one process: ``/suspending/...`` answers for ``Pause``, the rest for the others
    (the SDK finds its routes at the end of the path, whatever mount precedes them)."""
    suspending = scope["type"] == "http" and scope["path"].startswith(SUSPENDING_MOUNT + "/")
    await (_suspending if suspending else _bidi)(scope, receive, send)

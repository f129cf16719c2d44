"""Services written with the official Python SDK that wait on the outside world: awakeables, a
workflow's durable promise, a cancellable long sleep, attach.

hypercorn tests.sdk_services.interactions:app

* ``Approvals/request``: makes an awakeable, writes its id to the file named by the argument
  (inside a ``ctx.run``, so once), and returns the value it is resolved with.
* ``Approvals/approve``: resolves (``{"id", "value"}``) or rejects (``{"id", "reject"}``) an
  awakeable from a handler (the owner may live on another partition).
* ``Signup/run`` and ``Signup/confirm`` (signup.py): a workflow waiting on a promise.
* ``Long/wait``: writes "started" to the file named by the argument, sleeps an hour; when
  cancelled it writes "compensated" (a compensation in a ``ctx.run``) and ends with the cancel.
* ``Attacher/attach``: attaches to the invocation id given and returns its result.
* ``Attacher/cancel``: cancels the invocation id given (``ctx.cancel_invocation``).
* ``Fixable/until_fixed``: appends "attempt" to the file named by the argument at every attempt
  and fails (retryable) until ``<file>.fixed`` exists; then returns how many attempts it took.
  Its retry policy gives up after 3 attempts and pauses the invocation.
* ``LazyCounter/add`` and ``get`` (a virtual object with lazy state: the invoker starts it with
  no state and answers its reads with GetLazyState completions).
* ``Napper/nap``: sleeps the milliseconds given and returns "awake"; its inactivity timeout of
  half a second makes the invoker close the stream, so the SDK suspends during the sleep.
"""

from __future__ import annotations

import os
from datetime import timedelta

import restate
from restate.retry_policy import InvocationRetryPolicy

from tests.sdk_services.signup import signup

approvals = restate.Service("Approvals")


@approvals.handler()
async def request(ctx: restate.Context, path: str) -> str:
    awakeable_id, promise = ctx.awakeable(type_hint=str)

    async def publish() -> None:
        with open(path, "w") as f:
            f.write(awakeable_id)

    await ctx.run_typed("publish", publish)
    return await promise


@approvals.handler()
async def approve(ctx: restate.Context, order: dict[str, str]) -> None:
    if "reject" in order:
        ctx.reject_awakeable(order["id"], order["reject"], 403)
    else:
        ctx.resolve_awakeable(order["id"], order["value"])


long = restate.Service("Long")


@long.handler()
async def wait(ctx: restate.Context, path: str) -> str:
    async def note(what: str) -> None:
        with open(path, "a") as f:
            f.write(what + "\n")

    await ctx.run_typed("started", note, what="started")
    try:
        await ctx.sleep(timedelta(hours=1))
    except restate.TerminalError:
        await ctx.run_typed("compensate", note, what="compensated")
        raise
    return "slept"


attacher = restate.Service("Attacher")


@attacher.handler()
async def attach(ctx: restate.Context, invocation_id: str) -> str:
    return await ctx.attach_invocation(invocation_id, type_hint=str)


@attacher.handler()
async def cancel(ctx: restate.Context, invocation_id: str) -> None:
    ctx.cancel_invocation(invocation_id)


fixable = restate.Service(
    "Fixable",
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=20), max_attempts=3, on_max_attempts="pause"
    ),
)


@fixable.handler()
async def until_fixed(ctx: restate.Context, path: str) -> str:
    with open(path, "a") as f:
        f.write("attempt\n")
    if not os.path.exists(path + ".fixed"):
        raise RuntimeError("not fixed yet")
    with open(path) as f:
        return f"fixed after {f.read().count('attempt')} attempts"


napper = restate.Service("Napper", inactivity_timeout=timedelta(milliseconds=500))


@napper.handler()
async def nap(ctx: restate.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return "awake"


lazy_counter = restate.VirtualObject("LazyCounter", enable_lazy_state=True)


@lazy_counter.handler()
async def add(ctx: restate.ObjectContext, n: int) -> int:
    total = (await ctx.get("total", type_hint=int) or 0) + n
    ctx.set("total", total)
    return total


@lazy_counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> dict[str, int | None]:
    return {"total": await ctx.get("total", type_hint=int), "keys": len(await ctx.state_keys())}


app = restate.app(services=[approvals, signup, long, attacher, fixable, napper, lazy_counter])

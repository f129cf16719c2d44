"""A service served by two hypercorn processes at once, so that a test can tell which deployment
ran an invocation: every answer names the serving process.

hypercorn tests.sdk_services.versions:app

* ``Versioned/wait``: makes an awakeable, writes its id to the file named by the argument (appends it, in a
  ``ctx.run``, so once) and returns ``"<value> from <pid>"`` once it is resolved.
* ``Versioned/pid``: returns the serving process's pid.
"""

from __future__ import annotations

import os

import restate

versioned = restate.Service("Versioned")


@versioned.handler()
async def wait(ctx: restate.Context, path: str) -> str:
    awakeable_id, promise = ctx.awakeable(type_hint=str)

    async def publish() -> None:
        with open(path, "a") as f:  # appended: a second run would show
            f.write(awakeable_id)

    await ctx.run_typed("publish", publish)
    value = await promise
    return f"{value} from {os.getpid()}"


@versioned.handler()
async def pid(ctx: restate.Context) -> int:
    return os.getpid()


app = restate.app(services=[versioned])

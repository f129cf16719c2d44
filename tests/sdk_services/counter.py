"""A Counter virtual object written with the official Python SDK: exclusive ``add`` and ``reset``,
shared ``get``.

hypercorn tests.sdk_services.counter:app
"""

from __future__ import annotations

import restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    total = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", total)
    return total


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear("count")


app = restate.app(services=[counter])

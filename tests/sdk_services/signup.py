"""A Signup workflow written with the official Python SDK: ``run`` waits for the ``confirm``
shared handler to resolve a durable promise, then returns.

hypercorn tests.sdk_services.signup:app
"""

from __future__ import annotations

import restate

signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    code = await ctx.promise("confirmation", type_hint=str).value()
    return f"{email} confirmed with {code}"


@signup.handler()
async def confirm(ctx: restate.WorkflowSharedContext, code: str) -> None:
    await ctx.promise("confirmation", type_hint=str).resolve(code)


app = restate.app(services=[signup])

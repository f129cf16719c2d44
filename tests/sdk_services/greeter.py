"""A Greeter service written with the official Python SDK (``restate-sdk``), served as an ASGI app.

hypercorn tests.sdk_services.greeter:app
"""

from __future__ import annotations

import restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


app = restate.app(services=[greeter])

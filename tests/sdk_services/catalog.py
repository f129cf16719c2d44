"""Every kind of target the ingress routes to, in one official-SDK deployment: a service
(Greeter), a virtual object (Counter), a workflow (Signup), a service hidden from the ingress
(``ingress_private``), and handlers with other content types and no input or output.

hypercorn tests.sdk_services.catalog:app
"""

from __future__ import annotations

import restate
from restate.serde import BytesSerde

from tests.sdk_services.counter import counter
from tests.sdk_services.greeter import greeter
from tests.sdk_services.signup import signup

internal = restate.Service("Internal", ingress_private=True)


@internal.handler()
async def ping(ctx: restate.Context) -> str:
    return "pong"


formats = restate.Service("Formats")


@formats.handler(
    accept="text/*", content_type="text/plain", input_serde=BytesSerde(), output_serde=BytesSerde()
)
async def shout(ctx: restate.Context, text: bytes) -> bytes:
    return text.upper()


@formats.handler()
async def nothing(ctx: restate.Context) -> None:
    return None


app = restate.app(services=[greeter, counter, signup, internal, formats])

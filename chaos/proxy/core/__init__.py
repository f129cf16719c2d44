"""The fault proxy's sans-I/O core: toxics as values, the per-connection toxic chains, and the
API state. No sockets, clocks, tasks or module-level randomness in here (a lint test enforces
it): time arrives as `now` in every input, randomness as an injected `random.Random`.

- `Connection`: both directions of one proxied connection; `step(input) -> list[output]`.
- `ApiState`: proxies and toxics as plain data, with Toxiproxy's validation and errors.
- `Toxic`, `Stream`, `TOXIC_ATTRIBUTES`: the toxic types and their attributes.
"""

from __future__ import annotations

from ._api import LISTEN_HOST, ApiState, Proxy
from ._connection import Connection
from ._errors import ApiError
from ._events import (
    Close,
    EofReceived,
    Input,
    Output,
    PauseReading,
    PeerLost,
    Received,
    ResumeReading,
    Send,
    SendEof,
    SetTimer,
    TimerFired,
    ToxicAdded,
    ToxicRemoved,
    ToxicUpdated,
    WritePaused,
    WriteResumed,
)
from ._stages import Rng
from ._toxics import TOXIC_ATTRIBUTES, Stream, Toxic

__all__ = [
    "LISTEN_HOST",
    "TOXIC_ATTRIBUTES",
    "ApiError",
    "ApiState",
    "Close",
    "Connection",
    "EofReceived",
    "Input",
    "Output",
    "PauseReading",
    "PeerLost",
    "Proxy",
    "Received",
    "ResumeReading",
    "Rng",
    "Send",
    "SendEof",
    "SetTimer",
    "Stream",
    "TimerFired",
    "Toxic",
    "ToxicAdded",
    "ToxicRemoved",
    "ToxicUpdated",
    "WritePaused",
    "WriteResumed",
]

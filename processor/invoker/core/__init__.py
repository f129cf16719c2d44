"""The invoker's sans-I/O core: one invocation attempt against a deployment, as inputs and
outputs (the runtime's mirror of the SDK's VM), and the retry policy between attempts.

The shell (processor/invoker/invoker.py) owns the HTTP stream, the partition and the clock;
it feeds ``Attempt.step`` and carries out what comes back.
"""

from processor.invoker.core._attempt import (
    Attempt,
    LocalProtocolError,
    State,
    random_seed_of,
)
from processor.invoker.core._describe import describe, describe_effect
from processor.invoker.core._events import (
    AttemptEnded,
    AttemptError,
    Begin,
    CloseRequest,
    CommandJournaled,
    DataReceived,
    EndKind,
    Input,
    Mode,
    Notification,
    Output,
    ProposeEffect,
    ResponseHeaders,
    RunAcked,
    SendFrames,
    SetTimer,
    StreamClosed,
    StreamFailed,
    Tick,
)
from processor.invoker.core._retry import OnMaxAttempts, RetryPolicy
from processor.invoker.core._validate import CallResolver

__all__ = [
    "Attempt",
    "AttemptEnded",
    "AttemptError",
    "Begin",
    "CallResolver",
    "CloseRequest",
    "CommandJournaled",
    "DataReceived",
    "EndKind",
    "Input",
    "LocalProtocolError",
    "Mode",
    "Notification",
    "OnMaxAttempts",
    "Output",
    "ProposeEffect",
    "ResponseHeaders",
    "RetryPolicy",
    "RunAcked",
    "SendFrames",
    "SetTimer",
    "State",
    "StreamClosed",
    "StreamFailed",
    "Tick",
    "describe",
    "describe_effect",
    "random_seed_of",
]

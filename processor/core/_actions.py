"""Actions: what applying a command asks the partition leader to do, after the commit.

The state machine never performs I/O. Applying a batch of records returns actions; the
processor commits the batch (state, applied LSN and dedup in one write batch) and only then, on
the leader only, hands the actions to their shells: the invoker, the timer service, the
shuffle, the ingress replies. Followers apply the same commands and drop the actions, so a new
leader has the state and rebuilds its shells from the tables (invocations INVOKED, timers,
outbox), not from actions it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.core._model import (
    IngressSink,
    InvocationIdBytes,
    JournalEntry,
    OutboxMessage,
    Result,
    Target,
    TimerKey,
)


@dataclass(frozen=True, slots=True)
class InvokeAction:
    """Start an attempt (or resume a suspended invocation): the invoker reads the journal and
    the state from the store."""

    invocation_id: InvocationIdBytes
    target: Target
    deployment_id: str


@dataclass(frozen=True, slots=True)
class ForwardNotification:
    """A notification entry was journaled at ``index`` for a possibly running attempt: the
    invoker sends it on the open stream, if any (a suspended invocation resumes through
    InvokeAction instead)."""

    invocation_id: InvocationIdBytes
    index: int
    entry: JournalEntry


@dataclass(frozen=True, slots=True)
class AckRunCompletion:
    """v7: the run proposal ``completion_id`` is stored; the running attempt gets an ack."""

    invocation_id: InvocationIdBytes
    completion_id: int


@dataclass(frozen=True, slots=True)
class AbortAttempt:
    """Stop a running attempt without proposing anything (the invocation ended otherwise)."""

    invocation_id: InvocationIdBytes


@dataclass(frozen=True, slots=True)
class RegisterTimer:
    timer: TimerKey


@dataclass(frozen=True, slots=True)
class DeleteTimer:
    timer: TimerKey


@dataclass(frozen=True, slots=True)
class NewOutboxMessage:
    index: int
    message: OutboxMessage


@dataclass(frozen=True, slots=True)
class IngressResponse:
    """The result for an HTTP request waiting on an ingress node.

    ``expires_at_ms`` is set when the result comes from a retained completed invocation (the
    ingress then sends the ``idempotency-expires`` header)."""

    sink: IngressSink
    invocation_id: InvocationIdBytes
    result: Result
    expires_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class IngressSubmitted:
    """A one-way send was applied: accepted now, or a duplicate of an earlier one."""

    sink: IngressSink
    invocation_id: InvocationIdBytes
    previously_accepted: bool
    execution_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class IngressRejected:
    """The request cannot run (e.g. a workflow's run handler invoked twice): answer with this
    failure, as the real server does (the invocation id is the existing one's)."""

    sink: IngressSink
    invocation_id: InvocationIdBytes
    failure_code: int
    message: str


Action = (
    InvokeAction
    | ForwardNotification
    | AckRunCompletion
    | AbortAttempt
    | RegisterTimer
    | DeleteTimer
    | NewOutboxMessage
    | IngressResponse
    | IngressSubmitted
    | IngressRejected
)

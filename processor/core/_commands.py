"""Commands: what a partition's log carries, and the one envelope every record is wrapped in.

Every replica applies the same commands in LSN order and so reaches the same state; nothing
else changes a partition. Each record is an `Envelope`:

    header: dedup (who produced it, with which sequence number) and the proposer's clock
    command: one of the commands below

**Dedup** removes the duplicates that an at-least-once log and at-least-once producers create
(a Bifrost re-append across a seal, a retried append, a redelivered outbox message):

    SelfProposal(epoch, seq)      the partition leader's own proposals (effects, timers,
                                  truncations): an ESN per leadership epoch. A record whose
                                  (epoch, seq) is not above the last applied one is dropped:
                                  this also drops everything a deposed leader still proposes.
    ForeignPartition(partition, seq)  an outbox message of another partition (seq = its outbox
                                  index), delivered by that partition's shuffle.
    None                          ingress records (Invoke): their invocation id dedups them.

**Time** comes from the log, never from a clock: ``Envelope.timestamp_ms`` is the proposer's
wall clock when it made the record, and the state machine uses it wherever it needs "now".

Invoker effects carry what only the leader's invoker knows (the SDK's raw journal entries, the
resolved call targets) so that applying them needs no schema and no randomness: replicas agree.
"""

from __future__ import annotations

import msgspec

from processor.core._model import (
    Awaiting,
    Failure,
    IngressSink,
    InvocationIdBytes,
    InvocationQuery,
    InvocationResponse,
    InvocationSignal,
    OutboxMessage,
    ServiceInvocation,
    Target,
    TimerKey,
)

# --- dedup ----------------------------------------------------------------------------------


class SelfProposal(msgspec.Struct, frozen=True, array_like=True, tag=True):
    epoch: int
    seq: int


class ForeignPartition(msgspec.Struct, frozen=True, array_like=True, tag=True):
    partition: int
    seq: int


Dedup = SelfProposal | ForeignPartition

# --- commands -------------------------------------------------------------------------------


class Invoke(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Start (or schedule, or queue) an invocation; a duplicate id attaches or is ignored."""

    invocation: ServiceInvocation


class Attach(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Send ``invocation_id``'s result to ``sink`` too: at once if it is retained, when it ends
    if it runs, or a rejection if the partition no longer knows it. Never starts anything, so
    an ingress that lost its answer asks again with this, not with its Invoke."""

    invocation_id: InvocationIdBytes
    sink: IngressSink


class CallTarget(msgspec.Struct, frozen=True, array_like=True):
    """A Call or OneWayCall command's target, resolved by the leader's invoker against the
    latest schema when the SDK sent it (the raw command names only service and handler)."""

    target: Target
    deployment_id: str
    completion_retention_ms: int = 0
    journal_retention_ms: int = 0


class JournalCommand(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The SDK sent command number ``command_index`` (0 is Input, so the first SDK command is
    1): append it to the journal and apply its side effects (state, timers, calls). A command
    whose index is not the invocation's next one is a stale or duplicate proposal: dropped, as
    is one of an attempt started before the invocation was last paused (``fence``)."""

    invocation_id: InvocationIdBytes
    command_index: int
    type_id: int
    raw: bytes
    call: CallTarget | None = None
    fence: int = 0


class RunCompletion(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The SDK proposed the result of ``ctx.run`` ``completion_id``: journal it (once)."""

    invocation_id: InvocationIdBytes
    completion_id: int
    value: bytes | None = None
    failure: Failure | None = None


class Suspended(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The attempt ended waiting for any of ``awaiting``; resume at once if one is already in."""

    invocation_id: InvocationIdBytes
    awaiting: Awaiting
    fence: int = 0


class End(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The attempt ended with EndMessage: the invocation's result is its Output command."""

    invocation_id: InvocationIdBytes
    fence: int = 0


class Fail(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """End the invocation with ``failure`` although the SDK did not (retries exhausted under a
    kill policy, a protocol violation that can never succeed)."""

    invocation_id: InvocationIdBytes
    failure: Failure


class Pause(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Stop running the invocation until it is resumed: from the admin API, or from the
    invoker when its retries ran out under the ``pause`` policy (or the SDK asked for it,
    ``fence`` then being its attempt's; None from the admin API)."""

    invocation_id: InvocationIdBytes
    fence: int | None = None
    sink: IngressSink | None = None


InvokerEffect = JournalCommand | RunCompletion | Suspended | End | Fail | Pause


class TimerFired(msgspec.Struct, frozen=True, array_like=True, tag=True):
    timer: TimerKey


class Respond(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """A call's result arrived for ``response.caller`` (from the callee's partition)."""

    response: InvocationResponse


class Signal(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Deliver a signal to its target invocation (from another partition's outbox, the
    ingress's awakeable API, or the admin API's cancel, which gives a ``sink`` for the outcome)."""

    signal: InvocationSignal
    sink: IngressSink | None = None


class Query(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Another invocation's attach or get-output of an invocation of this partition."""

    query: InvocationQuery


class Output(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The ingress asks for an invocation's result now: the result, or a rejection (470 not
    finished, 404 unknown)."""

    invocation_id: InvocationIdBytes
    sink: IngressSink


class Kill(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """End the invocation at once with failure 409 "killed", without the SDK. The admin API
    gives a ``sink`` to hear the outcome (see `_sm_control`), as for Purge, Pause and Resume."""

    invocation_id: InvocationIdBytes
    sink: IngressSink | None = None


class Purge(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Forget a completed invocation (its retained status and journal) before its retention ends."""

    invocation_id: InvocationIdBytes
    sink: IngressSink | None = None


class Resume(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Run a paused or suspended invocation again, optionally pinned to another deployment
    (the admin API checked that it exists; one that does not serve the invocation's service
    fails the attempts, which are retried by the retry policy)."""

    invocation_id: InvocationIdBytes
    deployment_id: str | None = None
    sink: IngressSink | None = None


class AnnounceLeader(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Node ``node`` (process ``generation``) leads from ``epoch`` on (claimed by CAS in the
    metadata store). Carried with dedup SelfProposal(epoch, 0)."""

    node: int
    generation: int
    epoch: int


class TruncateOutbox(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Outbox messages up to and including ``index`` were delivered: drop them."""

    index: int


Command = (
    Invoke
    | Attach
    | JournalCommand
    | RunCompletion
    | Suspended
    | End
    | Fail
    | TimerFired
    | Respond
    | AnnounceLeader
    | TruncateOutbox
    | Signal
    | Query
    | Output
    | Kill
    | Purge
    | Pause
    | Resume
)


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    command: Command
    timestamp_ms: int
    dedup: Dedup | None = None


def delivery(message: OutboxMessage) -> Command:
    """The command that delivers an outbox message on its target partition."""
    match message.command:
        case InvocationResponse() as response:
            return Respond(response)
        case InvocationSignal() as signal:
            return Signal(signal)
        case InvocationQuery() as query:
            return Query(query)
        case invocation:
            return Invoke(invocation)

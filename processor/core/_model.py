"""The values a partition keeps and the log carries: targets, invocations, journal entries,
results, response sinks, timers and outbox messages.

All are frozen msgspec Structs in array form: they are encoded into log records and store
values by `processor.core._codec` (one versioned format) and must stay cheap to build and read
(the state machine handles a few per invocation step, on every replica).

Invocation ids are kept as their 24 raw bytes (partition key u64 + uuid u128, big-endian), the
form the service protocol's StartMessage carries; `processor.ids.InvocationId` renders them.
"""

from __future__ import annotations

import enum
import functools

import msgspec

InvocationIdBytes = bytes
"""24 raw bytes: partition key (u64 BE) then uuid (u128 BE)."""


class ServiceType(enum.Enum):
    SERVICE = "service"
    VIRTUAL_OBJECT = "virtual_object"
    WORKFLOW = "workflow"


class HandlerType(enum.Enum):
    SHARED = "shared"
    EXCLUSIVE = "exclusive"
    WORKFLOW = "workflow"


class Target(msgspec.Struct, frozen=True, array_like=True):
    """What an invocation runs: resolved against the schema by whoever created it."""

    service: str
    handler: str
    service_type: ServiceType
    handler_type: HandlerType | None = None
    """None for plain services (their handlers have no type)."""
    key: str | None = None
    """Object or workflow key; None for plain services."""

    @property
    def exclusive(self) -> bool:
        """Runs alone per key: an object's exclusive handler, or a workflow's run handler."""
        return self.handler_type in (HandlerType.EXCLUSIVE, HandlerType.WORKFLOW)

    @property
    def keyed(self) -> bool:
        return self.service_type is not ServiceType.SERVICE

    def __str__(self) -> str:
        if self.key is None:
            return f"{self.service}/{self.handler}"
        return f"{self.service}/{self.key}/{self.handler}"


class Failure(msgspec.Struct, frozen=True, array_like=True):
    code: int
    message: str
    metadata: tuple[tuple[str, str], ...] = ()


class Result(msgspec.Struct, frozen=True, array_like=True):
    """An invocation's or a completion's outcome: a value (bytes), or a failure."""

    value: bytes | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


class JournalEntry(msgspec.Struct, frozen=True, array_like=True):
    """One entry as the service protocol stores it: replayed to the SDK byte for byte."""

    type_id: int
    raw: bytes


# --- where results go ---------------------------------------------------------------------


class IngressSink(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """An HTTP request waiting on some ingress node: the result goes back there over the data
    port. ``generation`` fences a restarted ingress (its requests are gone)."""

    node: int
    generation: int
    request_id: int


class PartitionSink(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """A calling invocation waiting on completion ``completion_id`` (possibly on another
    partition): the result travels as an ``InvocationResponse`` through the outbox, and is
    journaled there as a notification of type ``notification`` (a call's completion, or an
    attach's or a get-output's)."""

    caller: InvocationIdBytes
    completion_id: int
    notification: int = 0x800D  # CallCompletionNotification


ResponseSink = IngressSink | PartitionSink


# --- invocations ----------------------------------------------------------------------------


class ServiceInvocation(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """A new invocation, as the ingress or a calling invocation asks for it. Tagged: it shares
    `OutboxMessage.command` with `InvocationResponse`, and msgspec decodes a union of structs
    only by tag."""

    invocation_id: InvocationIdBytes
    target: Target
    deployment_id: str
    """The deployment it runs on, chosen when it was created (immutable deployments)."""
    argument: bytes
    headers: tuple[tuple[str, str], ...] = ()
    response_sink: ResponseSink | None = None
    submit_sink: IngressSink | None = None
    """A one-way send waiting to learn whether it was accepted or a duplicate."""
    idempotency_key: str | None = None
    execution_time_ms: int = 0
    """Run no earlier than this (a delayed send); 0 = now."""
    caller: InvocationIdBytes | None = None
    """The invocation that made this call or send; None from the ingress."""
    completion_retention_ms: int = 0
    journal_retention_ms: int = 0


class StatusKind(enum.Enum):
    SCHEDULED = "scheduled"
    INBOXED = "inboxed"
    INVOKED = "invoked"
    SUSPENDED = "suspended"
    PAUSED = "paused"
    COMPLETED = "completed"


class Awaiting(msgspec.Struct, frozen=True, array_like=True):
    """What a suspended invocation waits for: any one of these resumes it."""

    completion_ids: tuple[int, ...] = ()
    signal_ids: tuple[int, ...] = ()
    signal_names: tuple[str, ...] = ()


class InvocationStatus(msgspec.Struct, frozen=True, array_like=True):
    """One invocation's row: lifecycle, where its result goes, and what replay needs.

    ``journal_length`` counts entries (commands and notifications, Input included);
    ``commands`` counts commands only (the SDK's command indexes); ``completions`` and
    ``signals`` list the completion ids and signal indexes already notified, so a suspension
    can be checked and resumed without reading the journal."""

    kind: StatusKind
    invocation: ServiceInvocation
    created_at_ms: int
    modified_at_ms: int
    response_sinks: tuple[ResponseSink, ...] = ()
    journal_length: int = 0
    commands: int = 0
    completions: tuple[int, ...] = ()
    signals: tuple[int, ...] = ()
    signal_names: tuple[str, ...] = ()
    awaiting: Awaiting | None = None
    inbox_seq: int = 0
    result: Result | None = None
    """Set when COMPLETED (kept for the retention period), or once the Output command came."""
    completed_at_ms: int = 0
    expires_at_ms: int = 0
    fence: int = 0
    """Grows at each Pause: an attempt's effects carry the fence it started under, and those of
    an attempt started before the last pause are dropped (it may still be proposing when a
    resume starts the next one)."""


# --- timers ---------------------------------------------------------------------------------


@functools.total_ordering
class TimerKind(enum.Enum):
    """Ordered (by value) so that two timers of one invocation due in the same millisecond
    still sort: `TimerKey` orders by every field."""

    SLEEP = "sleep"
    """Completes a Sleep command: ``completion_id``."""
    INVOKE = "invoke"
    """Starts a delayed (scheduled) invocation."""
    CLEANUP = "cleanup"
    """Purges a completed invocation whose retention ended."""

    # Ordered by declaration, so that TimerKeys differing only in kind sort (the partition
    # store's key codes follow the same order); a new kind goes last.
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, TimerKind):
            return NotImplemented
        return _TIMER_KIND_RANK[self] < _TIMER_KIND_RANK[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, TimerKind):
            return NotImplemented
        return _TIMER_KIND_RANK[self] > _TIMER_KIND_RANK[other]


_TIMER_KIND_RANK = {kind: rank for rank, kind in enumerate(TimerKind)}


class TimerKey(msgspec.Struct, frozen=True, array_like=True, order=True):
    """Ordered by wake-up time, then invocation id, kind (declaration order), completion id:
    the leader's timer service fires them in key order."""

    wake_up_ms: int
    invocation_id: InvocationIdBytes
    kind: TimerKind
    completion_id: int = 0


# --- cross-partition messages ---------------------------------------------------------------


class InvocationResponse(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """The result of a call (or an attach, or a get-output), for the caller's partition. A
    result with neither value nor failure is "void" (a get-output of an unfinished invocation)."""

    caller: InvocationIdBytes
    completion_id: int
    callee: InvocationIdBytes
    result: Result
    notification: int = 0x800D  # CallCompletionNotification


class InvocationSignal(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """A signal for invocation ``target``: an awakeable's completion (``index`` >= 17), a cancel
    (``index`` 1) or a named signal (``name``); ``result`` None is void."""

    target: InvocationIdBytes
    index: int = 0
    name: str | None = None
    result: Result | None = None


class InvocationQuery(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """An invocation asks for ``target``'s result: with ``attach`` it waits for the end,
    otherwise it is answered at once (void while ``target`` runs)."""

    target: InvocationIdBytes
    sink: PartitionSink
    attach: bool


class PromiseRow(msgspec.Struct, frozen=True, array_like=True):
    """A workflow's durable promise: its result once completed, else who waits for it (each
    an invocation of the same workflow key, and the completion id to notify)."""

    result: Result | None = None
    waiters: tuple[tuple[InvocationIdBytes, int], ...] = ()


class OutboxMessage(msgspec.Struct, frozen=True, array_like=True):
    """A command for the partition owning ``partition_key``, delivered by the leader's shuffle
    with ForeignPartition dedup (exactly once), then truncated."""

    partition_key: int
    command: ServiceInvocation | InvocationResponse | InvocationSignal | InvocationQuery

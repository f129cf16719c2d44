"""An invocation's life in the partition: created, scheduled or queued, started, notified,
suspended and resumed, completed; its response sinks answered and its key's lock handed on.

These are the state machine's building blocks. Each works on one applying record's `Apply`
context (the transaction, the log's time, the actions collected so far) and never reads a
clock or draws a number, so every replica makes the same writes.

Status transitions (kind before -> kind after, and what moves it):

    (none)     --Invoke, execution time ahead-------------------> SCHEDULED  (+ INVOKE timer)
    (none) / SCHEDULED --Invoke / INVOKE timer, key locked------> INBOXED    (queued per key)
    (none) / SCHEDULED / INBOXED --start (lock free / handed on)--> INVOKED  (Input journaled)
    INVOKED    --Suspended, nothing awaited is in yet-----------> SUSPENDED
    SUSPENDED  --a notification it awaits (resume)--------------> INVOKED
    INVOKED    --Pause (admin, or retries ran out)---------------> PAUSED     (attempt aborted)
    PAUSED / SUSPENDED --Resume (admin), a cancel signal----------> INVOKED
    INVOKED    --End / Fail; SUSPENDED, PAUSED --Fail, Kill-----> COMPLETED  (+ CLEANUP timer),
                                                                  or gone when retention is 0
    COMPLETED  --CLEANUP timer, expired-------------------------> gone
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from processor.core._actions import (
    AckRunCompletion,
    Action,
    ForwardNotification,
    IngressRejected,
    IngressResponse,
    IngressSubmitted,
    InvokeAction,
    NewOutboxMessage,
    RegisterTimer,
)
from processor.core._model import (
    Awaiting,
    Failure,
    HandlerType,
    IngressSink,
    InvocationIdBytes,
    InvocationResponse,
    InvocationSignal,
    InvocationStatus,
    JournalEntry,
    OutboxMessage,
    ResponseSink,
    Result,
    ServiceInvocation,
    StatusKind,
    TimerKey,
    TimerKind,
)
from processor.core._tables import Tables
from processor.protocol import MessageType, pb

_replace = msgspec.structs.replace
_INPUT = int(MessageType.INPUT_COMMAND)
WORKFLOW_ALREADY_INVOKED = Failure(409, "the workflow method was already invoked")
INVOCATION_GONE = Failure(
    404,
    "the invocation is unknown: it ended and its result was not retained (use an idempotency key to keep it)",
)
EMPTY_RESULT = Result(value=b"")
RUNNING = (StatusKind.INVOKED, StatusKind.SUSPENDED, StatusKind.PAUSED)
"""Kinds that may receive notifications: the invocation started and has not completed (a
paused one journals them and waits for its resume)."""
INVOKED = (StatusKind.INVOKED,)
"""An attempt may be running: the only kind that takes the SDK's commands."""


@dataclass(slots=True)
class Apply:
    """What applying one record works with."""

    tables: Tables
    now_ms: int
    """The record's timestamp: the state machine's only notion of time."""
    actions: list[Action]
    first_key: int
    last_key: int
    """The partition's key range, inclusive: ids outside it belong to another partition."""

    def owns(self, invocation_id: InvocationIdBytes) -> bool:
        if len(invocation_id) != 24:
            return False
        return self.first_key <= int.from_bytes(invocation_id[:8], "big") <= self.last_key


def status_in(ctx: Apply, inv_id: InvocationIdBytes, kinds: tuple[StatusKind, ...]) -> InvocationStatus | str:
    """The invocation's status if it is of one of ``kinds``, else why not (a drop reason)."""
    if not ctx.owns(inv_id):
        return "the invocation id is malformed or belongs to another partition"
    status = ctx.tables.get_status(inv_id)
    if status is None:
        return "unknown invocation"
    if status.kind not in kinds:
        return f"the invocation is {status.kind.value}, not {' or '.join(k.value for k in kinds)}"
    return status


def stale(status: InvocationStatus, fence: int | None) -> str | None:
    """Why an attempt's effect is stale, if it is: it started before the last pause."""
    if fence is None or fence == status.fence:
        return None
    return f"an attempt started under fence {fence}, the invocation is at {status.fence}"


# --- creation -------------------------------------------------------------------------------


def invoke(ctx: Apply, inv: ServiceInvocation) -> str | None:
    """Apply an Invoke: a new invocation, or a duplicate of an existing one (same id)."""
    inv_id = inv.invocation_id
    if not ctx.owns(inv_id):
        return "the invocation id is malformed or belongs to another partition"
    target = inv.target
    if target.keyed != (target.key is not None):
        return f"target {target} has a key iff its service is keyed: it has not"
    status = ctx.tables.get_status(inv_id)
    if status is not None:
        _duplicate(ctx, inv, status)
        return None
    now = ctx.now_ms
    if inv.submit_sink is not None:
        ctx.actions.append(IngressSubmitted(inv.submit_sink, inv_id, False, inv.execution_time_ms))
    status = InvocationStatus(
        kind=StatusKind.SCHEDULED,
        invocation=inv,
        created_at_ms=now,
        modified_at_ms=now,
        response_sinks=() if inv.response_sink is None else (inv.response_sink,),
    )
    if inv.execution_time_ms > now:
        ctx.tables.put_status(inv_id, status)
        register_timer(ctx, TimerKey(inv.execution_time_ms, inv_id, TimerKind.INVOKE))
        return None
    admit(ctx, inv_id, status)
    return None


def _duplicate(ctx: Apply, inv: ServiceInvocation, status: InvocationStatus) -> None:
    """Same id again: an idempotent request repeated, a workflow run invoked twice, or a
    record the log delivered twice. Nothing runs again; the new caller learns the outcome."""
    inv_id = inv.invocation_id
    if inv.submit_sink is not None:
        execution_time = status.invocation.execution_time_ms
        ctx.actions.append(IngressSubmitted(inv.submit_sink, inv_id, True, execution_time))
    sink = inv.response_sink
    if sink is None:
        return
    # The same request again (a record the log delivered twice) is no second run of a workflow.
    same_request = sink == status.invocation.response_sink or sink in status.response_sinks
    if status.invocation.target.handler_type is HandlerType.WORKFLOW and not same_request:
        reject(ctx, sink, inv_id, WORKFLOW_ALREADY_INVOKED)
    elif status.kind is StatusKind.COMPLETED:
        answer(ctx, sink, inv_id, status.result or EMPTY_RESULT, status.expires_at_ms)
    else:
        add_sink(ctx, inv_id, status, sink)


def add_sink(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus, sink: ResponseSink) -> None:
    """One more party to answer when the invocation ends (once: a repeated request adds none)."""
    if sink not in status.response_sinks:
        sinks = (*status.response_sinks, sink)
        ctx.tables.put_status(inv_id, _replace(status, response_sinks=sinks, modified_at_ms=ctx.now_ms))


def attach(ctx: Apply, inv_id: InvocationIdBytes, sink: IngressSink) -> str | None:
    """Another sink for an invocation's result; never starts one (see `Attach`)."""
    if not ctx.owns(inv_id):
        return "the invocation id is malformed or belongs to another partition"
    status = ctx.tables.get_status(inv_id)
    if status is None:
        reject(ctx, sink, inv_id, INVOCATION_GONE)
    elif status.kind is StatusKind.COMPLETED:
        answer(ctx, sink, inv_id, status.result or EMPTY_RESULT, status.expires_at_ms)
    else:
        add_sink(ctx, inv_id, status, sink)
    return None


def admit(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus) -> None:
    """Start the invocation now, or queue it behind the exclusive handler holding its key."""
    target = status.invocation.target
    if target.exclusive and target.key is not None:
        if ctx.tables.get_lock(target.service, target.key) is not None:
            seq = ctx.tables.next_inbox_seq()
            ctx.tables.inbox_push(target.service, target.key, seq, inv_id)
            status = _replace(status, kind=StatusKind.INBOXED, inbox_seq=seq, modified_at_ms=ctx.now_ms)
            ctx.tables.put_status(inv_id, status)
            return
    start(ctx, inv_id, status)


def start(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus) -> None:
    """Take the key's lock (exclusive targets), journal the Input command, hand it to the invoker."""
    inv = status.invocation
    target = inv.target
    if target.exclusive and target.key is not None:
        ctx.tables.put_lock(target.service, target.key, inv_id)
    ctx.tables.put_journal(inv_id, 0, input_entry(inv))
    status = _replace(
        status, kind=StatusKind.INVOKED, journal_length=1, commands=1, inbox_seq=0, modified_at_ms=ctx.now_ms
    )
    ctx.tables.put_status(inv_id, status)
    ctx.actions.append(InvokeAction(inv_id, target, inv.deployment_id))


def input_entry(inv: ServiceInvocation) -> JournalEntry:
    # Filled in place: half the cost of building it from nested constructors (upb).
    message = pb.InputCommandMessage()
    for key, value in inv.headers:
        message.headers.add(key=key, value=value)
    message.value.content = inv.argument
    return JournalEntry(_INPUT, message.SerializeToString())


# --- notifications, suspension, resumption --------------------------------------------------


def notify(
    ctx: Apply,
    inv_id: InvocationIdBytes,
    status: InvocationStatus,
    entry: JournalEntry,
    completion_id: int,
    *,
    ack_run: bool = False,
) -> InvocationStatus:
    """Append a completion notification; a running attempt gets it forwarded, a suspended
    invocation waiting for it resumes. Returns the new status (the caller stores it)."""
    index = status.journal_length
    ctx.tables.put_journal(inv_id, index, entry)
    status = _replace(
        status,
        journal_length=index + 1,
        completions=(*status.completions, completion_id),
        modified_at_ms=ctx.now_ms,
    )
    if status.kind is StatusKind.INVOKED:
        ctx.actions.append(ForwardNotification(inv_id, index, entry))
        if ack_run:
            ctx.actions.append(AckRunCompletion(inv_id, completion_id))
    elif status.awaiting is not None and completion_id in status.awaiting.completion_ids:
        status = resume(ctx, inv_id, status)
    return status


def notify_signal(
    ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus, signal: InvocationSignal
) -> InvocationStatus:
    """Append a SignalNotification (an awakeable's result, a cancel, a named signal); a running
    attempt gets it forwarded, a suspended invocation waiting for it resumes."""
    message = pb.SignalNotificationMessage()
    if signal.name is not None:
        message.name = signal.name
    else:
        message.idx = signal.index
    fill_result(message, signal.result)
    entry = JournalEntry(int(MessageType.SIGNAL_NOTIFICATION), message.SerializeToString())
    index = status.journal_length
    ctx.tables.put_journal(inv_id, index, entry)
    if signal.name is not None:
        status = _replace(status, signal_names=(*status.signal_names, signal.name))
    else:
        status = _replace(status, signals=(*status.signals, signal.index))
    status = _replace(status, journal_length=index + 1, modified_at_ms=ctx.now_ms)
    if status.kind is StatusKind.INVOKED:
        ctx.actions.append(ForwardNotification(inv_id, index, entry))
    elif status.awaiting is not None and (
        signal.index in status.awaiting.signal_ids or signal.name in status.awaiting.signal_names
    ):
        status = resume(ctx, inv_id, status)
    return status


def fill_result(message: Any, result: Result | None) -> None:
    """Set a notification's result oneof: void (None, or neither value nor failure), value or failure."""
    if result is None or (result.value is None and result.failure is None):
        message.void.SetInParent()
    elif result.failure is not None:
        f = result.failure
        message.failure.code = f.code
        message.failure.message = f.message
        for key, value in f.metadata:
            message.failure.metadata.add(key=key, value=value)
    else:
        message.value.content = result.value or b""


def resume(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus) -> InvocationStatus:
    inv = status.invocation
    ctx.actions.append(InvokeAction(inv_id, inv.target, inv.deployment_id))
    return _replace(status, kind=StatusKind.INVOKED, awaiting=None)


def already_in(status: InvocationStatus, awaiting: Awaiting) -> bool:
    """Whether something a suspension awaits is already journaled (§9.7's race: it came in
    between the SDK deciding to suspend and its Suspension being applied)."""
    return (
        any(c in status.completions for c in awaiting.completion_ids)
        or any(s in status.signals for s in awaiting.signal_ids)
        or any(n in status.signal_names for n in awaiting.signal_names)
    )


# --- completion -----------------------------------------------------------------------------


def complete(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus, result: Result) -> None:
    """The invocation ended with ``result``: answer its sinks, retain or forget it, and hand
    its key to the next queued invocation."""
    now = ctx.now_ms
    inv = status.invocation
    for sink in status.response_sinks:
        answer(ctx, sink, inv_id, result, 0)
    tables = ctx.tables
    if inv.completion_retention_ms <= 0:
        forget(ctx, inv_id, status)
    else:
        expires = now + inv.completion_retention_ms
        tables.put_status(
            inv_id,
            _replace(
                status,
                kind=StatusKind.COMPLETED,
                # The input is in the journal; the retained row only answers duplicates.
                invocation=_replace(inv, argument=b"", headers=()),
                response_sinks=(),
                awaiting=None,
                result=result,
                completed_at_ms=now,
                expires_at_ms=expires,
                modified_at_ms=now,
            ),
        )
        if inv.journal_retention_ms <= 0:
            tables.delete_journal(inv_id)
        register_timer(ctx, TimerKey(expires, inv_id, TimerKind.CLEANUP))
    _release(ctx, inv_id, status)


def forget(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus) -> None:
    """Delete an ended invocation's row and journal; a workflow's run takes the workflow's
    state and promises with it (they live as long as its result is kept)."""
    ctx.tables.delete_status(inv_id)
    ctx.tables.delete_journal(inv_id)
    target = status.invocation.target
    if target.handler_type is HandlerType.WORKFLOW and target.key is not None:
        ctx.tables.delete_all_state(target.service, target.key)
        ctx.tables.delete_all_promises(target.service, target.key)


def _release(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus) -> None:
    target = status.invocation.target
    if not target.exclusive or target.key is None:
        return
    tables = ctx.tables
    if tables.get_lock(target.service, target.key) != inv_id:
        return
    tables.delete_lock(target.service, target.key)
    while (first := tables.inbox_first(target.service, target.key)) is not None:
        seq, next_id = first
        tables.inbox_delete(target.service, target.key, seq)
        queued = tables.get_status(next_id)
        if queued is not None and queued.kind is StatusKind.INBOXED:
            start(ctx, next_id, queued)
            return


# --- where results go -----------------------------------------------------------------------


def answer(
    ctx: Apply, sink: ResponseSink, inv_id: InvocationIdBytes, result: Result, expires_at_ms: int
) -> None:
    if isinstance(sink, IngressSink):
        ctx.actions.append(IngressResponse(sink, inv_id, result, expires_at_ms))
    else:
        response = InvocationResponse(sink.caller, sink.completion_id, inv_id, result, sink.notification)
        outbox(ctx, OutboxMessage(int.from_bytes(sink.caller[:8], "big"), response))


def reject(ctx: Apply, sink: ResponseSink, inv_id: InvocationIdBytes, failure: Failure) -> None:
    if isinstance(sink, IngressSink):
        ctx.actions.append(IngressRejected(sink, inv_id, failure.code, failure.message))
    else:
        answer(ctx, sink, inv_id, Result(failure=failure), 0)


def outbox(ctx: Apply, message: OutboxMessage) -> None:
    index = ctx.tables.next_outbox_index()
    ctx.tables.put_outbox(index, message)
    ctx.actions.append(NewOutboxMessage(index, message))


def register_timer(ctx: Apply, timer: TimerKey) -> None:
    ctx.tables.put_timer(timer)
    ctx.actions.append(RegisterTimer(timer))

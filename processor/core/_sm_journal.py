"""Journal commands: the SDK's commands, appended to the invocation's journal with their effects.

A `JournalCommand` is applied only to a running (INVOKED) invocation and only as its next
command (``command_index == status.commands``): a stale attempt's or a duplicate proposal never
appends twice. The raw protobuf is parsed here once, and checked before anything is written: a
command that does not parse, or that breaks a rule the invoker enforces (state writes from
shared handlers or plain services, a call whose resolved target does not match), is dropped
whole, so replicas stay identical whatever a faulty leader proposed.

Per type (restate-protocol.md §4.3):

    SetState, ClearState, ClearAllState      write (service, key)'s state, in journal order
    GetLazyState, GetLazyStateKeys           read state; the completion is appended at once
    GetEagerState(Keys), Run                 journal only (the SDK filled in the result, or it
                                             comes later as its own record: RunCompletion)
    GetPromise                               completion at once if completed, else a waiter
                                             on the promise's row (notified when completed)
    PeekPromise                              completion at once: value, failure or void
    CompletePromise                          first completion wins (waiters notified); a
                                             second is answered 409
    SendSignal, CompleteAwakeable            journal; a signal to the target via the outbox
    AttachInvocation, GetInvocationOutput    journal; a query to the target via the outbox,
                                             whose answer is this command's completion
    Output                                   journal; the status remembers the result for End
    Sleep                                    a SLEEP timer at the absolute wake-up time
    Call, OneWayCall                         the child's id (derived, see processor.ids), its
                                             CallInvocationId notification, and the child's
                                             ServiceInvocation in the outbox
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from google.protobuf.message import Message

from processor.core._commands import JournalCommand
from processor.core._model import (
    Failure,
    HandlerType,
    InvocationQuery,
    InvocationSignal,
    InvocationStatus,
    JournalEntry,
    OutboxMessage,
    PartitionSink,
    PromiseRow,
    Result,
    ServiceInvocation,
    ServiceType,
    TimerKey,
    TimerKind,
)
from processor.core._sm_lifecycle import (
    INVOKED,
    RUNNING,
    Apply,
    fill_result,
    notify,
    outbox,
    register_timer,
    stale,
    status_in,
)
from processor.ids import AwakeableId, BadId, InvocationId, call_invocation_id, deterministic_id
from processor.protocol import MessageType, ProtocolError, decode_payload, pb, type_name

_replace = msgspec.structs.replace
T = MessageType
PROMISE_ALREADY_COMPLETED = Failure(409, "promise was already completed")
NOT_FOUND = Failure(404, "invocation not found")

# Handlers take the parsed protobuf message of their own type (typed Any: one table serves all).
Handler = Callable[[Apply, JournalCommand, InvocationStatus, Any], "str | None"]


def journal_command(ctx: Apply, cmd: JournalCommand) -> str | None:
    status = status_in(ctx, cmd.invocation_id, INVOKED)
    if isinstance(status, str):
        return status
    if (why := stale(status, cmd.fence)) is not None:
        return why
    if cmd.command_index != status.commands:
        return f"command index {cmd.command_index} is not the next one ({status.commands})"
    handler = _HANDLERS.get(cmd.type_id)
    if handler is None:
        return f"{type_name(cmd.type_id)} is not a command an SDK may send"
    try:
        message = decode_payload(cmd.type_id, cmd.raw)
    except ProtocolError as error:
        return str(error)
    assert message is not None  # only known types have handlers
    return handler(ctx, cmd, status, message)


def _append(ctx: Apply, cmd: JournalCommand, status: InvocationStatus) -> InvocationStatus:
    ctx.tables.put_journal(cmd.invocation_id, status.journal_length, JournalEntry(cmd.type_id, cmd.raw))
    return _replace(
        status,
        journal_length=status.journal_length + 1,
        commands=status.commands + 1,
        modified_at_ms=ctx.now_ms,
    )


def _journal_only(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> None:
    ctx.tables.put_status(cmd.invocation_id, _append(ctx, cmd, status))


def _output(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> None:
    status = _replace(_append(ctx, cmd, status), result=_result_of(message))
    ctx.tables.put_status(cmd.invocation_id, status)


# --- state ----------------------------------------------------------------------------------


def _state_rule(status: InvocationStatus, write: bool) -> str | None:
    target = status.invocation.target
    if not target.keyed or target.key is None:
        return f"{target.service} is not keyed: it has no state"
    if write and target.handler_type is HandlerType.SHARED:
        return f"the shared handler {target} may not write state"
    return None


def _write_state(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    """SetState, ClearState, ClearAllState: written at once, so later reads see them."""
    if (broken := _state_rule(status, write=True)) is not None:
        return broken
    target = status.invocation.target
    service, key = target.service, target.key or ""
    if cmd.type_id == T.SET_STATE_COMMAND:
        ctx.tables.put_state(service, key, message.key, message.value.content)
    elif cmd.type_id == T.CLEAR_STATE_COMMAND:
        ctx.tables.delete_state(service, key, message.key)
    else:
        ctx.tables.delete_all_state(service, key)
    _journal_only(ctx, cmd, status, message)
    return None


def _get_lazy_state(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    if (broken := _state_rule(status, write=False)) is not None:
        return broken
    target = status.invocation.target
    value = ctx.tables.get_state(target.service, target.key, message.key)
    completion_id = message.result_completion_id
    if value is None:
        reply = pb.GetLazyStateCompletionNotificationMessage(completion_id=completion_id, void=pb.Void())
    else:
        reply = pb.GetLazyStateCompletionNotificationMessage(
            completion_id=completion_id, value=pb.Value(content=value)
        )
    _with_notification(ctx, cmd, status, T.GET_LAZY_STATE_COMPLETION, reply, completion_id)
    return None


def _get_lazy_state_keys(
    ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any
) -> str | None:
    if (broken := _state_rule(status, write=False)) is not None:
        return broken
    target = status.invocation.target
    keys = [name for name, _ in ctx.tables.all_state(target.service, target.key)]
    completion_id = message.result_completion_id
    reply = pb.GetLazyStateKeysCompletionNotificationMessage(
        completion_id=completion_id, state_keys=pb.StateKeys(keys=keys)
    )
    _with_notification(ctx, cmd, status, T.GET_LAZY_STATE_KEYS_COMPLETION, reply, completion_id)
    return None


def _with_notification(
    ctx: Apply,
    cmd: JournalCommand,
    status: InvocationStatus,
    type_id: int,
    reply: Message,
    completion_id: int,
) -> None:
    """Append the command, then its completion right behind it."""
    status = _append(ctx, cmd, status)
    entry = JournalEntry(type_id, reply.SerializeToString())
    ctx.tables.put_status(cmd.invocation_id, notify(ctx, cmd.invocation_id, status, entry, completion_id))


# --- timers and calls -----------------------------------------------------------------------


def _sleep(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> None:
    _journal_only(ctx, cmd, status, message)
    wake_up = message.wake_up_time
    completion_id = message.result_completion_id
    register_timer(ctx, TimerKey(wake_up, cmd.invocation_id, TimerKind.SLEEP, completion_id))


def _call(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    call = cmd.call
    if call is None:
        return "a call without its resolved target"
    target = call.target
    m = message
    if (target.service, target.handler) != (m.service_name, m.handler_name):
        return f"the resolved target {target} is not the command's {m.service_name}/{m.handler_name}"
    if target.keyed != (target.key is not None) or (target.key or "") != m.key:
        return f"the resolved target {target} does not have the command's key {m.key!r}"
    idempotency_key = m.idempotency_key if m.HasField("idempotency_key") else None
    if idempotency_key == "":
        return "an empty idempotency key"
    parent = cmd.invocation_id
    child = call_invocation_id(
        parent=parent,
        command_index=cmd.command_index,
        service=target.service,
        handler=target.handler,
        key=target.key,
        idempotency_key=idempotency_key,
        workflow_run=target.handler_type is HandlerType.WORKFLOW,
    )
    one_way = cmd.type_id == T.ONE_WAY_CALL_COMMAND
    invocation = ServiceInvocation(
        invocation_id=child.to_bytes(),
        target=target,
        deployment_id=call.deployment_id,
        argument=m.parameter,
        headers=tuple((h.key, h.value) for h in m.headers),
        response_sink=None if one_way else PartitionSink(parent, m.result_completion_id),
        idempotency_key=idempotency_key,
        execution_time_ms=m.invoke_time if one_way else 0,
        caller=parent,
        completion_retention_ms=call.completion_retention_ms,
        journal_retention_ms=call.journal_retention_ms,
    )
    id_completion = m.invocation_id_notification_idx
    reply = pb.CallInvocationIdCompletionNotificationMessage(
        completion_id=id_completion, invocation_id=str(child)
    )
    _with_notification(ctx, cmd, status, T.CALL_INVOCATION_ID_COMPLETION, reply, id_completion)
    outbox(ctx, OutboxMessage(child.partition_key, invocation))
    return None


# --- workflow promises ---------------------------------------------------------------------


def _workflow_of(status: InvocationStatus) -> tuple[str, str] | str:
    target = status.invocation.target
    if target.service_type is not ServiceType.WORKFLOW or target.key is None:
        return f"{target} is not a workflow handler: it has no promises"
    return target.service, target.key


def _get_promise(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    """Completed: the completion at once; else the invocation waits on the promise's row."""
    wf = _workflow_of(status)
    if isinstance(wf, str):
        return wf
    row = ctx.tables.get_promise(*wf, message.key)
    completion_id = message.result_completion_id
    if row is not None and row.result is not None:
        reply = pb.GetPromiseCompletionNotificationMessage(completion_id=completion_id)
        fill_result(reply, row.result)
        _with_notification(ctx, cmd, status, T.GET_PROMISE_COMPLETION, reply, completion_id)
        return None
    ctx.tables.put_status(cmd.invocation_id, _append(ctx, cmd, status))
    waiters = (*(row.waiters if row is not None else ()), (cmd.invocation_id, completion_id))
    ctx.tables.put_promise(*wf, message.key, PromiseRow(None, waiters))
    return None


def _peek_promise(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    wf = _workflow_of(status)
    if isinstance(wf, str):
        return wf
    row = ctx.tables.get_promise(*wf, message.key)
    completion_id = message.result_completion_id
    reply = pb.PeekPromiseCompletionNotificationMessage(completion_id=completion_id)
    fill_result(reply, row.result if row is not None else None)
    _with_notification(ctx, cmd, status, T.PEEK_PROMISE_COMPLETION, reply, completion_id)
    return None


def _complete_promise(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    """The first completion wins; the waiters get it. A second one is answered 409."""
    wf = _workflow_of(status)
    if isinstance(wf, str):
        return wf
    name = message.key
    row = ctx.tables.get_promise(*wf, name)
    completion_id = message.result_completion_id
    reply = pb.CompletePromiseCompletionNotificationMessage(completion_id=completion_id)
    if row is not None and row.result is not None:
        fill_result(reply, Result(failure=PROMISE_ALREADY_COMPLETED))
        _with_notification(ctx, cmd, status, T.COMPLETE_PROMISE_COMPLETION, reply, completion_id)
        return None
    if message.WhichOneof("completion") == "completion_failure":
        f = message.completion_failure
        result = Result(failure=Failure(f.code, f.message, tuple((m.key, m.value) for m in f.metadata)))
    else:
        result = Result(value=message.completion_value.content)
    ctx.tables.put_promise(*wf, name, PromiseRow(result))
    fill_result(reply, None)
    _with_notification(ctx, cmd, status, T.COMPLETE_PROMISE_COMPLETION, reply, completion_id)
    for waiter, waiter_completion in row.waiters if row is not None else ():
        waiting = ctx.tables.get_status(waiter)
        if waiting is None or waiting.kind not in RUNNING or waiter_completion in waiting.completions:
            continue  # it ended (killed, say) before the promise was completed
        done = pb.GetPromiseCompletionNotificationMessage(completion_id=waiter_completion)
        fill_result(done, result)
        entry = JournalEntry(int(T.GET_PROMISE_COMPLETION), done.SerializeToString())
        ctx.tables.put_status(waiter, notify(ctx, waiter, waiting, entry, waiter_completion))
    return None


# --- signals, awakeables, attach and output --------------------------------------------------


def _send_signal(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    """Journaled, then delivered through the outbox to the target's partition (an unparsable
    target id is journaled and goes nowhere, as nothing could receive it)."""
    _journal_only(ctx, cmd, status, message)
    try:
        target = InvocationId.parse(message.target_invocation_id)
    except BadId:
        return None
    which = message.WhichOneof("signal_id")
    signal = InvocationSignal(
        target.to_bytes(),
        index=message.idx if which == "idx" else 0,
        name=message.name if which == "name" else None,
        result=_signal_result(message),
    )
    outbox(ctx, OutboxMessage(target.partition_key, signal))
    return None


def _complete_awakeable(
    ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any
) -> str | None:
    _journal_only(ctx, cmd, status, message)
    try:
        awakeable = AwakeableId.parse(message.awakeable_id)
    except BadId:
        return None
    if message.WhichOneof("result") == "failure":
        f = message.failure
        result = Result(failure=Failure(f.code, f.message, tuple((m.key, m.value) for m in f.metadata)))
    else:
        result = Result(value=message.value.content)
    owner = awakeable.invocation_id
    signal = InvocationSignal(owner.to_bytes(), index=awakeable.signal_index, result=result)
    outbox(ctx, OutboxMessage(owner.partition_key, signal))
    return None


def _query(ctx: Apply, cmd: JournalCommand, status: InvocationStatus, message: Any) -> str | None:
    """AttachInvocation and GetInvocationOutput: asked of the target's partition through the
    outbox; the answer comes back as this command's completion. A target that names no
    possible invocation is answered at once with 404."""
    attach = cmd.type_id == T.ATTACH_INVOCATION_COMMAND
    notification = T.ATTACH_INVOCATION_COMPLETION if attach else T.GET_INVOCATION_OUTPUT_COMPLETION
    completion_id = message.result_completion_id
    target = _query_target(message)
    if target is None:
        cls = (
            pb.AttachInvocationCompletionNotificationMessage
            if attach
            else pb.GetInvocationOutputCompletionNotificationMessage
        )
        reply = cls(completion_id=completion_id)
        fill_result(reply, Result(failure=NOT_FOUND))
        _with_notification(ctx, cmd, status, notification, reply, completion_id)
        return None
    _journal_only(ctx, cmd, status, message)
    sink = PartitionSink(cmd.invocation_id, completion_id, int(notification))
    outbox(ctx, OutboxMessage(target.partition_key, InvocationQuery(target.to_bytes(), sink, attach)))
    return None


def _query_target(message: Any) -> InvocationId | None:
    which = message.WhichOneof("target")
    try:
        if which == "invocation_id":
            return InvocationId.parse(message.invocation_id)
        if which == "idempotent_request_target":
            t = message.idempotent_request_target
            key = t.service_key if t.HasField("service_key") else None
            return deterministic_id(t.service_name, t.handler_name, key, t.idempotency_key or None, False)
        if which == "workflow_target":
            t = message.workflow_target
            return deterministic_id(t.workflow_name, "", t.workflow_key, None, True)
    except (BadId, ValueError):
        return None
    return None


def _signal_result(message: Any) -> Result | None:
    which = message.WhichOneof("result")
    if which == "value":
        return Result(value=message.value.content)
    if which == "failure":
        f = message.failure
        return Result(failure=Failure(f.code, f.message, tuple((m.key, m.value) for m in f.metadata)))
    return None


def _result_of(message: Any) -> Result:
    """An Output command's (or a completion's) value or failure; nothing set is an empty value."""
    which = message.WhichOneof("result")
    if which == "failure":
        f = message.failure
        return Result(failure=Failure(f.code, f.message, tuple((m.key, m.value) for m in f.metadata)))
    if which == "value":
        return Result(value=message.value.content)
    return Result(value=b"")


_HANDLERS: dict[int, Handler] = {
    T.OUTPUT_COMMAND: _output,
    T.GET_LAZY_STATE_COMMAND: _get_lazy_state,
    T.SET_STATE_COMMAND: _write_state,
    T.CLEAR_STATE_COMMAND: _write_state,
    T.CLEAR_ALL_STATE_COMMAND: _write_state,
    T.GET_LAZY_STATE_KEYS_COMMAND: _get_lazy_state_keys,
    T.GET_EAGER_STATE_COMMAND: _journal_only,
    T.GET_EAGER_STATE_KEYS_COMMAND: _journal_only,
    T.SLEEP_COMMAND: _sleep,
    T.CALL_COMMAND: _call,
    T.ONE_WAY_CALL_COMMAND: _call,
    T.RUN_COMMAND: _journal_only,
    T.GET_PROMISE_COMMAND: _get_promise,
    T.PEEK_PROMISE_COMMAND: _peek_promise,
    T.COMPLETE_PROMISE_COMMAND: _complete_promise,
    T.SEND_SIGNAL_COMMAND: _send_signal,
    T.ATTACH_INVOCATION_COMMAND: _query,
    T.GET_INVOCATION_OUTPUT_COMMAND: _query,
    T.COMPLETE_AWAKEABLE_COMMAND: _complete_awakeable,
}

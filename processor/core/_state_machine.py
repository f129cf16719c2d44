"""The partition state machine: apply one log record to the partition's tables, return actions.

    actions = StateMachine().apply(tables, lsn, envelope, partition=p, num_partitions=n)

Every replica of a partition (leader, followers, one restored from a snapshot) applies the same
records in LSN order through this one function and so holds the same tables; nothing else
writes them. It keeps no state between calls (everything durable is in the tables), reads no
clock (time is the record's timestamp) and draws no random number (the ids it creates are
derived). The shell applies a batch of records in one transaction and commits it; only then,
and only on the leader, do the returned actions reach the invoker, the timers, the shuffle and
the ingress.

Per record, in this order:

1. **Already applied** (``lsn`` not above the applied LSN): ignored, nothing written.
2. **Fencing.** The leader's own commands (invoker effects, fired timers, outbox truncation,
   its announcement) must come as SelfProposal; an AnnounceLeader as SelfProposal(epoch, 0);
   any other self proposal must carry the announced leader's epoch.
3. **Dedup.** SelfProposal(epoch, seq) is applied only if (epoch, seq) is above the last one
   applied, ForeignPartition(p, seq) only if seq is above partition p's last; the new mark is
   written with the record. Once AnnounceLeader(E) is applied as (E, 0), every later record
   of an older epoch is a duplicate. Ingress records carry no dedup: the invocation id is
   theirs (a known id attaches or answers, it never runs twice).
4. **The command** (see `_sm_lifecycle` for an invocation's states, `_sm_journal` for the
   SDK's commands).
5. The applied LSN becomes ``lsn``, whatever happened above.

A record that cannot be applied (unknown invocation, stale command, a rule broken) is dropped
and reported to ``on_drop`` with the reason; apply never raises for it. Only bytes that are not
a record at all raise (`RecordFormatError`, from `apply_record`): skipping a record the other
replicas might read would split them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from google.protobuf.message import Message

from processor.core import _sm_control
from processor.core._actions import AbortAttempt, Action, InvokeAction
from processor.core._codec import decode_envelope
from processor.core._commands import (
    AnnounceLeader,
    Attach,
    Command,
    End,
    Envelope,
    Fail,
    ForeignPartition,
    Invoke,
    JournalCommand,
    Kill,
    Output,
    Pause,
    Purge,
    Query,
    Respond,
    Resume,
    RunCompletion,
    SelfProposal,
    Signal,
    Suspended,
    TimerFired,
    TruncateOutbox,
)
from processor.core._model import JournalEntry, Result, StatusKind, TimerKind
from processor.core._sm_journal import journal_command
from processor.core._sm_lifecycle import (
    EMPTY_RESULT,
    INVOKED,
    RUNNING,
    Apply,
    admit,
    already_in,
    attach,
    complete,
    fill_result,
    forget,
    invoke,
    notify,
    stale,
    status_in,
)
from processor.core._tables import Tables
from processor.ids import partition_key_range
from processor.protocol import MessageType, pb

_replace = msgspec.structs.replace
SELF: str = "self"
"""The dedup producer of the partition leader's own proposals."""

DropHook = Callable[[Envelope, str], None]
_LEADER_ONLY = (
    JournalCommand,
    RunCompletion,
    Suspended,
    End,
    Fail,
    TimerFired,
    TruncateOutbox,
    AnnounceLeader,
)


def foreign_producer(partition: int) -> str:
    """The dedup producer of partition ``partition``'s outbox messages."""
    return f"p{partition}"


class StateMachine:
    """Holds configuration only: ``on_drop`` hears every dropped record and why (for logs,
    metrics and test transcripts)."""

    __slots__ = ("_on_drop", "_ranges")

    def __init__(self, *, on_drop: DropHook | None = None) -> None:
        self._on_drop = on_drop
        self._ranges: dict[tuple[int, int], tuple[int, int]] = {}

    def apply_record(
        self, tables: Tables, lsn: int, record: bytes, *, partition: int, num_partitions: int
    ) -> list[Action]:
        """Decode ``record`` (raising `RecordFormatError` if it is not one) and apply it."""
        envelope = decode_envelope(record)
        return self.apply(tables, lsn, envelope, partition=partition, num_partitions=num_partitions)

    def apply(
        self, tables: Tables, lsn: int, envelope: Envelope, *, partition: int, num_partitions: int
    ) -> list[Action]:
        if lsn <= tables.applied_lsn():
            self._drop(envelope, f"LSN {lsn} is already applied")
            return []
        actions: list[Action] = []
        reason = _fence_and_dedup(tables, envelope)
        if reason is None:
            first, last = self._range(partition, num_partitions)
            ctx = Apply(tables, envelope.timestamp_ms, actions, first, last)
            reason = _APPLY[type(envelope.command)](ctx, envelope.command)
        tables.set_applied_lsn(lsn)
        if reason is not None:
            self._drop(envelope, reason)
        return actions

    def _range(self, partition: int, num_partitions: int) -> tuple[int, int]:
        key = (partition, num_partitions)
        found = self._ranges.get(key)
        if found is None:
            found = self._ranges[key] = partition_key_range(partition, num_partitions)
        return found

    def _drop(self, envelope: Envelope, reason: str) -> None:
        if self._on_drop is not None:
            self._on_drop(envelope, reason)


def _fence_and_dedup(tables: Tables, envelope: Envelope) -> str | None:
    dedup = envelope.dedup
    command = envelope.command
    if isinstance(dedup, SelfProposal):
        if isinstance(command, AnnounceLeader):
            if (dedup.epoch, dedup.seq) != (command.epoch, 0):
                return f"an announcement of epoch {command.epoch} must come as self proposal ({command.epoch}, 0)"
        else:
            leader = tables.leader()
            if leader is None or leader.epoch != dedup.epoch:
                announced = "no epoch" if leader is None else f"epoch {leader.epoch}"
                return f"a proposal of epoch {dedup.epoch}, but {announced} is announced"
        last = tables.dedup(SELF)
        if isinstance(last, SelfProposal) and (dedup.epoch, dedup.seq) <= (last.epoch, last.seq):
            return f"self proposal ({dedup.epoch}, {dedup.seq}) is not above ({last.epoch}, {last.seq})"
        tables.set_dedup(SELF, dedup)
        return None
    if isinstance(command, _LEADER_ONLY):
        return f"{type(command).__name__} is the leader's command: it must come as a self proposal"
    if isinstance(dedup, ForeignPartition):
        producer = foreign_producer(dedup.partition)
        last = tables.dedup(producer)
        if isinstance(last, ForeignPartition) and dedup.seq <= last.seq:
            return f"message {dedup.seq} of partition {dedup.partition} is not above {last.seq}"
        tables.set_dedup(producer, dedup)
    return None


# --- commands -------------------------------------------------------------------------------


def _invoke(ctx: Apply, cmd: Invoke) -> str | None:
    return invoke(ctx, cmd.invocation)


def _attach(ctx: Apply, cmd: Attach) -> str | None:
    return attach(ctx, cmd.invocation_id, cmd.sink)


def _run_completion(ctx: Apply, cmd: RunCompletion) -> str | None:
    result = Result(value=None if cmd.failure is not None else cmd.value or b"", failure=cmd.failure)
    entry = _completion(
        MessageType.RUN_COMPLETION, pb.RunCompletionNotificationMessage, cmd.completion_id, result
    )
    return _notify(ctx, cmd.invocation_id, cmd.completion_id, entry, ack_run=True)


def _respond(ctx: Apply, cmd: Respond) -> str | None:
    r = cmd.response
    cls = _RESPONSE_NOTIFICATIONS.get(r.notification)
    if cls is None:
        return (
            f"a response journaled as {r.notification:#x}, which is not a call, attach or output completion"
        )
    entry = _completion(r.notification, cls, r.completion_id, r.result)
    return _notify(ctx, r.caller, r.completion_id, entry)


_RESPONSE_NOTIFICATIONS: dict[int, type[Message]] = {
    MessageType.CALL_COMPLETION: pb.CallCompletionNotificationMessage,
    MessageType.ATTACH_INVOCATION_COMPLETION: pb.AttachInvocationCompletionNotificationMessage,
    MessageType.GET_INVOCATION_OUTPUT_COMPLETION: pb.GetInvocationOutputCompletionNotificationMessage,
}


def _completion(type_id: int, cls: type[Message], completion_id: int, result: Result) -> JournalEntry:
    """A completion notification carrying ``result`` (value, failure, or void)."""
    message: Any = cls(completion_id=completion_id)
    fill_result(message, result)
    return JournalEntry(type_id, message.SerializeToString())


def _notify(
    ctx: Apply, inv_id: bytes, completion_id: int, entry: JournalEntry, *, ack_run: bool = False
) -> str | None:
    """Append a completion that arrived on its own (run result, call result, timer)."""
    status = status_in(ctx, inv_id, RUNNING)
    if isinstance(status, str):
        return status
    if completion_id in status.completions:
        return f"completion {completion_id} is already journaled"
    ctx.tables.put_status(inv_id, notify(ctx, inv_id, status, entry, completion_id, ack_run=ack_run))
    return None


def _suspended(ctx: Apply, cmd: Suspended) -> str | None:
    inv_id = cmd.invocation_id
    status = status_in(ctx, inv_id, INVOKED)
    if isinstance(status, str):
        return status
    if (why := stale(status, cmd.fence)) is not None:
        return why
    awaiting = cmd.awaiting
    if not (awaiting.completion_ids or awaiting.signal_ids or awaiting.signal_names):
        return "a suspension that awaits nothing"
    if already_in(status, awaiting):
        # What it waits for came in while it was deciding to suspend: run it again at once.
        ctx.tables.put_status(inv_id, _replace(status, modified_at_ms=ctx.now_ms))
        ctx.actions.append(InvokeAction(inv_id, status.invocation.target, status.invocation.deployment_id))
    else:
        status = _replace(status, kind=StatusKind.SUSPENDED, awaiting=awaiting, modified_at_ms=ctx.now_ms)
        ctx.tables.put_status(inv_id, status)
    return None


def _end(ctx: Apply, cmd: End) -> str | None:
    status = status_in(ctx, cmd.invocation_id, INVOKED)
    if isinstance(status, str):
        return status
    if (why := stale(status, cmd.fence)) is not None:
        return why
    complete(ctx, cmd.invocation_id, status, status.result or EMPTY_RESULT)
    return None


def _fail(ctx: Apply, cmd: Fail) -> str | None:
    status = status_in(ctx, cmd.invocation_id, RUNNING)
    if isinstance(status, str):
        return status
    ctx.actions.append(AbortAttempt(cmd.invocation_id))
    complete(ctx, cmd.invocation_id, status, Result(failure=cmd.failure))
    return None


def _timer_fired(ctx: Apply, cmd: TimerFired) -> str | None:
    timer = cmd.timer
    inv_id = timer.invocation_id
    ctx.tables.delete_timer(timer)  # fired: whatever follows, it never fires again
    if timer.kind is TimerKind.SLEEP:
        message = pb.SleepCompletionNotificationMessage(completion_id=timer.completion_id, void=pb.Void())
        entry = JournalEntry(MessageType.SLEEP_COMPLETION, message.SerializeToString())
        return _notify(ctx, inv_id, timer.completion_id, entry)
    if timer.kind is TimerKind.INVOKE:
        status = status_in(ctx, inv_id, (StatusKind.SCHEDULED,))
        if isinstance(status, str):
            return status
        admit(ctx, inv_id, status)
        return None
    status = status_in(ctx, inv_id, (StatusKind.COMPLETED,))
    if isinstance(status, str):
        return status
    if status.expires_at_ms > max(timer.wake_up_ms, ctx.now_ms):
        return "the invocation's retention has not ended"
    forget(ctx, inv_id, status)
    return None


def _announce_leader(ctx: Apply, cmd: AnnounceLeader) -> str | None:
    ctx.tables.set_leader(cmd)
    return None


def _truncate_outbox(ctx: Apply, cmd: TruncateOutbox) -> str | None:
    ctx.tables.delete_outbox_up_to(cmd.index)
    return None


_APPLY: dict[type[Command], Callable[[Apply, Command], str | None]] = {  # type: ignore[dict-item]
    Invoke: _invoke,
    Attach: _attach,
    JournalCommand: journal_command,
    RunCompletion: _run_completion,
    Suspended: _suspended,
    End: _end,
    Fail: _fail,
    TimerFired: _timer_fired,
    Respond: _respond,
    AnnounceLeader: _announce_leader,
    TruncateOutbox: _truncate_outbox,
    Signal: _sm_control.signal,
    Query: _sm_control.query,
    Output: _sm_control.output,
    Kill: _sm_control.kill,
    Purge: _sm_control.purge,
    Pause: _sm_control.pause,
    Resume: _sm_control.resume_invocation,
}

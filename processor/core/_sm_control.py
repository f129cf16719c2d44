"""What reaches an invocation from outside its own attempts: signals (awakeable completions,
cancel, named signals), kill, purge, and other parties asking for its result (attach, output).

    Signal   running: append SignalNotification{idx|name, result} (once per idx/name), forward it
             or resume a suspension waiting for it. A cancel (idx 1) of an invocation that has
             not started (scheduled, inboxed) ends it at once with 409 "canceled".
    Kill     running: abort the attempt, end with 409 "killed"; not started: end the same way.
    Pause    invoked: abort the attempt and keep it PAUSED (journal, lock and sinks stay) until
             a Resume; suspended or paused already: nothing to do. A cancel resumes it too,
             so that the handler can run its compensations.
    Resume   paused or suspended: start an attempt now (on another deployment if given).
    Purge    completed: forget its row and journal (a workflow run: its state and promises too).
    Query    attach: answer from the retained result, or add the caller as a response sink;
             output: answer now -- the result, or void while it runs. Unknown: 404.
    Output   the ingress's get-output: the result, 470 while it runs, 404 when unknown.

Every case that finds nothing to act on is a drop with its reason: replicas stay identical and
a repeated request is harmless. Signal (a cancel), Kill, Pause, Resume and Purge from the admin
API carry a sink, and the leader tells it the outcome (the bytes and failures below), so that
the API can answer as the real server does: 404 unknown, 409 completed or not running, and
which of 200 or 202.
"""

from __future__ import annotations

import msgspec

from processor.core._actions import AbortAttempt
from processor.core._commands import Kill, Output, Pause, Purge, Query, Resume, Signal
from processor.core._model import (
    Failure,
    IngressSink,
    InvocationIdBytes,
    InvocationStatus,
    Result,
    StatusKind,
)
from processor.core._sm_lifecycle import (
    EMPTY_RESULT,
    RUNNING,
    Apply,
    add_sink,
    answer,
    complete,
    forget,
    notify_signal,
    reject,
    resume,
    stale,
    status_in,
)

_replace = msgspec.structs.replace
CANCEL_SIGNAL = 1
CANCELED = Failure(409, "canceled")
KILLED = Failure(409, "killed")
NOT_FOUND = Failure(404, "invocation not found")
NOT_READY = Failure(470, "the invocation exists but has not completed yet")
NOT_STARTED = (StatusKind.SCHEDULED, StatusKind.INBOXED)
VOID = Result()
"""Neither value nor failure: a get-output of an invocation that has not ended."""


class AdminOutcome:
    """What the admin API hears back when it gave a sink (an answer's value; refusals are
    rejections with the failures below). It maps them to the real server's statuses."""

    DONE = b"done"
    """Done now (kill, purge, resume; a cancel that ended an invocation that had not started)."""
    APPENDED = b"appended"
    """A cancel is in the invocation's journal: the handler runs its compensations."""
    ACCEPTED = b"accepted"
    """A pause of a running invocation: its attempt is stopped."""
    ALREADY = b"already"
    """A pause of an invocation that is paused or suspended already."""


ALREADY_COMPLETED = Failure(409, "the invocation was already completed")
NOT_RUNNING = Failure(409, "the invocation is not running")
NOT_STARTED_YET = Failure(409, "the invocation has not started yet")
NOT_COMPLETED = Failure(409, "the invocation is not completed yet")


def signal(ctx: Apply, cmd: Signal) -> str | None:
    sig = cmd.signal
    inv_id = sig.target
    status = status_in(ctx, inv_id, (*RUNNING, *NOT_STARTED))
    if isinstance(status, str):
        _tell(ctx, cmd.sink, inv_id, _refusal(_status(ctx, inv_id)))
        return status
    if status.kind in NOT_STARTED:
        if sig.name is None and sig.index == CANCEL_SIGNAL:
            _end_unstarted(ctx, inv_id, status, CANCELED)
            _tell(ctx, cmd.sink, inv_id, AdminOutcome.DONE)
            return None
        _tell(ctx, cmd.sink, inv_id, NOT_STARTED_YET)
        return f"a signal for an invocation that has not started ({status.kind.value})"
    _tell(ctx, cmd.sink, inv_id, AdminOutcome.APPENDED)
    if sig.name is not None and sig.name in status.signal_names:
        return f"signal {sig.name!r} was already delivered"
    if sig.name is None and sig.index in status.signals:
        return f"signal {sig.index} was already delivered"
    status = notify_signal(ctx, inv_id, status, sig)
    if status.kind is StatusKind.PAUSED and sig.name is None and sig.index == CANCEL_SIGNAL:
        status = resume(ctx, inv_id, status)
    ctx.tables.put_status(inv_id, status)
    return None


def kill(ctx: Apply, cmd: Kill) -> str | None:
    inv_id = cmd.invocation_id
    status = status_in(ctx, inv_id, (*RUNNING, *NOT_STARTED))
    if isinstance(status, str):
        _tell(ctx, cmd.sink, inv_id, _refusal(_status(ctx, inv_id)))
        return status
    _tell(ctx, cmd.sink, inv_id, AdminOutcome.DONE)
    if status.kind in NOT_STARTED:
        _end_unstarted(ctx, inv_id, status, KILLED)
        return None
    ctx.actions.append(AbortAttempt(inv_id))
    complete(ctx, inv_id, status, Result(failure=KILLED))
    return None


def pause(ctx: Apply, cmd: Pause) -> str | None:
    inv_id = cmd.invocation_id
    status = status_in(ctx, inv_id, (StatusKind.INVOKED,))
    if isinstance(status, str):
        found = _status(ctx, inv_id)
        if found is not None and found.kind in (StatusKind.PAUSED, StatusKind.SUSPENDED):
            _tell(ctx, cmd.sink, inv_id, AdminOutcome.ALREADY)
        else:
            _tell(ctx, cmd.sink, inv_id, NOT_FOUND if found is None else NOT_RUNNING)
        return status
    if (why := stale(status, cmd.fence)) is not None:
        return why
    _tell(ctx, cmd.sink, inv_id, AdminOutcome.ACCEPTED)
    ctx.actions.append(AbortAttempt(inv_id))
    paused = _replace(status, kind=StatusKind.PAUSED, fence=status.fence + 1, modified_at_ms=ctx.now_ms)
    ctx.tables.put_status(inv_id, paused)
    return None


def resume_invocation(ctx: Apply, cmd: Resume) -> str | None:
    inv_id = cmd.invocation_id
    status = status_in(ctx, inv_id, (StatusKind.PAUSED, StatusKind.SUSPENDED))
    if isinstance(status, str):
        found = _status(ctx, inv_id)
        if found is not None and found.kind is StatusKind.INVOKED:
            # Running, or about to retry: nothing to resume.
            _tell(ctx, cmd.sink, inv_id, AdminOutcome.DONE)
        elif found is not None and found.kind in NOT_STARTED:
            _tell(ctx, cmd.sink, inv_id, NOT_STARTED_YET)
        else:
            _tell(ctx, cmd.sink, inv_id, _refusal(found))
        return status
    _tell(ctx, cmd.sink, inv_id, AdminOutcome.DONE)
    if cmd.deployment_id is not None and cmd.deployment_id != status.invocation.deployment_id:
        invocation = _replace(status.invocation, deployment_id=cmd.deployment_id)
        status = _replace(status, invocation=invocation)
    status = _replace(resume(ctx, inv_id, status), modified_at_ms=ctx.now_ms)
    ctx.tables.put_status(inv_id, status)
    return None


def purge(ctx: Apply, cmd: Purge) -> str | None:
    inv_id = cmd.invocation_id
    status = status_in(ctx, inv_id, (StatusKind.COMPLETED,))
    if isinstance(status, str):
        _tell(ctx, cmd.sink, inv_id, NOT_FOUND if _status(ctx, inv_id) is None else NOT_COMPLETED)
        return status
    _tell(ctx, cmd.sink, inv_id, AdminOutcome.DONE)
    forget(ctx, inv_id, status)
    return None


def _status(ctx: Apply, inv_id: InvocationIdBytes) -> InvocationStatus | None:
    return ctx.tables.get_status(inv_id) if ctx.owns(inv_id) else None


def _refusal(status: InvocationStatus | None) -> Failure:
    """Why an admin action found nothing to act on: unknown, or already completed."""
    if status is None:
        return NOT_FOUND
    return ALREADY_COMPLETED if status.kind is StatusKind.COMPLETED else NOT_RUNNING


def _tell(ctx: Apply, sink: IngressSink | None, inv_id: InvocationIdBytes, outcome: bytes | Failure) -> None:
    """Answer the admin API's request, if it asked (``sink``): an outcome, or why not."""
    if sink is None:
        return
    if isinstance(outcome, Failure):
        reject(ctx, sink, inv_id, outcome)
    else:
        answer(ctx, sink, inv_id, Result(value=outcome), 0)


def query(ctx: Apply, cmd: Query) -> str | None:
    q = cmd.query
    inv_id = q.target
    if not ctx.owns(inv_id):
        return "the invocation id is malformed or belongs to another partition"
    status = ctx.tables.get_status(inv_id)
    if status is None:
        answer(ctx, q.sink, inv_id, Result(failure=NOT_FOUND), 0)
    elif status.kind is StatusKind.COMPLETED:
        answer(ctx, q.sink, inv_id, status.result or EMPTY_RESULT, status.expires_at_ms)
    elif not q.attach:
        answer(ctx, q.sink, inv_id, VOID, 0)
    else:
        add_sink(ctx, inv_id, status, q.sink)
    return None


def output(ctx: Apply, cmd: Output) -> str | None:
    inv_id = cmd.invocation_id
    if not ctx.owns(inv_id):
        return "the invocation id is malformed or belongs to another partition"
    status = ctx.tables.get_status(inv_id)
    if status is None:
        reject(ctx, cmd.sink, inv_id, NOT_FOUND)
    elif status.kind is StatusKind.COMPLETED:
        answer(ctx, cmd.sink, inv_id, status.result or EMPTY_RESULT, status.expires_at_ms)
    else:
        reject(ctx, cmd.sink, inv_id, NOT_READY)
    return None


def _end_unstarted(ctx: Apply, inv_id: InvocationIdBytes, status: InvocationStatus, failure: Failure) -> None:
    """End a scheduled or inboxed invocation: its timer or inbox entry stays behind and is
    skipped when it comes up (the row is no longer SCHEDULED or INBOXED)."""
    complete(ctx, inv_id, status, Result(failure=failure))

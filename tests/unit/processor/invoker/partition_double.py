"""A test double of a partition, for driving the invoker without a log, a store or the real
state machine (processor/core/_state_machine.py, written separately).

It keeps statuses, journals and state in dicts and implements the invoker's ``Partition``
interface the way the real leader will:

* ``propose`` appends the effect to an in-memory log and resolves on the next loop turn
  ("committed"); the effect is applied one turn later, in log order ("applied");
  ``wait_applied`` waits for that. ``commit_delay_s`` delays the commit of every effect.
* Applying does what the state machine does with the invoker's effects, reduced to what the
  tests need: a command is journaled only if its index is the invocation's next one (a stale
  attempt's is dropped, and counted in ``dropped``); state commands change ``state``; a lazy
  read and a call's invocation id are answered at once; a call starts the callee through the
  same invoker and its End completes the caller's call; a sleep registers a timer the test
  fires with ``fire_sleep``; run completions are journaled once; a suspension resumes at once
  if what it awaits is already in; End and Fail complete the invocation.
* The actions that applying yields go straight to ``invoker.handle``: ForwardNotification (and
  AckRunCompletion for run completions) while the invocation is INVOKED, InvokeAction when a
  suspended one resumes, AbortAttempt on Fail.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from processor.core import (
    AbortAttempt,
    AckRunCompletion,
    Action,
    Awaiting,
    End,
    Fail,
    Failure,
    ForwardNotification,
    InvocationStatus,
    InvokeAction,
    InvokerEffect,
    JournalCommand,
    JournalEntry,
    Pause,
    Result,
    RunCompletion,
    ServiceInvocation,
    StatusKind,
    Suspended,
    Target,
)
from processor.ids import InvocationId
from processor.protocol import MessageType, decode_payload, pb

T = MessageType
_replace = msgspec.structs.replace


@dataclass
class Applied:
    """What the double logged: every effect in log order, and those it dropped (with why)."""

    effects: list[InvokerEffect] = field(default_factory=list)
    dropped: list[tuple[InvokerEffect, str]] = field(default_factory=list)


class PartitionDouble:
    def __init__(self, *, commit_delay_s: float = 0.0, seed: int = 1) -> None:
        self.invoker: Any = None  # set by the test: the Invoker the actions go to
        self.status: dict[bytes, InvocationStatus] = {}
        self.journals: dict[bytes, list[JournalEntry]] = {}
        self.state: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self.sleeps: dict[tuple[bytes, int], int] = {}  # (invocation, completion id) -> wake-up
        self.log = Applied()
        self.commit_delay_s = commit_delay_s
        self._rng = random.Random(seed)
        self._callers: dict[bytes, tuple[bytes, int]] = {}  # callee -> (caller, completion id)
        self._done: dict[bytes, asyncio.Future[Result]] = {}
        self._proposed = 0
        self._applied = 0
        self._applied_changed = asyncio.Event()

    # --- the Partition interface --------------------------------------------------------------

    def get_status(self, invocation_id: bytes) -> InvocationStatus | None:
        return self.status.get(invocation_id)

    def read_journal(self, invocation_id: bytes) -> Sequence[JournalEntry]:
        return list(self.journals.get(invocation_id, ()))

    def read_state(self, service: str, key: str) -> Sequence[tuple[bytes, bytes]]:
        return sorted(self.state.get((service, key), {}).items())

    def propose(self, effect: InvokerEffect) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        self._proposed += 1

        def commit() -> None:
            committed.set_result(None)
            loop.call_soon(self._apply, effect)

        if self.commit_delay_s:
            loop.call_later(self.commit_delay_s, commit)
        else:
            loop.call_soon(commit)
        return committed

    async def wait_applied(self) -> None:
        while self._applied < self._proposed:
            self._applied_changed.clear()
            await self._applied_changed.wait()

    # --- what tests do ------------------------------------------------------------------------

    def invoke(self, target: Target, deployment_id: str, argument: bytes = b"") -> bytes:
        """A new invocation (as an applied Invoke record); its InvokeAction goes to the invoker."""
        pk = self._rng.getrandbits(64)
        invocation_id = InvocationId(pk, self._rng.getrandbits(128)).to_bytes()
        self._start(ServiceInvocation(invocation_id, target, deployment_id, argument))
        return invocation_id

    async def result(self, invocation_id: bytes, timeout_s: float = 30.0) -> Result:
        return await asyncio.wait_for(asyncio.shield(self._future(invocation_id)), timeout_s)

    def fire_sleep(self, invocation_id: bytes, completion_id: int) -> None:
        """The timer of a sleep fired: journal its completion."""
        del self.sleeps[(invocation_id, completion_id)]
        message = pb.SleepCompletionNotificationMessage(completion_id=completion_id, void=pb.Void())
        self._notify(
            invocation_id, JournalEntry(T.SLEEP_COMPLETION, message.SerializeToString()), completion_id
        )

    def entries(self, invocation_id: bytes) -> list[str]:
        """The journal's entry types, by name, for assertions."""
        return [T(e.type_id).name for e in self.journals.get(invocation_id, ())]

    # --- applying -----------------------------------------------------------------------------

    def _future(self, invocation_id: bytes) -> asyncio.Future[Result]:
        future = self._done.get(invocation_id)
        if future is None:
            future = self._done[invocation_id] = asyncio.get_running_loop().create_future()
        return future

    def _dispatch(self, action: Action) -> None:
        if self.invoker is not None:
            self.invoker.handle(action)

    def _start(self, invocation: ServiceInvocation) -> None:
        inv_id = invocation.invocation_id
        entry = pb.InputCommandMessage(value=pb.Value(content=invocation.argument))
        self.journals[inv_id] = [JournalEntry(T.INPUT_COMMAND, entry.SerializeToString())]
        now = int(time.time() * 1000)  # the log's clock: the proposer's wall clock
        self.status[inv_id] = InvocationStatus(
            StatusKind.INVOKED, invocation, now, now, journal_length=1, commands=1
        )
        self._future(inv_id)
        self._dispatch(InvokeAction(inv_id, invocation.target, invocation.deployment_id))

    def _apply(self, effect: InvokerEffect) -> None:
        self.log.effects.append(effect)
        try:
            problem = self._apply_one(effect)
            if problem is not None:
                self.log.dropped.append((effect, problem))
        finally:
            self._applied += 1
            self._applied_changed.set()

    def _apply_one(self, effect: InvokerEffect) -> str | None:
        status = self.status.get(effect.invocation_id)
        if status is None:
            return "unknown invocation"
        running = status.kind is StatusKind.INVOKED
        if isinstance(effect, JournalCommand):
            if not running:
                return f"not running ({status.kind.value})"
            if effect.command_index != status.commands:
                return f"command index {effect.command_index}, expected {status.commands}"
            return self._command(effect, status)
        if isinstance(effect, RunCompletion):
            if effect.completion_id in status.completions:
                return "already journaled"
            message = pb.RunCompletionNotificationMessage(completion_id=effect.completion_id)
            if effect.failure is not None:
                message.failure.code, message.failure.message = effect.failure.code, effect.failure.message
            else:
                message.value.content = effect.value or b""
            entry = JournalEntry(T.RUN_COMPLETION, message.SerializeToString())
            self._notify(effect.invocation_id, entry, effect.completion_id, ack_run=True)
            return None
        if isinstance(effect, Suspended):
            if not running:
                return f"not running ({status.kind.value})"
            if _already_in(status, effect.awaiting):
                self._dispatch(
                    InvokeAction(
                        effect.invocation_id, status.invocation.target, status.invocation.deployment_id
                    )
                )
            else:
                self.status[effect.invocation_id] = _replace(
                    status, kind=StatusKind.SUSPENDED, awaiting=effect.awaiting
                )
            return None
        if isinstance(effect, End):
            if not running:
                return f"not running ({status.kind.value})"
            self._complete(effect.invocation_id, status.result or Result(value=b""))
            return None
        if isinstance(effect, Fail):
            self._dispatch(AbortAttempt(effect.invocation_id))
            self._complete(effect.invocation_id, Result(failure=effect.failure))
            return None
        if isinstance(effect, Pause):
            if not running:
                return f"not running ({status.kind.value})"
            self._dispatch(AbortAttempt(effect.invocation_id))
            self.status[effect.invocation_id] = _replace(status, kind=StatusKind.PAUSED)
            return None
        return f"unknown effect {effect!r}"

    def resume(self, inv_id: bytes) -> None:
        """The admin API's resume of a paused invocation."""
        status = self.status[inv_id]
        assert status.kind is StatusKind.PAUSED, status.kind
        self.status[inv_id] = _replace(status, kind=StatusKind.INVOKED)
        self._dispatch(InvokeAction(inv_id, status.invocation.target, status.invocation.deployment_id))

    def _command(self, cmd: JournalCommand, status: InvocationStatus) -> str | None:
        inv_id = cmd.invocation_id
        message: Any = decode_payload(cmd.type_id, cmd.raw)
        target = status.invocation.target
        scope = (target.service, target.key or "")
        journal = self.journals[inv_id]
        journal.append(JournalEntry(cmd.type_id, cmd.raw))
        status = _replace(status, journal_length=len(journal), commands=status.commands + 1)
        self.status[inv_id] = status
        if cmd.type_id == T.SET_STATE_COMMAND:
            self.state.setdefault(scope, {})[message.key] = message.value.content
        elif cmd.type_id == T.CLEAR_STATE_COMMAND:
            self.state.get(scope, {}).pop(message.key, None)
        elif cmd.type_id == T.CLEAR_ALL_STATE_COMMAND:
            self.state.pop(scope, None)
        elif cmd.type_id == T.OUTPUT_COMMAND:
            if message.WhichOneof("result") == "failure":
                result = Result(failure=Failure(message.failure.code, message.failure.message))
            else:
                result = Result(value=message.value.content)
            self.status[inv_id] = _replace(status, result=result)
        elif cmd.type_id == T.GET_LAZY_STATE_COMMAND:
            reply = pb.GetLazyStateCompletionNotificationMessage(completion_id=message.result_completion_id)
            value = self.state.get(scope, {}).get(message.key)
            if value is None:
                reply.void.SetInParent()
            else:
                reply.value.content = value
            entry = JournalEntry(T.GET_LAZY_STATE_COMPLETION, reply.SerializeToString())
            self._notify(inv_id, entry, message.result_completion_id)
        elif cmd.type_id == T.SLEEP_COMMAND:
            self.sleeps[(inv_id, message.result_completion_id)] = message.wake_up_time
        elif cmd.type_id in (T.CALL_COMMAND, T.ONE_WAY_CALL_COMMAND):
            if cmd.call is None:
                return "a call without its resolved target"
            child = InvocationId(self._rng.getrandbits(64), self._rng.getrandbits(128))
            reply = pb.CallInvocationIdCompletionNotificationMessage(
                completion_id=message.invocation_id_notification_idx, invocation_id=str(child)
            )
            entry = JournalEntry(T.CALL_INVOCATION_ID_COMPLETION, reply.SerializeToString())
            self._notify(inv_id, entry, message.invocation_id_notification_idx)
            if cmd.type_id == T.CALL_COMMAND:
                self._callers[child.to_bytes()] = (inv_id, message.result_completion_id)
            self._start(
                ServiceInvocation(
                    child.to_bytes(), cmd.call.target, cmd.call.deployment_id, message.parameter
                )
            )
        return None

    def _notify(
        self, inv_id: bytes, entry: JournalEntry, completion_id: int, *, ack_run: bool = False
    ) -> None:
        status = self.status.get(inv_id)
        if status is None or status.kind not in (StatusKind.INVOKED, StatusKind.SUSPENDED):
            return
        journal = self.journals[inv_id]
        index = len(journal)
        journal.append(entry)
        status = _replace(status, journal_length=index + 1, completions=(*status.completions, completion_id))
        if status.kind is StatusKind.INVOKED:
            self.status[inv_id] = status
            self._dispatch(ForwardNotification(inv_id, index, entry))
            if ack_run:
                self._dispatch(AckRunCompletion(inv_id, completion_id))
        elif status.awaiting is not None and completion_id in status.awaiting.completion_ids:
            self.status[inv_id] = _replace(status, kind=StatusKind.INVOKED, awaiting=None)
            self._dispatch(InvokeAction(inv_id, status.invocation.target, status.invocation.deployment_id))
        else:
            self.status[inv_id] = status

    def _complete(self, inv_id: bytes, result: Result) -> None:
        status = self.status[inv_id]
        self.status[inv_id] = _replace(status, kind=StatusKind.COMPLETED, result=result)
        future = self._future(inv_id)
        if not future.done():
            future.set_result(result)
        caller = self._callers.pop(inv_id, None)
        if caller is not None:
            parent, completion_id = caller
            reply = pb.CallCompletionNotificationMessage(completion_id=completion_id)
            if result.failure is not None:
                reply.failure.code, reply.failure.message = result.failure.code, result.failure.message
            else:
                reply.value.content = result.value or b""
            self._notify(parent, JournalEntry(T.CALL_COMPLETION, reply.SerializeToString()), completion_id)


def _already_in(status: InvocationStatus, awaiting: Awaiting) -> bool:
    return any(c in status.completions for c in awaiting.completion_ids)

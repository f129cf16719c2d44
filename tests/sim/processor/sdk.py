"""A scripted stand-in for an SDK deployment: handlers as generators, attempts that replay.

A handler is a generator function of its input bytes: it yields operations (``Get``, ``Set``,
``Run``, ``Call``, ``Send``, ``Sleep``, ``GetPromise``, ``CompletePromise``, ``AwaitSignal``,
``CompleteAwakeable``) and returns its output. An `Attempt` runs it from the
start the way the official SDK does: operations whose commands are already in the journal are
replayed (their results come from the journaled notifications), the first new one is proposed
as a `JournalCommand` with the next command index, and an operation whose completion is not in
yet blocks the attempt until a notification is forwarded (or the attempt suspends). A ``Run``
executes its closure only when its completion is not journaled, then proposes the result
(protocol v6: the handler uses the value once the notification comes back, never before).
An attempt that is blocked when the cancel signal (index 1) is in ends the invocation with
409 "cancelled", as the SDK does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from processor.core import (
    CallTarget,
    End,
    HandlerType,
    InvokerEffect,
    JournalCommand,
    JournalEntry,
    RunCompletion,
    ServiceType,
    Target,
)
from processor.ids import AwakeableId, InvocationId
from processor.protocol import MessageType, is_command, is_notification, pb

T = MessageType


class JournalMismatch(AssertionError):
    """The replayed journal is not what the handler does: the engine lost or reordered a command."""


@dataclass(frozen=True)
class Get:
    key: bytes


@dataclass(frozen=True)
class Set:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Run:
    pass


@dataclass(frozen=True)
class Call:
    target: Target
    arg: bytes


@dataclass(frozen=True)
class Send:
    target: Target
    arg: bytes
    delay_ms: int


@dataclass(frozen=True)
class Sleep:
    ms: int


@dataclass(frozen=True)
class GetPromise:
    name: str


@dataclass(frozen=True)
class CompletePromise:
    name: str
    value: bytes


@dataclass(frozen=True)
class AwaitSignal:
    """Wait for an awakeable of this invocation: no command, only the signal's notification."""

    index: int


@dataclass(frozen=True)
class CompleteAwakeable:
    owner: bytes
    index: int
    value: bytes


CANCEL = 1
Op = Get | Set | Run | Call | Send | Sleep | GetPromise | CompletePromise | AwaitSignal | CompleteAwakeable
Handler = Callable[[bytes], Generator[Op, Any, bytes]]


def greeter_target(key: str) -> Target:
    return Target("Greeter", "greet", ServiceType.VIRTUAL_OBJECT, HandlerType.SHARED, key)


def greet(arg: bytes) -> Generator[Op, Any, bytes]:
    return b"hello " + arg
    yield  # a generator with no operations


def counter_add(arg: bytes) -> Generator[Op, Any, bytes]:
    current = yield Get(b"count")
    count = int(current or b"0") + 1
    yield Set(b"count", str(count).encode())
    return str(count).encode()


def three_steps(arg: bytes) -> Generator[Op, Any, bytes]:
    a = yield Run()
    b = yield Run()
    c = yield Run()
    return b"|".join((a, b, c))


def call_greeter(arg: bytes) -> Generator[Op, Any, bytes]:
    """``arg`` is a Greeter key: call it, then send it a delayed greeting."""
    reply = yield Call(greeter_target(arg.decode()), arg)
    yield Send(greeter_target(arg.decode()), b"later " + arg, 20)
    return reply


def nap(arg: bytes) -> Generator[Op, Any, bytes]:
    yield Sleep(int(arg))
    return b"slept"


def signup_run(arg: bytes) -> Generator[Op, Any, bytes]:
    code = yield GetPromise("code")
    return code


def signup_confirm(arg: bytes) -> Generator[Op, Any, bytes]:
    outcome = yield CompletePromise("code", arg)
    return b"dup" if outcome is not None else b"ok"


def wait_awakeable(arg: bytes) -> Generator[Op, Any, bytes]:
    value = yield AwaitSignal(17)
    return value


def resolve_awakeable(arg: bytes) -> Generator[Op, Any, bytes]:
    """``arg``: the owner's invocation id (hex), then the value, after a colon."""
    owner, _, value = arg.partition(b":")
    yield CompleteAwakeable(bytes.fromhex(owner.decode()), 17, value)
    return b"done"


def long_wait(arg: bytes) -> Generator[Op, Any, bytes]:
    yield Sleep(10**9)
    return b"slept"


HANDLERS: dict[str, Handler] = {
    "Signup/run": signup_run,
    "Signup/confirm": signup_confirm,
    "Waiter/wait": wait_awakeable,
    "Resolver/resolve": resolve_awakeable,
    "Long/wait": long_wait,
    "Greeter/greet": greet,
    "Counter/add": counter_add,
    "Steps/three": three_steps,
    "Caller/run": call_greeter,
    "Sleeper/nap": nap,
}


def handler_of(target: Target) -> Handler:
    return HANDLERS[f"{target.service}/{target.handler}"]


def signal_of(entry: JournalEntry) -> tuple[int, Any] | None:
    """(index, value) of an indexed SignalNotification, else None."""
    if entry.type_id != T.SIGNAL_NOTIFICATION:
        return None
    message = pb.SignalNotificationMessage.FromString(entry.raw)
    if message.WhichOneof("signal_id") != "idx":
        return None
    which = message.WhichOneof("result")
    if which == "value":
        return message.idx, message.value.content
    if which == "failure":
        return message.idx, ("failure", message.failure.code)
    return message.idx, None


def notification_of(entry: JournalEntry) -> tuple[int, Any] | None:
    """(completion id, result) of a completion notification; the result is bytes, None
    (void), a str (a call's invocation id) or a tuple of state keys."""
    # Every notification has the template's field numbers (restate-protocol.md §3.4).
    message = pb.NotificationTemplate.FromString(entry.raw)
    if message.WhichOneof("id") != "completion_id":
        return None
    which = message.WhichOneof("result")
    if which == "value":
        return message.completion_id, message.value.content
    if which == "failure":
        return message.completion_id, ("failure", message.failure.code)
    if which == "invocation_id":
        return message.completion_id, message.invocation_id
    return message.completion_id, None


class Attempt:
    """One attempt of one invocation, against the journal it was started with."""

    def __init__(
        self,
        invocation_id: bytes,
        target: Target,
        journal: list[JournalEntry],
        now: Callable[[], int],
        execute_run: Callable[[bytes, int], bytes],
        use_run: Callable[[bytes, int, bytes], None],
        call_retention_ms: int,
    ) -> None:
        self.invocation_id = invocation_id
        self.target = target
        self.fence = 0
        """The invocation's fence when this attempt started (set by the harness's invoker)."""
        self._now = now
        self._execute_run = execute_run
        self._use_run = use_run
        self._call_retention_ms = call_retention_ms
        if not journal or journal[0].type_id != T.INPUT_COMMAND:
            raise JournalMismatch("journal entry 0 is not the Input command")
        argument = pb.InputCommandMessage.FromString(journal[0].raw).value.content
        self._journaled = [e for e in journal[1:] if is_command(e.type_id)]
        self.completions: dict[int, Any] = {}
        self.signals: dict[int, Any] = {}
        for entry in journal[1:]:
            self.notify(entry)
        self._program = handler_of(target)(argument)
        self._command_index = 1
        self._completion_id = 1
        self._blocked: tuple[int, Op] | None = None
        self._send_value: Any = None
        self.finished = False

    @property
    def blocked_on(self) -> int | None:
        """The completion id it waits for (a signal's is negative: -index)."""
        return None if self._blocked is None else self._blocked[0]

    @property
    def waiting(self) -> bool:
        """Blocked on something that is not in yet (and not cancelled)."""
        if self._blocked is None or CANCEL in self.signals:
            return False
        return not self._has(self._blocked[0])

    def awaiting(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(completion ids, signal indexes) a suspension awaits: the cancel signal always."""
        assert self._blocked is not None
        wanted = self._blocked[0]
        return ((), (-wanted, CANCEL)) if wanted < 0 else ((wanted,), (CANCEL,))

    def _has(self, wanted: int) -> bool:
        return -wanted in self.signals if wanted < 0 else wanted in self.completions

    def _value(self, wanted: int) -> Any:
        return self.signals[-wanted] if wanted < 0 else self.completions[wanted]

    def notify(self, entry: JournalEntry) -> None:
        if is_notification(entry.type_id):
            found = notification_of(entry)
            if found is not None:
                self.completions.setdefault(found[0], found[1])
        signal = signal_of(entry)
        if signal is not None:
            self.signals.setdefault(signal[0], signal[1])

    def step(self) -> list[InvokerEffect]:
        """Advance by at most one operation; return what the invoker proposes for it."""
        if self.finished:
            return []
        if self._blocked is not None:
            completion_id, op = self._blocked
            if not self._has(completion_id):
                if CANCEL in self.signals:
                    return self._end(None)
                return []
            self._blocked = None
            value = self._value(completion_id)
            if isinstance(op, Run):
                self._use_run(self.invocation_id, completion_id, value)
            self._send_value = value
        try:
            op = self._program.send(self._send_value)
        except StopIteration as stop:
            return self._end(stop.value)
        self._send_value = None
        return self._operation(op)

    # --- one operation ---

    def _operation(self, op: Op) -> list[InvokerEffect]:
        out: list[InvokerEffect] = []
        if isinstance(op, Get):
            cid = self._take_completion()
            out += self._command(
                T.GET_LAZY_STATE_COMMAND, pb.GetLazyStateCommandMessage(key=op.key, result_completion_id=cid)
            )
            self._blocked = (cid, op)
        elif isinstance(op, Set):
            out += self._command(
                T.SET_STATE_COMMAND, pb.SetStateCommandMessage(key=op.key, value=pb.Value(content=op.value))
            )
        elif isinstance(op, Run):
            cid = self._take_completion()
            out += self._command(T.RUN_COMMAND, pb.RunCommandMessage(result_completion_id=cid))
            if cid not in self.completions:
                value = self._execute_run(self.invocation_id, cid)
                out.append(RunCompletion(self.invocation_id, cid, value=value))
            self._blocked = (cid, op)
        elif isinstance(op, Call):
            id_cid, result_cid = self._take_completion(), self._take_completion()
            message = pb.CallCommandMessage(
                service_name=op.target.service,
                handler_name=op.target.handler,
                parameter=op.arg,
                key=op.target.key or "",
                invocation_id_notification_idx=id_cid,
                result_completion_id=result_cid,
            )
            out += self._command(
                T.CALL_COMMAND, message, CallTarget(op.target, "dp1", self._call_retention_ms)
            )
            self._blocked = (result_cid, op)
        elif isinstance(op, Send):
            id_cid = self._take_completion()
            message = pb.OneWayCallCommandMessage(
                service_name=op.target.service,
                handler_name=op.target.handler,
                parameter=op.arg,
                key=op.target.key or "",
                invoke_time=self._now() + op.delay_ms,
                invocation_id_notification_idx=id_cid,
            )
            out += self._command(
                T.ONE_WAY_CALL_COMMAND, message, CallTarget(op.target, "dp1", self._call_retention_ms)
            )
        elif isinstance(op, Sleep):
            cid = self._take_completion()
            message = pb.SleepCommandMessage(wake_up_time=self._now() + op.ms, result_completion_id=cid)
            out += self._command(T.SLEEP_COMMAND, message)
            self._blocked = (cid, op)
        elif isinstance(op, GetPromise):
            cid = self._take_completion()
            out += self._command(
                T.GET_PROMISE_COMMAND, pb.GetPromiseCommandMessage(key=op.name, result_completion_id=cid)
            )
            self._blocked = (cid, op)
        elif isinstance(op, CompletePromise):
            cid = self._take_completion()
            message = pb.CompletePromiseCommandMessage(
                key=op.name, completion_value=pb.Value(content=op.value), result_completion_id=cid
            )
            out += self._command(T.COMPLETE_PROMISE_COMMAND, message)
            self._blocked = (cid, op)
        elif isinstance(op, AwaitSignal):
            self._blocked = (-op.index, op)
        else:
            awakeable = AwakeableId(InvocationId.from_bytes(op.owner), op.index)
            message = pb.CompleteAwakeableCommandMessage(
                awakeable_id=str(awakeable), value=pb.Value(content=op.value)
            )
            out += self._command(T.COMPLETE_AWAKEABLE_COMMAND, message)
        return out

    def _take_completion(self) -> int:
        cid = self._completion_id
        self._completion_id += 1
        return cid

    def _command(self, type_id: int, message: Any, call: CallTarget | None = None) -> list[InvokerEffect]:
        """Replay the command if the journal has it (it must be the same type), else propose it."""
        index = self._command_index
        self._command_index += 1
        if index - 1 < len(self._journaled):
            journaled = self._journaled[index - 1]
            if journaled.type_id != type_id:
                raise JournalMismatch(
                    f"command {index}: the journal has type 0x{journaled.type_id:04x}, the handler 0x{type_id:04x}"
                )
            return []
        return [JournalCommand(self.invocation_id, index, type_id, message.SerializeToString(), call)]

    def _end(self, output: bytes | None) -> list[InvokerEffect]:
        """End with ``output``, or, for None, with the cancellation's failure."""
        self.finished = True
        if output is None:
            message = pb.OutputCommandMessage(failure=pb.Failure(code=409, message="cancelled"))
        else:
            message = pb.OutputCommandMessage(value=pb.Value(content=output))
        out = self._command(T.OUTPUT_COMMAND, message)
        return [*out, End(self.invocation_id)]

"""The state machine's journals against the official SDK's own VM (restate-sdk's PyVM).

Each handler below runs on the SDK's sans-I/O VM in request/response mode, attempt after
attempt: the attempt starts from the journal the state machine wrote (StartMessage plus every
entry, replayed byte for byte), the SDK's frames become the invoker's records (commands,
ProposeRunCompletion, Suspension, End), and the state machine's actions (resume, timers, the
outbox) drive the next attempt. The SDK rejects a journal it cannot replay (a misplaced
notification, a wrong known_entries, a bad Input) with a protocol error, so each test proves the
journal is one the official SDK accepts, and that each run step's closure ran exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from restate.vm import (
    DO_PROGRESS_ANY_COMPLETED,
    SUSPENDED,
    DoProgressExecuteRun,
    SingleUnresolvedFuture,
    VMWrapper,
)

from processor.core import (
    AnnounceLeader,
    Awaiting,
    CallTarget,
    End,
    Envelope,
    ForeignPartition,
    HandlerType,
    IngressResponse,
    IngressSink,
    Invoke,
    InvokeAction,
    InvokerEffect,
    JournalCommand,
    MemoryStore,
    NewOutboxMessage,
    Respond,
    RunCompletion,
    SelfProposal,
    ServiceInvocation,
    ServiceType,
    StateMachine,
    StatusKind,
    Suspended,
    Target,
    TimerFired,
)
from processor.ids import InvocationId, partition_key_of
from processor.protocol import (
    Decoder,
    MessageType,
    Sender,
    content_type,
    encode,
    encode_raw,
    is_command,
    pb,
    suspension_awaits,
)

VERSION = 6
SCHEMA = {
    ("Greeter", "greet"): Target("Greeter", "greet", ServiceType.SERVICE),
    ("Counter", "add"): Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE),
}


class Suspend(Exception):
    """The VM suspended: its input is closed and what the handler awaits is not journaled."""


Handler = Callable[["Context"], bytes]


class RunClosures(dict[int, Callable[[], bytes]]):
    def execute(self, handle: int) -> bytes:
        return self.pop(handle)()


@dataclass
class Context:
    """Just enough of a handler context over the VM, in the SDK's own order of calls."""

    vm: VMWrapper
    input: bytes
    runs: RunClosures = field(default_factory=RunClosures)

    def wait(self, handle: int) -> object:
        while True:
            progress = self.vm.do_progress(SingleUnresolvedFuture(handle))
            if progress is SUSPENDED:
                raise Suspend
            if isinstance(progress, Exception):
                raise progress
            if isinstance(progress, DoProgressExecuteRun):
                self.vm.propose_run_completion_success(progress.handle, self.runs.execute(progress.handle))
                continue
            if progress is DO_PROGRESS_ANY_COMPLETED:
                result = self.vm.take_notification(handle)
                if result is SUSPENDED:
                    raise Suspend
                return result
            raise Suspend  # waiting for external progress with the input closed

    def run(self, name: str, closure: Callable[[], bytes]) -> object:
        run = self.vm.sys_run(name)
        if not run.replayed:
            self.runs[run.handle] = closure
        return self.wait(run.handle)


class World:
    """One partition: a store, the state machine, a leader that feeds SDK frames back as records."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.machine = StateMachine()
        self.lsn = 0
        self.seq = 0
        self.now = 1_000
        self.pending: list[bytes] = []  # invocations the invoker must (re)start
        self.replies: dict[int, object] = {}
        self.handlers: dict[tuple[str, str], Handler] = {}
        self.apply(Envelope(AnnounceLeader(1, 1, 1), self.now, SelfProposal(1, 0)))

    def apply(self, envelope: Envelope) -> None:
        self.lsn += 1
        txn = self.store.transaction()
        actions = self.machine.apply(txn, self.lsn, envelope, partition=0, num_partitions=1)
        txn.commit()
        for action in actions:
            if isinstance(action, InvokeAction):
                self.pending.append(action.invocation_id)
            elif isinstance(action, NewOutboxMessage):
                command = action.message.command
                wrapped = Invoke(command) if isinstance(command, ServiceInvocation) else Respond(command)
                self.apply(Envelope(wrapped, self.now, ForeignPartition(0, action.index)))
            elif isinstance(action, IngressResponse):
                self.replies[action.sink.request_id] = action.result.value

    def propose(self, effect: InvokerEffect) -> None:
        self.seq += 1
        self.apply(Envelope(effect, self.now, SelfProposal(1, self.seq)))

    def invoke(self, target: Target, argument: bytes, request: int) -> bytes:
        key = target.key or f"request-{request}"
        inv = InvocationId(partition_key_of(key), request).to_bytes()
        invocation = ServiceInvocation(inv, target, "dp1", argument, response_sink=IngressSink(0, 0, request))
        self.apply(Envelope(Invoke(invocation), self.now))
        return inv

    def fire_timers(self) -> None:
        for timer in list(self.store.timers):
            self.propose(TimerFired(timer))

    def run_attempts(self) -> int:
        attempts = 0
        while self.pending:
            self.attempt(self.pending.pop(0))
            attempts += 1
        return attempts

    def attempt(self, inv: bytes) -> None:
        status = self.store.status[inv]
        assert status.kind is StatusKind.INVOKED
        journal = [entry for _, entry in sorted(self.store.journal[inv].items())]
        start = pb.StartMessage(
            id=inv,
            debug_id=str(InvocationId.from_bytes(inv)),
            known_entries=len(journal),
            partial_state=True,
            key=status.invocation.target.key or "",
        )
        vm = VMWrapper([("content-type", content_type(VERSION))])
        vm.notify_input(encode(start) + b"".join(encode_raw(e.type_id, e.raw) for e in journal))
        vm.notify_input_closed()
        context = Context(vm, vm.sys_input().input_buffer)
        target = status.invocation.target
        try:
            output = self.handlers[(target.service, target.handler)](context)
            vm.sys_write_output_success(output)
            vm.sys_end()
        except Suspend:
            pass
        frames = Decoder(sender=Sender.SDK, version=VERSION).receive_data(vm.take_output())
        index = status.commands
        for frame in frames:
            if is_command(frame.type_id):
                call = None
                if frame.type_id in (MessageType.CALL_COMMAND, MessageType.ONE_WAY_CALL_COMMAND):
                    resolved = SCHEMA[(frame.message.service_name, frame.message.handler_name)]
                    call = CallTarget(resolved, "dp1")
                self.propose(JournalCommand(inv, index, frame.type_id, frame.payload, call))
                index += 1
            elif frame.type_id == MessageType.PROPOSE_RUN_COMPLETION:
                self.propose(
                    RunCompletion(inv, frame.message.result_completion_id, value=frame.message.value)
                )
            elif frame.type_id == MessageType.SUSPENSION:
                awaits = suspension_awaits(frame.message, VERSION)
                awaiting = Awaiting(tuple(sorted(awaits.completions)), tuple(sorted(awaits.signals)))
                self.propose(Suspended(inv, awaiting))
            elif frame.type_id == MessageType.END:
                self.propose(End(inv))
            else:
                pytest.fail(f"the SDK sent {frame}")


def test_three_runs_each_run_once_across_suspensions():
    world = World()
    executed: list[bytes] = []

    def step(value: bytes) -> Callable[[], bytes]:
        def closure() -> bytes:
            executed.append(value)
            return value

        return closure

    def three(ctx: Context) -> bytes:
        parts = [ctx.run(name, step(name.encode())) for name in ("a", "b", "c")]
        return b"+".join(parts)  # type: ignore[arg-type]

    world.handlers[("Greeter", "greet")] = three
    world.invoke(SCHEMA[("Greeter", "greet")], b"", 1)
    attempts = world.run_attempts()
    assert world.replies == {1: b"a+b+c"}
    assert executed == [b"a", b"b", b"c"]
    assert attempts == 4  # each run: propose and suspend; the suspension resumes at once


def test_counter_reads_lazy_state_and_writes_it():
    world = World()

    def add(ctx: Context) -> bytes:
        current = ctx.wait(ctx.vm.sys_get_state("count"))
        count = int(current or b"0") + 1
        ctx.vm.sys_set_state("count", str(count).encode())
        return str(count).encode()

    world.handlers[("Counter", "add")] = add
    target = Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE, "c1")
    for request in (1, 2, 3):
        world.invoke(target, b"", request)
    world.run_attempts()
    assert world.replies == {1: b"1", 2: b"2", 3: b"3"}
    assert world.store.state[("Counter", "c1")] == {b"count": b"3"}


def test_sleep_then_call_and_send():
    world = World()

    def greet(ctx: Context) -> bytes:
        return b"hello " + ctx.input

    def caller(ctx: Context) -> bytes:
        ctx.wait(ctx.vm.sys_sleep(50))
        call = ctx.vm.sys_call("Greeter", "greet", b"Bob")
        child = ctx.wait(call.invocation_id_handle)
        assert isinstance(child, str) and child.startswith("inv_1")
        reply = ctx.wait(call.result_handle)
        ctx.wait(ctx.vm.sys_send("Greeter", "greet", b"Ann", delay=10))
        return b"caller got " + reply  # type: ignore[operator]

    world.handlers[("Greeter", "greet")] = greet
    world.handlers[("Counter", "add")] = caller
    target = Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE, "k")
    world.invoke(target, b"", 1)
    world.run_attempts()
    assert world.store.status  # asleep
    world.fire_timers()  # the sleep
    world.run_attempts()
    world.fire_timers()  # the delayed send
    world.run_attempts()
    assert world.replies == {1: b"caller got hello Bob"}
    assert not world.store.status and not world.store.timers and not world.store.locks

"""Protocol flows played against the official SDK's own state machine (restate-sdk's PyVM).

The Python SDK runs the service protocol in a sans-I/O VM (restatedev/sdk-shared-core, compiled
into the ``restate-sdk`` wheel). Driving it directly, with frames from our encoder, gives the
exact bytes a real handler would answer with, without a server, a socket or a clock. Each flow
below plays the runtime's side of one scenario of restate-protocol.md §4.4/§4.8 and records the
byte stream in both directions, attempt by attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from restate._internal import PyExponentialRetryConfig, PyFailure, PyUnresolvedFuture, PyVM

from processor.ids import InvocationId
from processor.protocol import REQUESTED_ACK, Decoder, MessageType, content_type, encode, encode_raw, pb

# The id of the captured vector of §8.1; its awakeables are sign_1OMU_qcrx...
INVOCATION = InvocationId.from_bytes(bytes.fromhex("38c53fa9caf15a44fdec968e16bbed2dca023e89c8ee73f2"))
CHILD = "inv_17pNdEmOBjxm0CHm3kiyYmqdMn7DuXhoAN"
# OneWayCall.invoke_time is now + delay on the VM's wall clock; the transcript pins it to this.
PINNED_INVOKE_TIME = 1_800_000_000_100


@dataclass
class Attempt:
    version: int
    log: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.vm = PyVM([("content-type", content_type(self.version))], False, False)

    def runtime(self, *frames: bytes) -> None:
        data = b"".join(frames)
        self.log.append(("R", data))
        self.vm.notify_input(data)

    def start(self, *journal: bytes, retry_count: int = 0) -> None:
        start = pb.StartMessage(
            id=INVOCATION.to_bytes(),
            debug_id=str(INVOCATION),
            known_entries=len(journal),
            random_seed=0x5EED,
            retry_count_since_last_stored_entry=retry_count,
        )
        self.runtime(encode(start), *journal)

    def sdk(self) -> bytes:
        out = self.vm.take_output()
        if out:
            self.log.append(("S", out))
        return out

    def wait(self, handle: int) -> object:
        return self.vm.do_progress(PyUnresolvedFuture.single(handle))


def input_entry(headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    value = pb.Value(content=b'"Bob"')
    return encode(
        pb.InputCommandMessage(headers=[pb.Header(key=k, value=v) for k, v in headers], value=value)
    )


def finish(attempt: Attempt, output: bytes) -> None:
    attempt.vm.sys_write_output_success(output)
    attempt.vm.sys_end()
    attempt.sdk()


def call_and_delayed_send() -> list[Attempt]:
    """§4.8 (v6, bidi): call Greeter/greet, await it, then a send delayed by 100 ms."""
    a = Attempt(6)
    a.start(
        input_entry((("x-restate-ingress-path", "/Greeter/caller"), ("content-type", "application/json")))
    )
    a.vm.sys_input()
    call = a.vm.sys_call("Greeter", "greet", b'"Bob"', None, None, None, None, None)
    a.sdk()
    a.runtime(
        encode(pb.CallInvocationIdCompletionNotificationMessage(completion_id=1, invocation_id=CHILD)),
        encode(pb.CallCompletionNotificationMessage(completion_id=2, value=pb.Value(content=b'"Hello Bob"'))),
    )
    a.wait(call.result_handle)
    assert a.vm.take_notification(call.result_handle) == b'"Hello Bob"'
    a.vm.sys_send("Greeter", "greet", b'"Bob"', None, 100, None, None, None, None)
    finish(a, b'"Hello Bob"')
    return [a]


def run_bidi(version: int) -> list[Attempt]:
    """§4.4: a ctx.run; v6 answers the proposal with the notification, v7 (ack flag) with an ack."""
    a = Attempt(version)
    a.start(input_entry())
    a.vm.sys_input()
    run = a.vm.sys_run("make_greeting")
    a.wait(run.handle)
    a.vm.propose_run_completion_success(run.handle, b'"Hello Bob"')
    proposal = a.sdk()
    if version >= 7:
        assert Decoder().receive_data(proposal)[-1].flags == REQUESTED_ACK
        a.runtime(encode(pb.ProposeRunCompletionAckMessage(completion_id=1)))
    else:
        value = pb.Value(content=b'"Hello Bob"')
        a.runtime(encode(pb.RunCompletionNotificationMessage(completion_id=1, value=value)))
    a.wait(run.handle)
    assert a.vm.take_notification(run.handle) == b'"Hello Bob"'
    finish(a, b'"Hello Bob"')
    return [a]


def run_request_response() -> list[Attempt]:
    """§4.4 RR mode: run, propose, suspend; the next attempt replays the journal and ends."""
    first = Attempt(6)
    first.start(input_entry())
    first.vm.notify_input_closed()
    first.vm.sys_input()
    run = first.vm.sys_run("make_greeting")
    first.wait(run.handle)
    first.vm.propose_run_completion_success(run.handle, b'"Hello Bob"')
    first.sdk()
    first.wait(run.handle)  # suspends: the input is closed
    first.sdk()
    run_command = next_frame(first, MessageType.RUN_COMMAND)  # journaled as received, replayed as is
    second = Attempt(6)
    completion = pb.RunCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b'"Hello Bob"'))
    second.start(input_entry(), encode_raw(MessageType.RUN_COMMAND, run_command), encode(completion))
    second.vm.notify_input_closed()
    second.vm.sys_input()
    replayed = second.vm.sys_run("make_greeting")
    assert replayed.replayed
    second.wait(replayed.handle)
    assert second.vm.take_notification(replayed.handle) == b'"Hello Bob"'
    finish(second, b'"Hello Bob"')
    return [first, second]


def run_retry() -> list[Attempt]:
    """§4.4: a failing run with retries left ends the attempt with an ErrorMessage."""
    a = Attempt(6)
    a.start(input_entry())
    a.vm.sys_input()
    run = a.vm.sys_run("flaky")
    a.wait(run.handle)
    try:
        a.vm.propose_run_completion_failure_transient(
            run.handle,
            PyFailure(500, "boom", "Traceback: boom"),
            3,
            PyExponentialRetryConfig(50, 3, None, None, None),
        )
    except Exception as error:  # the VM reports the failure both ways
        assert "boom" in str(error)
    a.sdk()
    return [a]


def awakeable_suspension(version: int) -> list[Attempt]:
    """An awakeable in RR mode: the SDK suspends on signal 17 (and 1, cancel) in its version's form."""
    a = Attempt(version)
    a.start(input_entry())
    a.vm.notify_input_closed()
    a.vm.sys_input()
    awakeable_id, handle = a.vm.sys_awakeable()
    assert awakeable_id == "sign_1OMU_qcrxWkT97JaOFrvtLcoCPonI7nPyAAAAEQ"
    a.wait(handle)
    a.sdk()
    return [a]


def next_frame(attempt: Attempt, type_id: int) -> bytes:
    stream = b"".join(data for side, data in attempt.log if side == "S")
    return next(f.payload for f in Decoder().receive_data(stream) if f.type_id == type_id)


FLOWS: dict[str, tuple[int, Callable[[], list[Attempt]]]] = {
    "call_and_delayed_send": (6, call_and_delayed_send),
    "run_v6": (6, lambda: run_bidi(6)),
    "run_v7": (7, lambda: run_bidi(7)),
    "run_request_response": (6, run_request_response),
    "run_retry": (6, run_retry),
    "awakeable_suspension_v6": (6, lambda: awakeable_suspension(6)),
    "awakeable_suspension_v7": (7, lambda: awakeable_suspension(7)),
}

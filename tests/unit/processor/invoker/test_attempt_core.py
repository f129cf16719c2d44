"""Focused tests of the attempt core's invariants and of the retry policy.

The transcripts (test_attempt_transcripts.py) pin what happens in chosen scenarios; here
Hypothesis throws arbitrary input sequences at an attempt and checks what must always hold:
at most one AttemptEnded and nothing after it, nothing sent after the request stream was
closed, every proposed command numbered one after the other from the journal's command count,
and no exception but LocalProtocolError for inputs the state does not take.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core import JournalCommand, JournalEntry, ServiceType, Target
from processor.invoker.core import (
    Attempt,
    AttemptEnded,
    Begin,
    CloseRequest,
    CommandJournaled,
    DataReceived,
    LocalProtocolError,
    Mode,
    Notification,
    OnMaxAttempts,
    ProposeEffect,
    RetryPolicy,
    RunAcked,
    SendFrames,
    SetTimer,
    State,
    StreamClosed,
    StreamFailed,
    Tick,
    random_seed_of,
)
from processor.protocol import REQUESTED_ACK, MessageType, encode, pb

from .attempt_harness import resolve

INPUT = JournalEntry(MessageType.INPUT_COMMAND, pb.InputCommandMessage().SerializeToString())
RUN = JournalEntry(MessageType.RUN_COMMAND, pb.RunCommandMessage(result_completion_id=1).SerializeToString())

SDK_FRAMES = [
    encode(pb.RunCommandMessage(result_completion_id=2)),
    encode(pb.SetStateCommandMessage(key=b"k", value=pb.Value(content=b"v")), REQUESTED_ACK),
    encode(pb.ProposeRunCompletionMessage(result_completion_id=2, value=b"x"), REQUESTED_ACK),
    encode(pb.SleepCommandMessage(wake_up_time=5, result_completion_id=3)),
    encode(pb.OutputCommandMessage(value=pb.Value(content=b"o"))),
    encode(pb.SuspensionMessage(waiting_completions=[3], waiting_signals=[1])),
    encode(pb.ErrorMessage(code=500, message="boom")),
    encode(pb.EndMessage()),
    encode(pb.CallCommandMessage(service_name="Nope", handler_name="x", result_completion_id=4)),
    b"\xff\x00\x00",
]
NOTIFICATIONS = [
    JournalEntry(
        MessageType.RUN_COMPLETION,
        pb.RunCompletionNotificationMessage(
            completion_id=2, value=pb.Value(content=b"x")
        ).SerializeToString(),
    ),
    JournalEntry(
        MessageType.SLEEP_COMPLETION,
        pb.SleepCompletionNotificationMessage(completion_id=3, void=pb.Void()).SerializeToString(),
    ),
]

inputs = st.one_of(
    st.builds(
        DataReceived,
        st.lists(st.sampled_from(SDK_FRAMES), max_size=4).map(b"".join),
        st.integers(0, 10_000),
    ),
    st.builds(DataReceived, st.binary(max_size=12), st.integers(0, 10_000)),
    st.builds(Notification, st.integers(0, 12), st.sampled_from(NOTIFICATIONS), st.integers(0, 10_000)),
    st.builds(RunAcked, st.integers(1, 3), st.integers(0, 10_000)),
    st.builds(CommandJournaled, st.integers(0, 8), st.integers(0, 10_000)),
    st.builds(Tick, st.integers(0, 20_000)),
    st.just(StreamClosed()),
    st.builds(StreamFailed, st.text(max_size=5), st.booleans()),
)


def begin(mode: Mode, version: int = 7) -> Begin:
    return Begin(
        invocation_id=bytes(24),
        debug_id="inv_x",
        target=Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, None, "k"),
        journal=(INPUT, RUN),
        version=version,
        mode=mode,
        now_ms=0,
        inactivity_timeout_ms=1_000,
        abort_timeout_ms=5_000,
    )


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(Mode), st.sampled_from([5, 6, 7]), st.lists(inputs, max_size=12))
def test_invariants_hold_for_any_input_sequence(mode: Mode, version: int, sequence: list) -> None:
    core = Attempt(resolve)
    outputs = list(core.step(begin(mode, version)))
    closed = any(isinstance(o, CloseRequest) for o in outputs)
    ended = False
    next_index = 2  # Input and Run are commands 0 and 1
    for inp in sequence:
        step = core.step(inp)
        if ended:
            assert step == [], f"{inp!r} produced {step!r} after the end"
        for out in step:
            if isinstance(out, SendFrames):
                assert not closed, "sent after the request stream was closed"
            elif isinstance(out, CloseRequest):
                assert not closed, "closed twice"
                closed = True
            elif isinstance(out, ProposeEffect) and isinstance(out.effect, JournalCommand):
                assert out.effect.command_index == next_index
                next_index += 1
            elif isinstance(out, AttemptEnded):
                assert not ended
                ended = True
                assert closed, "ended without closing the request stream"
            else:
                assert not isinstance(out, SetTimer) or not ended
        assert (core.state is State.ENDED) == ended


def test_inputs_in_the_wrong_state_are_local_errors_and_end_the_attempt() -> None:
    core = Attempt(resolve)
    with pytest.raises(LocalProtocolError, match="Tick is not an input of an attempt in state new"):
        core.step(Tick(0))
    assert core.state is State.ENDED
    core = Attempt(resolve)
    core.step(begin(Mode.BIDI))
    with pytest.raises(LocalProtocolError, match="Begin is not an input"):
        core.step(begin(Mode.BIDI))
    assert core.state is State.ENDED


def test_introspection() -> None:
    core = Attempt(resolve)
    core.step(begin(Mode.BIDI))
    assert (core.state, core.known_entries, core.next_command_index) == (State.OPEN, 2, 2)
    assert core.invocation_id == bytes(24)
    core.step(DataReceived(encode(pb.EndMessage()), 1))
    assert core.ended is not None and core.state is State.ENDED


def test_random_seed_is_stable_per_invocation() -> None:
    a, b = bytes(24), bytes(23) + b"\x01"
    assert random_seed_of(a) == random_seed_of(a)
    assert random_seed_of(a) != random_seed_of(b)
    assert 0 <= random_seed_of(b) < 2**64


DEFAULT = RetryPolicy(500, 2.0, 60_000, 70, OnMaxAttempts.PAUSE)


def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    assert [DEFAULT.delay_ms(n) for n in range(1, 10)] == [
        500,
        1000,
        2000,
        4000,
        8000,
        16000,
        32000,
        60000,
        60000,
    ]
    assert DEFAULT.delay_ms(10_000) == 60_000  # no float overflow on long retry journeys
    assert RetryPolicy(10, 1.0, 100, None, OnMaxAttempts.KILL).delay_ms(50) == 10


def test_max_attempts_counts_the_first_attempt() -> None:
    three = RetryPolicy(10, 2.0, 100, 3, OnMaxAttempts.KILL)
    assert [three.exhausted(n) for n in range(1, 5)] == [False, False, True, True]
    assert not RetryPolicy(10, 2.0, 100, None, OnMaxAttempts.KILL).exhausted(10**9)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 2.0, 100, 3, OnMaxAttempts.KILL), "negative"),
        ((10, 0.5, 100, 3, OnMaxAttempts.KILL), "factor"),
        ((10, 2.0, 100, 0, OnMaxAttempts.KILL), "max_attempts"),
    ],
)
def test_bad_policies_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(*args)
    with pytest.raises(ValueError):
        DEFAULT.delay_ms(0)

"""The attempt core replays the captured flows of restate-protocol.md §4.4 and §4.8.

tests/unit/processor/testdata/flows.txt holds each flow as the frames both sides sent, in order,
with the SDK's side written by the official SDK's own VM (test_protocol_golden.py keeps that
file honest). Here our attempt plays the runtime: it is begun with the journal the flow's
StartMessage announces, fed the SDK's bytes (whole, and cut in two at every byte), and given
what the partition would give it (CommandJournaled for each proposed command, the journaled
RunCompletionNotification and the run ack for each run proposal, and the flow's other
notifications, such as a call's results). Every byte it sends must be the flow's runtime side,
and its effects and its end must be what the SDK's frames mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from processor.core import End, JournalCommand, JournalEntry, RunCompletion, Suspended, Target
from processor.core import ServiceType as ST
from processor.invoker.core import (
    Attempt,
    AttemptEnded,
    Begin,
    CommandJournaled,
    DataReceived,
    EndKind,
    Mode,
    Notification,
    ProposeEffect,
    RunAcked,
    SendFrames,
)
from processor.protocol import MessageType, encode_raw, is_command, pb
from tests.datadriven import parse_args

from .attempt_harness import resolve

FLOWS_FILE = Path(__file__).parents[1] / "testdata" / "flows.txt"
# Flows whose runtime ends the request stream right after the replay (the SDK then suspends).
REQUEST_RESPONSE = {"run_request_response", "awakeable_suspension_v6", "awakeable_suspension_v7"}
EXPECTED_END = {
    "call_and_delayed_send": [EndKind.END],
    "run_v6": [EndKind.END],
    "run_v7": [EndKind.END],
    "run_request_response": [EndKind.SUSPENDED, EndKind.END],
    "run_retry": [EndKind.FAILED_RETRYABLE],
    "awakeable_suspension_v6": [EndKind.SUSPENDED],
    "awakeable_suspension_v7": [EndKind.SUSPENDED],
}
# Runtime frames that answer the attempt's own proposals (the core must produce them itself).
ANSWERS = {MessageType.RUN_COMPLETION, MessageType.PROPOSE_RUN_COMPLETION_ACK}


@dataclass
class Step:
    side: str  # "R" or "S"
    type_id: int
    flags: int
    payload: bytes


@dataclass
class FlowAttempt:
    steps: list[Step] = field(default_factory=list)


def parse_flow(expected: str) -> list[FlowAttempt]:
    attempts = [FlowAttempt()]
    for line in expected.split("\n"):
        if line.startswith("attempt ") and line != "attempt 1":
            attempts.append(FlowAttempt())
        elif line[:2] in ("R ", "S "):
            side, type_id, flags, payload = line.split(" ")
            raw = b"" if payload == "-" else bytes.fromhex(payload)
            attempts[-1].steps.append(Step(side, int(type_id, 16), int(flags, 16), raw))
    return attempts


@dataclass
class Replay:
    """Plays one attempt of a flow against our core, the partition's part included."""

    version: int
    mode: Mode
    cut: int | None
    core: Attempt = field(default_factory=lambda: Attempt(resolve))
    sent: bytearray = field(default_factory=bytearray)
    effects: list = field(default_factory=list)
    ended: list[AttemptEnded] = field(default_factory=list)
    journal_length: int = 0

    def feed(self, inp: object) -> None:
        for out in self.core.step(inp):  # type: ignore[arg-type]
            if isinstance(out, SendFrames):
                self.sent += out.data
            elif isinstance(out, ProposeEffect):
                self.effects.append(out.effect)
                self.partition(out.effect)
            elif isinstance(out, AttemptEnded):
                self.ended.append(out)

    def partition(self, effect: object) -> None:
        """What the partition hands back once an effect is journaled (as its state machine does)."""
        if isinstance(effect, JournalCommand):
            self.journal_length += 1
            self.feed(CommandJournaled(effect.command_index, 0))
        elif isinstance(effect, RunCompletion):
            message = pb.RunCompletionNotificationMessage(completion_id=effect.completion_id)
            message.value.content = effect.value or b""
            entry = JournalEntry(MessageType.RUN_COMPLETION, message.SerializeToString())
            self.feed(Notification(self.journal_length, entry, 0))
            self.journal_length += 1
            self.feed(RunAcked(effect.completion_id, 0))

    def sdk(self, data: bytes) -> None:
        if self.cut is None or not 0 < self.cut < len(data):
            self.feed(DataReceived(data, 0))
        else:
            self.feed(DataReceived(data[: self.cut], 0))
            self.feed(DataReceived(data[self.cut :], 0))


def play(attempt: FlowAttempt, version: int, mode: Mode, cut: int | None) -> tuple[Replay, list[Step]]:
    steps = attempt.steps
    start = pb.StartMessage.FromString(steps[0].payload)
    known = start.known_entries
    journal = tuple(JournalEntry(s.type_id, s.payload) for s in steps[1 : 1 + known])
    replay = Replay(version, mode, cut, journal_length=known)
    replay.feed(
        Begin(
            invocation_id=start.id,
            debug_id=start.debug_id,
            target=Target("Greeter", "greet", ST.SERVICE),
            journal=journal,
            version=version,
            mode=mode,
            now_ms=0,
            inactivity_timeout_ms=60_000,
            abort_timeout_ms=600_000,
            partial_state=start.partial_state,
            retry_count_since_last_stored_entry=start.retry_count_since_last_stored_entry,
            random_seed=start.random_seed,
        )
    )
    pending = bytearray()
    for step in steps[1 + known :]:
        if step.side == "S":
            pending += encode_raw(step.type_id, step.payload, step.flags)
            continue
        if pending:
            replay.sdk(bytes(pending))
            pending.clear()
        if step.type_id not in ANSWERS:  # a notification the partition journaled on its own
            replay.feed(Notification(replay.journal_length, JournalEntry(step.type_id, step.payload), 0))
            replay.journal_length += 1
    if pending:
        replay.sdk(bytes(pending))
    return replay, steps


def check(name: str, version: int, cut: int | None) -> int:
    """Replay every attempt of one flow; returns the longest SDK byte run (for the cut loop)."""
    longest = 0
    ends: list[EndKind] = []
    for attempt in FLOWS[name]:
        mode = Mode.REQUEST_RESPONSE if name in REQUEST_RESPONSE else Mode.BIDI
        replay, steps = play(attempt, version, mode, cut)
        runtime = b"".join(encode_raw(s.type_id, s.payload, s.flags) for s in steps if s.side == "R")
        assert bytes(replay.sent) == runtime, f"{name}: our runtime side differs from the capture"
        sdk_frames = [s for s in steps if s.side == "S"]
        longest = max(longest, sum(8 + len(s.payload) for s in sdk_frames))
        commands = [s for s in sdk_frames if is_command(s.type_id)]
        proposed = [e for e in replay.effects if isinstance(e, JournalCommand)]
        assert [(c.type_id, c.payload) for c in commands] == [(e.type_id, e.raw) for e in proposed]
        first_index = sum(1 for s in steps[1:] if s.side == "R" and is_command(s.type_id))
        assert [e.command_index for e in proposed] == list(range(first_index, first_index + len(proposed)))
        runs = [s for s in sdk_frames if s.type_id == MessageType.PROPOSE_RUN_COMPLETION]
        assert len([e for e in replay.effects if isinstance(e, RunCompletion)]) == len(runs)
        assert len(replay.ended) == 1
        ends.append(replay.ended[0].kind)
        last = replay.effects[-1] if replay.effects else None
        if replay.ended[0].kind is EndKind.END:
            assert isinstance(last, End)
        elif replay.ended[0].kind is EndKind.SUSPENDED:
            assert isinstance(last, Suspended) and 1 in last.awaiting.signal_ids
        else:
            assert replay.ended[0].retry_after_ms == 50
    assert ends == EXPECTED_END[name]
    return longest


def load(path: Path) -> tuple[dict[str, list[FlowAttempt]], dict[str, int]]:
    """Each ``flow name=... version=...`` directive's transcript (it ends at a blank line)."""
    flows: dict[str, list[FlowAttempt]] = {}
    versions: dict[str, int] = {}
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("flow "):
            continue
        args = parse_args(line[len("flow ") :])
        body = []
        for text in lines[i + 2 :]:
            if not text.strip():
                break
            body.append(text)
        flows[args["name"][0]] = parse_flow("\n".join(body))
        versions[args["name"][0]] = int(args["version"][0])
    return flows, versions


FLOWS, VERSIONS = load(FLOWS_FILE)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_flow_replays_whole_and_cut_at_every_byte(name: str) -> None:
    longest = check(name, VERSIONS[name], None)
    for cut in range(1, longest):
        check(name, VERSIONS[name], cut)


def test_every_captured_flow_is_checked() -> None:
    assert set(FLOWS) == set(EXPECTED_END)

"""Drives one invocation attempt (processor.invoker.core.Attempt) from a datadriven file.

Directives (``at=MS`` on any of them sets the harness clock first; it starts at 0)::

    begin target=Counter/k/add version=6 mode=bidi|rr [retry=N] [duration=MS] [seed=N]
          [inactivity=MS] [abort=MS] [state=(key=value, ...)] [partial] [idempotency=KEY]
      <journal entries, one per line: "InputCommand {text}"; none = an empty Input>
    sdk
      <frames the SDK sends, one per line: "RunCommand {text}" [ack]; or "hex 0011..." raw bytes>
    notify index=N
      <one notification entry, as a frame line>
    run-acked id=N
    journaled index=N
    headers [ct=CONTENT-TYPE]         (default: the version's own content type)
    tick
    closed
    failed [not-processed] [error=TEXT]

Targets: ``Service/handler`` is a plain service; ``Object/key/handler`` is keyed, its handler
type from ``KNOWN`` (Counter: add exclusive, get shared; Signup: run workflow, confirm shared).
Calls resolve against ``KNOWN`` too. Every directive prints ``describe()`` of the outputs, or
``error: ...`` for a LocalProtocolError.

``split=K`` (set by the test, not the file) feeds every ``sdk`` directive's bytes in two
pieces cut at byte K, to show that the outputs do not depend on how the bytes arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import text_format

from processor.core import CallTarget, HandlerType, JournalEntry, ServiceType, Target
from processor.ids import InvocationId
from processor.invoker.core import (
    Attempt,
    Begin,
    CommandJournaled,
    DataReceived,
    LocalProtocolError,
    Mode,
    Notification,
    ResponseHeaders,
    RunAcked,
    StreamClosed,
    StreamFailed,
    Tick,
    describe,
)
from processor.protocol import REQUESTED_ACK, content_type, encode, encode_raw, pb, type_id_of
from tests.datadriven import TestCase

INVOCATION = InvocationId.from_bytes(bytes.fromhex("38c53fa9caf15a44fdec968e16bbed2dca023e89c8ee73f2"))

# service -> (type, {handler: handler type})
KNOWN: dict[str, tuple[ServiceType, dict[str, HandlerType | None]]] = {
    "Greeter": (ServiceType.SERVICE, {"greet": None}),
    "Counter": (ServiceType.VIRTUAL_OBJECT, {"add": HandlerType.EXCLUSIVE, "get": HandlerType.SHARED}),
    "Signup": (ServiceType.WORKFLOW, {"run": HandlerType.WORKFLOW, "confirm": HandlerType.SHARED}),
}


def resolve(service: str, handler: str, key: str, has_idempotency_key: bool) -> CallTarget | str:
    known = KNOWN.get(service)
    if known is None or handler not in known[1]:
        return f"the service handler {service}/{handler} was not found"
    service_type, handlers = known
    if service_type is ServiceType.SERVICE:
        if key:
            return f"the service {service} is not keyed, yet the call gives a key"
        target = Target(service, handler, service_type)
    else:
        target = Target(service, handler, service_type, handlers[handler], key)
    retention = 86_400_000 if has_idempotency_key else 0
    return CallTarget(target, "dp_test", retention, retention)


def target_of(text: str) -> Target:
    parts = text.split("/")
    service_type, handlers = KNOWN[parts[0]]
    if len(parts) == 2:
        return Target(parts[0], parts[1], service_type)
    service, key, handler = parts
    return Target(service, handler, service_type, handlers[handler], key)


def frame_line(line: str) -> tuple[int, bytes, int]:
    """``Name {text} [ack]`` -> (type id, payload, flags)."""
    line = line.strip()
    if line.startswith("hex "):
        return -1, bytes.fromhex(line[4:].replace(" ", "")), 0
    name, _, rest = line.partition(" ")
    flags = 0
    if rest.endswith(" ack"):
        rest, flags = rest[: -len(" ack")], REQUESTED_ACK
    body = rest.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"frame line {line!r}: expected 'Name {{text}}'")
    cls = getattr(pb, name if name.endswith("Message") else name + "Message")
    message = text_format.Parse(body[1:-1], cls())
    return type_id_of(message), message.SerializeToString(), flags


def wire(lines: str) -> bytes:
    out = bytearray()
    for line in lines.splitlines():
        if not line.strip():
            continue
        type_id, payload, flags = frame_line(line)
        out += payload if type_id < 0 else encode_raw(type_id, payload, flags)
    return bytes(out)


@dataclass
class Harness:
    split: int | None = None
    now: int = 0
    attempt: Attempt = field(default_factory=lambda: Attempt(resolve))
    version: int = 6
    longest_sdk_input: int = 0

    def handle(self, case: TestCase) -> str:
        if case.has("at"):
            self.now = case.int_arg("at")
        elif case.cmd == "begin":
            self.now = 0
        try:
            outputs = self._step(case)
        except LocalProtocolError as error:
            return f"error: {error}"
        return describe(outputs)

    def _step(self, case: TestCase) -> list:
        match case.cmd:
            case "begin":
                self.attempt = Attempt(resolve)
                return self.attempt.step(self._begin(case))
            case "sdk":
                data = wire(case.input)
                self.longest_sdk_input = max(self.longest_sdk_input, len(data))
                if self.split is None or not 0 < self.split < len(data):
                    return self.attempt.step(DataReceived(data, self.now))
                first = self.attempt.step(DataReceived(data[: self.split], self.now))
                return first + self.attempt.step(DataReceived(data[self.split :], self.now))
            case "notify":
                type_id, payload, _ = frame_line(case.input)
                entry = JournalEntry(type_id, payload)
                return self.attempt.step(Notification(case.int_arg("index"), entry, self.now))
            case "run-acked":
                return self.attempt.step(RunAcked(case.int_arg("id"), self.now))
            case "journaled":
                return self.attempt.step(CommandJournaled(case.int_arg("index"), self.now))
            case "headers":
                return self.attempt.step(
                    ResponseHeaders(case.arg("ct", content_type(self.version)), self.now)
                )
            case "tick":
                return self.attempt.step(Tick(self.now))
            case "closed":
                return self.attempt.step(StreamClosed())
            case "failed":
                error = case.arg("error", "connection lost")
                return self.attempt.step(StreamFailed(error, maybe_processed=not case.has("not-processed")))
        raise ValueError(f"{case.pos}: unknown directive {case.cmd}")

    def _begin(self, case: TestCase) -> Begin:
        self.version = case.int_arg("version", 6)
        journal = []
        for line in case.input.splitlines():
            if line.strip():
                type_id, payload, _ = frame_line(line)
                journal.append(JournalEntry(type_id, payload))
        if not journal:
            journal.append(
                JournalEntry(type_id_of(pb.InputCommandMessage()), encode(pb.InputCommandMessage())[8:])
            )
        state = []
        for pair in case.list_arg("state"):
            key, _, value = pair.partition("=")
            state.append((key.encode(), value.encode()))
        return Begin(
            invocation_id=INVOCATION.to_bytes(),
            debug_id=str(INVOCATION),
            target=target_of(case.arg("target", "Greeter/greet")),
            journal=tuple(journal),
            version=self.version,
            mode=Mode.REQUEST_RESPONSE if case.arg("mode", "bidi") == "rr" else Mode.BIDI,
            now_ms=self.now,
            inactivity_timeout_ms=case.int_arg("inactivity", 60_000),
            abort_timeout_ms=case.int_arg("abort", 600_000),
            state=tuple(state),
            partial_state=case.has("partial"),
            retry_count_since_last_stored_entry=case.int_arg("retry", 0),
            duration_since_last_stored_entry_ms=case.int_arg("duration", 0),
            random_seed=case.int_arg("seed", 0),
            idempotency_key=case.arg("idempotency", "") or None,
        )

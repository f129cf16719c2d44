"""One invocation attempt, runtime side: the mirror of the SDK's VM (sdk-shared-core).

The shell owns the HTTP stream and the partition; this object owns the rules of the service
protocol (restate-protocol.md §4.2-§4.6 and §5) and is fed inputs, answering outputs::

    Begin                  StartMessage{known_entries = len(journal)} and every entry, byte
                           for byte: commands and notifications in journal order. Request/
                           response: then CloseRequest. Bidi: the stream stays open.
    DataReceived           the SDK's frames, in order:
                             command       check it (_validate), then propose it as
                                           JournalCommand #n (n counts commands only; Input
                                           is 0); REQUESTED_ACK: CommandAck once journaled
                             ProposeRunCompletion  propose RunCompletion; once journaled the
                                           SDK gets the RunCompletionNotification (v6) or,
                                           when it asked for an ack (v7), ProposeRunCompletionAck
                             Suspension    propose Suspended (awaited ids flattened); ended
                             End           propose End; ended
                             Error         ended: retryable (next_retry_delay), or v7
                                           behavior PAUSE / FAIL (FAIL proposes Fail)
                             AwaitingOn    a hint: ignored
                           anything else (a frame the SDK may not send, bad bytes, a custom
                           entry) is a protocol violation: the attempt fails (571)
    Notification           bidi, while the request is open: forwarded if it is new (its index
                           is past the replayed journal and past the last one forwarded)
    RunAcked / CommandJournaled   the acks above (only while the request is open)
    Tick                   the inactivity timeout (bidi, request open: no traffic either way
                           for that long -> CloseRequest, so that the SDK suspends) and the
                           abort timeout (request closed: no data for that long -> failed)

Every terminal frame, failure or timeout closes the request stream (an SDK waits for that
before it ends its response) and emits exactly one AttemptEnded; later inputs are ignored.

States and transitions (anything not listed raises ``LocalProtocolError``)::

    NEW          --Begin, bidi-------------------------------------> OPEN
    NEW          --Begin, request/response-------------------------> HALF_CLOSED
    OPEN         --inactivity timeout------------------------------> HALF_CLOSED
    OPEN, HALF_CLOSED --terminal frame, failure, abort timeout-----> ENDED
    ENDED        --any input------------------------------------------> ENDED (ignored)
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from typing import Any, Final

from processor.core import (
    Awaiting,
    End,
    Fail,
    Failure,
    JournalCommand,
    RunCompletion,
    Suspended,
)
from processor.invoker.core._events import (
    AttemptEnded,
    AttemptError,
    Begin,
    CloseRequest,
    CommandJournaled,
    DataReceived,
    EndKind,
    Input,
    Mode,
    Notification,
    Output,
    ProposeEffect,
    ResponseHeaders,
    RunAcked,
    SendFrames,
    SetTimer,
    StreamClosed,
    StreamFailed,
    Tick,
)
from processor.invoker.core._validate import CallResolver, check_command, no_calls
from processor.protocol import (
    MAX_PROTOCOL_VERSION,
    MIN_PROTOCOL_VERSION,
    Decoder,
    Frame,
    MessageType,
    ProtocolError,
    Sender,
    content_type,
    decode_payload,
    encode,
    encode_raw,
    is_command,
    is_custom,
    is_notification,
    pb,
    suspension_awaits,
    type_name,
)

PROTOCOL_VIOLATION: Final = 571
INTERNAL: Final = 500

T = MessageType
_COMMAND_FIRST: Final = 0x0400
_NOTIFICATION_FIRST: Final = 0x8000
# Plain ints: enum member lookups cost in the per-frame path.
_RUN_COMPLETION: Final = int(T.RUN_COMPLETION)
_PROPOSE_RUN_COMPLETION: Final = int(T.PROPOSE_RUN_COMPLETION)
_AWAITING_ON: Final = int(T.AWAITING_ON)
_SUSPENSION: Final = int(T.SUSPENSION)
_ERROR: Final = int(T.ERROR)
_END: Final = int(T.END)


class State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    """Request stream open (bidi): notifications and acks go out as they come."""
    HALF_CLOSED = "half-closed"
    """Request stream ended: reading the SDK's frames until a terminal one."""
    ENDED = "ended"


_NEW, _OPEN, _HALF_CLOSED, _ENDED = State.NEW, State.OPEN, State.HALF_CLOSED, State.ENDED


class LocalProtocolError(Exception):
    """The shell used the attempt wrongly (an input its state does not take): a bug."""


def random_seed_of(invocation_id: bytes) -> int:
    """StartMessage.random_seed: stable for the invocation's life, on every leader."""
    return int.from_bytes(hashlib.blake2b(invocation_id, digest_size=8).digest(), "big")


class Attempt:
    """The runtime's side of one attempt (see the module docstring). ``resolve`` resolves
    call targets against the latest schema."""

    def __init__(self, resolve: CallResolver = no_calls) -> None:
        self._resolve = resolve
        self._state = _NEW
        self._table = _TRANSITIONS[_NEW]
        self._begin: Begin | None = None
        self._decoder: Decoder | None = None
        self._version = 0
        self._known_entries = 0
        self._next_command = 0
        self._last_forwarded = -1
        self._acks: set[int] = set()  # command indexes whose frame asked for an ack
        # v7 run proposals that asked for an ack: completion id -> ack already sent
        self._run_acks: dict[int, bool] = {}
        self._last_activity_ms = 0
        self._ended: AttemptEnded | None = None

    # --- introspection ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def invocation_id(self) -> bytes:
        return b"" if self._begin is None else self._begin.invocation_id

    @property
    def known_entries(self) -> int:
        """Entries replayed at the start (the StartMessage's ``known_entries``)."""
        return self._known_entries

    @property
    def next_command_index(self) -> int:
        return self._next_command

    @property
    def ended(self) -> AttemptEnded | None:
        return self._ended

    # --- the funnel -------------------------------------------------------------------------

    def step(self, inp: Input) -> list[Output]:
        handler = self._table.get(type(inp))
        try:
            if handler is None:
                raise LocalProtocolError(
                    f"{type(inp).__name__} is not an input of an attempt in state {self._state.value}"
                )
            return handler(self, inp)
        except LocalProtocolError:
            self._set_state(_ENDED)  # a misused attempt is over: its shell must not go on with it
            raise

    # --- start ------------------------------------------------------------------------------

    def _on_begin(self, inp: Begin) -> list[Output]:
        if not MIN_PROTOCOL_VERSION <= inp.version <= MAX_PROTOCOL_VERSION:
            raise LocalProtocolError(f"protocol version {inp.version} is not one we speak")
        if not inp.journal or inp.journal[0].type_id != T.INPUT_COMMAND:
            raise LocalProtocolError("a journal starts with its Input command")
        self._begin = inp
        self._version = inp.version
        self._decoder = Decoder(sender=Sender.SDK, version=inp.version)
        self._known_entries = len(inp.journal)
        self._last_forwarded = self._known_entries - 1
        self._next_command = sum(1 for entry in inp.journal if is_command(entry.type_id))
        self._last_activity_ms = inp.now_ms
        start = pb.StartMessage(
            id=inp.invocation_id,
            debug_id=inp.debug_id,
            known_entries=len(inp.journal),
            state_map=[pb.StartMessage.StateEntry(key=k, value=v) for k, v in inp.state],
            partial_state=inp.partial_state,
            key=inp.target.key or "",
            retry_count_since_last_stored_entry=inp.retry_count_since_last_stored_entry,
            duration_since_last_stored_entry=inp.duration_since_last_stored_entry_ms,
        )
        if inp.version >= 6:
            start.random_seed = inp.random_seed
        if inp.version >= 7 and inp.idempotency_key is not None:
            start.idempotency_key = inp.idempotency_key
        frames = [encode(start)]
        frames.extend(encode_raw(entry.type_id, entry.raw) for entry in inp.journal)
        out: list[Output] = [SendFrames(b"".join(frames))]
        if inp.mode is Mode.REQUEST_RESPONSE:
            out.extend(self._close_request(inp.now_ms))
        else:
            self._set_state(_OPEN)
            out.append(SetTimer(inp.now_ms + inp.inactivity_timeout_ms))
        return out

    def _close_request(self, now_ms: int) -> list[Output]:
        """End the request stream; from now on the abort timeout runs."""
        assert self._begin is not None
        self._set_state(_HALF_CLOSED)
        self._last_activity_ms = now_ms
        return [CloseRequest(), SetTimer(now_ms + self._begin.abort_timeout_ms)]

    # --- from the deployment ----------------------------------------------------------------

    def _on_headers(self, inp: ResponseHeaders) -> list[Output]:
        expected = content_type(self._version)
        if inp.content_type != expected:
            return self._fail(
                AttemptError(INTERNAL, f"unexpected content type {inp.content_type!r}; expected {expected!r}")
            )
        return []

    def _on_data(self, inp: DataReceived) -> list[Output]:
        assert self._decoder is not None
        self._last_activity_ms = inp.now_ms
        try:
            frames = self._decoder.receive_data(inp.data)
            violation = None
        except ProtocolError as error:
            frames, violation = error.frames, error
        out: list[Output] = []
        for frame in frames:
            out.extend(self._on_frame(frame))
            if self._state is _ENDED:
                return out  # bytes after a terminal frame are ignored, as Restate does
        if violation is not None:
            out.extend(self._fail(AttemptError(PROTOCOL_VIOLATION, f"protocol violation: {violation}")))
        return out

    def _on_frame(self, frame: Frame) -> list[Output]:
        type_id = frame.type_id
        if _COMMAND_FIRST <= type_id < _NOTIFICATION_FIRST:
            return self._on_command(frame)
        if type_id == _PROPOSE_RUN_COMPLETION:
            return self._on_run_proposal(frame)
        if type_id == _AWAITING_ON:
            return []
        if type_id == _SUSPENSION:
            return self._on_suspension(frame.message)
        if type_id == _ERROR:
            return self._on_error(frame.message)
        if type_id == _END:
            return self._finish([ProposeEffect(End(self.invocation_id))], EndKind.END)
        # The decoder lets through only what an SDK may send; of that, custom entries remain.
        what = "custom entries are not supported" if is_custom(type_id) else "unexpected frame"
        return self._fail(AttemptError(PROTOCOL_VIOLATION, f"{what}: {type_name(type_id)}"))

    def _on_command(self, frame: Frame) -> list[Output]:
        assert self._begin is not None
        index = self._next_command
        call, problem = check_command(self._begin.target, frame.type_id, frame.message, self._resolve)
        if problem is not None:
            name = type_name(frame.type_id).removesuffix("Message")
            return self._fail(
                AttemptError(
                    INTERNAL,
                    f"cannot process command {name} (command index {index}) because of a failed precondition: "
                    f"{problem}",
                )
            )
        self._next_command = index + 1
        if frame.requested_ack:
            self._acks.add(index)
        return [ProposeEffect(JournalCommand(self.invocation_id, index, frame.type_id, frame.payload, call))]

    def _on_run_proposal(self, frame: Frame) -> list[Output]:
        message: Any = frame.message
        completion_id = message.result_completion_id
        which = message.WhichOneof("result")
        if which == "value":
            effect = RunCompletion(self.invocation_id, completion_id, value=message.value)
        elif which == "failure":
            effect = RunCompletion(self.invocation_id, completion_id, failure=_failure(message.failure))
        else:
            return self._fail(
                AttemptError(
                    PROTOCOL_VIOLATION, "malformed ProposeRunCompletionMessage, missing result field"
                )
            )
        if frame.requested_ack and self._version >= 7:
            self._run_acks.setdefault(completion_id, False)
        return [ProposeEffect(effect)]

    def _on_suspension(self, message: Any) -> list[Output]:
        awaits = suspension_awaits(message, self._version)
        awaiting = Awaiting(
            completion_ids=tuple(sorted(awaits.completions)),
            signal_ids=tuple(sorted(awaits.signals)),
            signal_names=tuple(sorted(awaits.named_signals)),
        )
        return self._finish([ProposeEffect(Suspended(self.invocation_id, awaiting))], EndKind.SUSPENDED)

    def _on_error(self, message: Any) -> list[Output]:
        error = AttemptError(message.code, message.message, message.stacktrace, _related_command(message))
        behavior = message.behavior if self._version >= 7 else pb.RETRY
        if behavior == pb.FAIL:
            fail = Fail(self.invocation_id, Failure(message.code, message.message))
            return self._finish([ProposeEffect(fail)], EndKind.FAILED_TERMINAL, error)
        if behavior == pb.PAUSE:
            return self._finish([], EndKind.PAUSED, error)
        retry_after = message.next_retry_delay if message.HasField("next_retry_delay") else None
        return self._finish([], EndKind.FAILED_RETRYABLE, error, retry_after)

    def _on_stream_closed(self, inp: StreamClosed) -> list[Output]:
        assert self._decoder is not None
        try:
            self._decoder.eof()
        except ProtocolError as error:
            return self._fail(AttemptError(PROTOCOL_VIOLATION, f"protocol violation: {error}"))
        return self._fail(
            AttemptError(INTERNAL, "the invocation stream ended without End, Suspension or Error")
        )

    def _on_stream_failed(self, inp: StreamFailed) -> list[Output]:
        return self._fail(AttemptError(INTERNAL, inp.error), counts=inp.maybe_processed)

    # --- from the partition -----------------------------------------------------------------

    def _on_notification(self, inp: Notification) -> list[Output]:
        entry = inp.entry
        if not is_notification(entry.type_id):
            raise LocalProtocolError(f"{type_name(entry.type_id)} at index {inp.index} is not a notification")
        if inp.index <= self._last_forwarded:
            return []  # replayed at the start, or forwarded already
        self._last_forwarded = inp.index
        if entry.type_id == _RUN_COMPLETION and self._run_acks:
            message: Any = decode_payload(entry.type_id, entry.raw)
            if message.completion_id in self._run_acks:
                # The SDK proposed it in this attempt and asked for an ack: it has the value.
                return self._ack_run(message.completion_id, inp.now_ms)
        return self._send(encode_raw(entry.type_id, entry.raw), inp.now_ms)

    def _on_run_acked(self, inp: RunAcked) -> list[Output]:
        if inp.completion_id not in self._run_acks:
            return []  # v6: the notification itself answers the proposal
        return self._ack_run(inp.completion_id, inp.now_ms)

    def _ack_run(self, completion_id: int, now_ms: int) -> list[Output]:
        if self._run_acks[completion_id]:
            return []
        self._run_acks[completion_id] = True
        return self._send(encode(pb.ProposeRunCompletionAckMessage(completion_id=completion_id)), now_ms)

    def _on_command_journaled(self, inp: CommandJournaled) -> list[Output]:
        if inp.command_index not in self._acks:
            return []
        self._acks.discard(inp.command_index)
        return self._send(encode(pb.CommandAckMessage(command_index=inp.command_index)), inp.now_ms)

    def _send(self, data: bytes, now_ms: int) -> list[Output]:
        self._last_activity_ms = now_ms
        return [SendFrames(data)]

    def _drop(self, inp: Input) -> list[Output]:
        """The request stream is closed: nothing can be sent; the next attempt replays it."""
        return []

    # --- time -------------------------------------------------------------------------------

    def _on_tick(self, inp: Tick) -> list[Output]:
        assert self._begin is not None
        if self._state is _OPEN:
            deadline = self._last_activity_ms + self._begin.inactivity_timeout_ms
            if inp.now_ms >= deadline:
                return self._close_request(inp.now_ms)
            return [SetTimer(deadline)]
        deadline = self._last_activity_ms + self._begin.abort_timeout_ms
        if inp.now_ms >= deadline:
            seconds = self._begin.abort_timeout_ms / 1000
            return self._fail(
                AttemptError(
                    INTERNAL,
                    f"the invocation stream was closed after the abort timeout ({seconds:g} s) fired",
                )
            )
        return [SetTimer(deadline)]

    # --- ending -----------------------------------------------------------------------------

    def _finish(
        self,
        effects: list[Output],
        kind: EndKind,
        error: AttemptError | None = None,
        retry_after_ms: int | None = None,
        counts: bool = True,
    ) -> list[Output]:
        out = effects
        if self._state is _OPEN:
            out.append(CloseRequest())
        self._set_state(_ENDED)
        self._ended = AttemptEnded(kind, error, retry_after_ms, counts)
        out.append(self._ended)
        return out

    def _set_state(self, state: State) -> None:
        self._state = state
        self._table = _TRANSITIONS[state]

    def _fail(self, error: AttemptError, counts: bool = True) -> list[Output]:
        return self._finish([], EndKind.FAILED_RETRYABLE, error, None, counts)

    def _ignore(self, inp: Input) -> list[Output]:
        return []


def _failure(message: Any) -> Failure:
    return Failure(message.code, message.message, tuple((m.key, m.value) for m in message.metadata))


def _related_command(message: Any) -> str | None:
    if not (message.HasField("related_command_index") or message.HasField("related_command_type")):
        return None
    parts = []
    if message.HasField("related_command_type"):
        parts.append(type_name(message.related_command_type).removesuffix("Message"))
    if message.related_command_name:
        parts.append(repr(message.related_command_name))
    if message.HasField("related_command_index"):
        parts.append(f"#{message.related_command_index}")
    return " ".join(parts)


_Handler = Callable[[Attempt, Any], list[Output]]
_LIVE: Final[dict[type, _Handler]] = {
    ResponseHeaders: Attempt._on_headers,
    DataReceived: Attempt._on_data,
    StreamClosed: Attempt._on_stream_closed,
    StreamFailed: Attempt._on_stream_failed,
    Tick: Attempt._on_tick,
}
# state -> input type -> handler: the transition table (see the module docstring).
_TRANSITIONS: Final[dict[State, dict[type, _Handler]]] = {
    State.NEW: {Begin: Attempt._on_begin},
    State.OPEN: {
        **_LIVE,
        Notification: Attempt._on_notification,
        RunAcked: Attempt._on_run_acked,
        CommandJournaled: Attempt._on_command_journaled,
    },
    State.HALF_CLOSED: {
        **_LIVE,
        Notification: Attempt._drop,
        RunAcked: Attempt._drop,
        CommandJournaled: Attempt._drop,
    },
    State.ENDED: {kind: Attempt._ignore for kind in (*_LIVE, Notification, RunAcked, CommandJournaled)},
}

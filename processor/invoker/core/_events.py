"""What an invocation attempt takes in and gives out: frozen, slotted values only.

Inputs come from three places: the shell that owns the HTTP stream (``Begin``,
``ResponseHeaders``, ``DataReceived``, ``StreamClosed``, ``StreamFailed``), the partition
(``Notification``, ``RunAcked``, ``CommandJournaled``) and the shell's one timer (``Tick``).
Inputs that count as traffic for the inactivity and abort timeouts carry the shell's clock as
``now_ms`` (a monotonic millisecond reading); the core never reads a clock.

Outputs, in the order the shell must carry them out: ``SendFrames`` (write to the request
stream), ``ProposeEffect`` (append to the partition's log, never write to a store),
``CloseRequest`` (end the request stream once what was sent before it is written),
``SetTimer`` (feed a ``Tick`` at that time; a newer one replaces it) and ``AttemptEnded``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from processor.core import InvokerEffect, JournalEntry, Target


class Mode(enum.Enum):
    """How the attempt uses the request stream (restate-protocol.md §5)."""

    BIDI = "bidi"
    """Keep the request stream open after the replay and forward new notifications on it."""
    REQUEST_RESPONSE = "request-response"
    """End the request stream right after the replay; the SDK suspends when it needs more."""


class EndKind(enum.Enum):
    END = "END"
    """EndMessage: the invocation is complete (its result is the journaled Output command)."""
    SUSPENDED = "SUSPENDED"
    """SuspensionMessage: proposed as ``Suspended``; the partition resumes it."""
    FAILED_RETRYABLE = "FAILED_RETRYABLE"
    """The attempt failed; the invocation is retried by its retry policy."""
    FAILED_TERMINAL = "FAILED_TERMINAL"
    """The invocation fails with ``error`` (proposed as ``Fail``): v7 ErrorMessage behavior FAIL."""
    PAUSED = "PAUSED"
    """v7 ErrorMessage behavior PAUSE: no more attempts until the invocation is resumed."""


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Why an attempt failed, in Restate's terms: an HTTP-like code, a message, the SDK's
    stack trace and, for the SDK's own errors, the command it was working on."""

    code: int
    message: str
    stacktrace: str = ""
    related_command: str | None = None

    def __str__(self) -> str:
        where = f" ({self.related_command})" if self.related_command else ""
        return f"[{self.code}] {self.message}{where}"


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    """Start the attempt: the committed journal (replayed byte for byte), the eager state and
    the StartMessage's counters. ``journal`` holds every entry, Input first."""

    invocation_id: bytes
    debug_id: str
    target: Target
    journal: tuple[JournalEntry, ...]
    version: int
    mode: Mode
    now_ms: int
    inactivity_timeout_ms: int
    """Bidi: end the request stream after this long without traffic either way."""
    abort_timeout_ms: int
    """Once the request stream is ended: fail the attempt after this long without data."""
    state: tuple[tuple[bytes, bytes], ...] = ()
    partial_state: bool = True
    retry_count_since_last_stored_entry: int = 0
    duration_since_last_stored_entry_ms: int = 0
    random_seed: int = 0
    idempotency_key: str | None = None
    """Sent in the StartMessage from protocol v7 on."""


@dataclass(frozen=True, slots=True)
class ResponseHeaders:
    """The deployment answered 200 with this content type (which must name our version)."""

    content_type: str | None
    now_ms: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    data: bytes
    now_ms: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The response stream ended cleanly (END_STREAM)."""


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """The exchange failed in transit. ``maybe_processed`` is False when the deployment
    certainly did not see the request (a refused stream): the retry need not count it."""

    error: str
    maybe_processed: bool = True


@dataclass(frozen=True, slots=True)
class Notification:
    """The partition journaled ``entry`` (a completion or a signal) at ``index``."""

    index: int
    entry: JournalEntry
    now_ms: int


@dataclass(frozen=True, slots=True)
class RunAcked:
    """The partition journaled the run completion ``completion_id`` this attempt proposed."""

    completion_id: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class CommandJournaled:
    """The command ``command_index`` this attempt proposed is durably in the partition's log."""

    command_index: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int


Input = (
    Begin
    | ResponseHeaders
    | DataReceived
    | StreamClosed
    | StreamFailed
    | Notification
    | RunAcked
    | CommandJournaled
    | Tick
)

# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendFrames:
    data: bytes


@dataclass(frozen=True, slots=True)
class ProposeEffect:
    effect: InvokerEffect


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """End the request stream (after the bytes already handed out are written)."""


@dataclass(frozen=True, slots=True)
class SetTimer:
    at_ms: int


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """The attempt is over; nothing it does later counts. ``retry_after_ms`` is the SDK's
    ``next_retry_delay`` (it overrides the policy's next delay); ``counts`` is False for a
    failure the deployment never saw."""

    kind: EndKind
    error: AttemptError | None = None
    retry_after_ms: int | None = None
    counts: bool = True


Output = SendFrames | ProposeEffect | CloseRequest | SetTimer | AttemptEnded

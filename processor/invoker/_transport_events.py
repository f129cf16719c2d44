"""What the sans-I/O HTTP sessions (``_h2_session``, ``_h1_session``) report to the asyncio shell.

Both sessions emit the same per-stream events, so the shell's stream object is one class for
HTTP/2 and HTTP/1.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.invoker._transport_errors import TransportError

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class HeadReceived:
    stream_id: int
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The response is complete (END_STREAM, or h11's EndOfMessage)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """The stream can carry nothing more; data already received stays readable."""

    stream_id: int
    error: TransportError


@dataclass(frozen=True, slots=True)
class SendWindowOpened:
    """HTTP/2 send window grew for one stream, or for all of them (``stream_id`` None)."""

    stream_id: int | None


@dataclass(frozen=True, slots=True)
class GoingAway:
    """The server sent GOAWAY: no new streams on this connection; streams up to
    ``last_stream_id`` may still finish."""

    last_stream_id: int
    error_code: int


StreamEvent = HeadReceived | DataReceived | StreamEnded | StreamFailed
STREAM_EVENTS = (HeadReceived, DataReceived, StreamEnded, StreamFailed)
SessionEvent = StreamEvent | SendWindowOpened | GoingAway

"""Inputs to and outputs of `Connection.step`, as frozen values.

Time is `now`, in seconds on whatever monotonic clock the shell uses (the asyncio loop's);
the core never reads a clock. A stream names a direction: `UPSTREAM` reads from the client
socket and writes to the server socket, `DOWNSTREAM` the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._toxics import Stream, Toxic

# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """Bytes read from the socket that `stream` reads from."""

    stream: Stream
    data: bytes
    now: float


@dataclass(frozen=True, slots=True)
class EofReceived:
    """The peer that `stream` reads from half-closed its side (FIN)."""

    stream: Stream
    now: float


@dataclass(frozen=True, slots=True)
class PeerLost:
    """The socket that `stream` reads from failed (reset, write error): it can neither be read
    nor written any more, so this ends `stream`'s input and kills `stream.other`'s output."""

    stream: Stream
    now: float


@dataclass(frozen=True, slots=True)
class WritePaused:
    """The socket that `stream` writes to has a full write buffer (its peer reads slowly)."""

    stream: Stream
    now: float


@dataclass(frozen=True, slots=True)
class WriteResumed:
    stream: Stream
    now: float


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The timer of the last `SetTimer` is due; `now` must be at least its `at`."""

    now: float


@dataclass(frozen=True, slots=True)
class ToxicAdded:
    """Appends a toxic to the end of its stream's chain. A new connection starts with an empty
    chain and gets one `ToxicAdded` per toxic of its proxy, in the proxy's order."""

    toxic: Toxic
    now: float


@dataclass(frozen=True, slots=True)
class ToxicUpdated:
    toxic: Toxic
    now: float


@dataclass(frozen=True, slots=True)
class ToxicRemoved:
    name: str
    now: float


Input = (
    Received
    | EofReceived
    | PeerLost
    | WritePaused
    | WriteResumed
    | TimerFired
    | ToxicAdded
    | ToxicUpdated
    | ToxicRemoved
)

# --- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write `data` to the socket `stream` writes to."""

    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class SendEof:
    """Half-close (shutdown SHUT_WR) the socket `stream` writes to, after its buffered data."""

    stream: Stream


@dataclass(frozen=True, slots=True)
class Close:
    """Close both sockets; the connection is over and the core answers nothing more.

    `reset`: abort with SO_LINGER 0 so the peers get an RST instead of a FIN.
    """

    reset: bool


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Arm the connection's single timer for `at` (replacing any armed one); None disarms it."""

    at: float | None


@dataclass(frozen=True, slots=True)
class PauseReading:
    """Stop reading the socket `stream` reads from: its chain or its destination is full."""

    stream: Stream


@dataclass(frozen=True, slots=True)
class ResumeReading:
    stream: Stream


Output = Send | SendEof | Close | SetTimer | PauseReading | ResumeReading

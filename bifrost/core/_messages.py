"""The log-server protocol: requests to and replies from a log-server, as frozen values.

Every request carries a `RequestHeader` (loglet id and the sender's known global tail, which
is how the sequencer piggybacks commit progress: no separate Release round trip). Every reply
carries a `ResponseHeader` with the server's durable local tail, its known global tail, its
durable seal flag and a `Status`: a refusal is a value, never an exception.

Offsets are loglet offsets: 1-based, u32 range. Mapping to LSNs belongs to the chain.
"""

from __future__ import annotations

import enum

import msgspec

from ._types import MAX_OFFSET, GenerationalNodeId, LogletId, WireInt, describe_loglet


class Status(enum.Enum):
    OK = "ok"
    SEALED = "sealed"
    """The loglet is durably sealed on this server; normal stores are refused."""
    SEALING = "sealing"
    """A seal is being persisted; a repair store must retry once it is durable."""
    SEQUENCER_MISMATCH = "sequencer-mismatch"
    MALFORMED = "malformed"
    OUT_OF_BOUNDS = "out-of-bounds"
    """The store would leave a hole above the known global tail, or a trim would pass the tail."""
    CONFLICT = "conflict"
    """The offset already holds a different record here: storing would overwrite it."""
    DISABLED = "disabled"
    DROPPED = "dropped"
    """Guaranteed not persisted (e.g. the request expired before it could be written)."""


class StoreFlags(enum.Flag):
    NONE = 0
    IGNORE_SEAL = enum.auto()
    """Repair stores write into a sealed loglet: they only copy records that already exist."""
    REPAIR = enum.auto()


class RequestHeader(msgspec.Struct, frozen=True, array_like=True, tag=True):
    loglet_id: LogletId
    known_global_tail: WireInt


class ResponseHeader(msgspec.Struct, frozen=True, array_like=True, tag=True):
    local_tail: WireInt
    known_global_tail: WireInt
    sealed: bool
    status: Status


# --- requests ---------------------------------------------------------------------------


class Store(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: RequestHeader
    first_offset: WireInt
    sequencer: GenerationalNodeId
    payloads: tuple[bytes, ...]
    flags: StoreFlags = StoreFlags.NONE

    @property
    def last_offset(self) -> int:
        return self.first_offset + len(self.payloads) - 1

    def is_malformed(self) -> bool:
        return not self.payloads or self.first_offset < 1 or self.last_offset > MAX_OFFSET


class Seal(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: RequestHeader
    sequencer: GenerationalNodeId


class GetLogletInfo(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: RequestHeader


class GetRecords(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Read [from_offset, to_offset] (inclusive), clipped to the server's local tail, stopping
    after `limit_bytes` of payload (at least one record is always returned if one is due)."""

    header: RequestHeader
    from_offset: WireInt
    to_offset: WireInt
    limit_bytes: WireInt = 32 * 1024


class Trim(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: RequestHeader
    trim_point: WireInt


class GetDigest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Which offsets of [from_offset, to_offset] (inclusive) this server holds."""

    header: RequestHeader
    from_offset: WireInt
    to_offset: WireInt


RequestMessage = Store | Seal | GetLogletInfo | GetRecords | Trim | GetDigest


# --- replies ----------------------------------------------------------------------------


class Stored(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: ResponseHeader


class Sealed(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: ResponseHeader


class LogletInfo(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: ResponseHeader
    trim_point: WireInt


class Data(msgspec.Struct, frozen=True, array_like=True, tag=True):
    offset: WireInt
    payload: bytes


class TrimGap(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Offsets [offset, to] (inclusive) were trimmed away."""

    offset: WireInt
    to: WireInt


RecordEntry = Data | TrimGap


class Records(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """`next_offset` is the first offset this reply does not cover: a reader continues there,
    and rotates to another server if it made no progress."""

    header: ResponseHeader
    next_offset: WireInt
    entries: tuple[RecordEntry, ...]


class Trimmed(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: ResponseHeader


class DigestKind(enum.Enum):
    EXISTS = "exists"
    TRIMMED = "trimmed"


class DigestRange(msgspec.Struct, frozen=True, array_like=True, tag=True):
    from_offset: WireInt
    to_offset: WireInt
    kind: DigestKind


class Digest(msgspec.Struct, frozen=True, array_like=True, tag=True):
    header: ResponseHeader
    entries: tuple[DigestRange, ...]


ReplyMessage = Stored | Sealed | LogletInfo | Records | Trimmed | Digest


# --- rendering --------------------------------------------------------------------------


def _payloads(ps: tuple[bytes, ...]) -> str:
    return "[" + " ".join(p.decode("utf-8", "backslashreplace") for p in ps) + "]"


def describe_header(h: ResponseHeader) -> str:
    sealed = " sealed" if h.sealed else ""
    return f"{h.status.value} local_tail={h.local_tail} global_tail={h.known_global_tail}{sealed}"


def describe_message(msg: RequestMessage | ReplyMessage) -> str:
    """One line per message, stable across runs: golden files are made of these."""
    match msg:
        case Store(header=h, first_offset=f, sequencer=s, payloads=ps, flags=fl):
            flags = (
                ""
                if fl == StoreFlags.NONE
                else " " + "|".join(x.name.lower() for x in StoreFlags if x in fl and x.name)
            )
            return f"Store {describe_loglet(h.loglet_id)}@{f} seq={s} gt={h.known_global_tail}{flags} {_payloads(ps)}"
        case Seal(header=h, sequencer=s):
            return f"Seal {describe_loglet(h.loglet_id)} seq={s} gt={h.known_global_tail}"
        case GetLogletInfo(header=h):
            return f"GetLogletInfo {describe_loglet(h.loglet_id)} gt={h.known_global_tail}"
        case GetRecords(header=h, from_offset=f, to_offset=t, limit_bytes=lim):
            return f"GetRecords {describe_loglet(h.loglet_id)} [{f},{t}] limit={lim} gt={h.known_global_tail}"
        case Trim(header=h, trim_point=p):
            return f"Trim {describe_loglet(h.loglet_id)} to={p} gt={h.known_global_tail}"
        case GetDigest(header=h, from_offset=f, to_offset=t):
            return f"GetDigest {describe_loglet(h.loglet_id)} [{f},{t}]"
        case Stored(header=h):
            return f"Stored {describe_header(h)}"
        case Sealed(header=h):
            return f"Sealed {describe_header(h)}"
        case LogletInfo(header=h, trim_point=p):
            return f"LogletInfo {describe_header(h)} trim_point={p}"
        case Records(header=h, next_offset=n, entries=es):
            parts = []
            for e in es:
                if isinstance(e, Data):
                    parts.append(f"{e.offset}:{e.payload.decode('utf-8', 'backslashreplace')}")
                else:
                    parts.append(f"{e.offset}-{e.to}:trimmed")
            return f"Records {describe_header(h)} next={n} [{' '.join(parts)}]"
        case Trimmed(header=h):
            return f"Trimmed {describe_header(h)}"
        case Digest(header=h, entries=es):
            rs = " ".join(f"{r.from_offset}-{r.to_offset}:{r.kind.value}" for r in es)
            return f"Digest {describe_header(h)} [{rs}]"
    raise TypeError(f"not a log-server message: {msg!r}")

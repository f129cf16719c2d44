"""The key layout of the partition store: the one module that knows how its keys are made.

One RocksDB per node holds every partition of that node, so every key carries its partition:

    kind (2 bytes) + partition id (u16 BE) + the table's fields

    kind  table              fields after the partition id
    fs    fsm variables      variable (u16)
    de    dedup              producer (str)
    iS    invocation status  invocation id (24 bytes)
    j2    journal            invocation id (24 bytes), index (u32)
    st    state              service (str), key (str), name (raw bytes, to the end)
    pr    promises           workflow (str), key (str), promise name (str)
    lo    exclusive locks    service (str), key (str)
    ib    inbox              service (str), key (str), seq (u64)
    ti    timers             wake-up ms (u64), invocation id (24 bytes), timer kind (u8),
                             completion id (u32)
    ob    outbox             index (u64)

**A prefix, once assigned, is never reused**; a retired table keeps its entry in `KeyKind` so
its bytes stay reserved. Timer kinds' codes (`TIMER_KIND_CODE`) follow the same rule.

Byte order is the order scans need: integers are big-endian, strings are UTF-8 with 0x00
escaped as 00 FF and ended by 00 01. That string encoding keeps Python's string order and is
prefix-free, so the keys of one (service, key) are exactly the keys that start with that
pair's prefix, whatever bytes the names hold (a key "a" never catches "a\\x00b"'s rows). A
state name is the last field, raw, so one object's state lists in byte order of its names.
Timers sort by wake-up time, then invocation id, then kind (code order, which is `TimerKind`'s
declaration order), then completion id: the order `Tables.timers()` promises.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from processor.core import InvocationIdBytes, TimerKey, TimerKind


class KeyKind(enum.Enum):
    """Table prefixes (Restate's where the table is the same)."""

    FSM = b"fs"
    DEDUP = b"de"
    STATUS = b"iS"
    JOURNAL = b"j2"
    STATE = b"st"
    LOCKS = b"lo"
    INBOX = b"ib"
    TIMERS = b"ti"
    OUTBOX = b"ob"
    PROMISES = b"pr"


class FsmVar(enum.IntEnum):
    """Ids of the fsm variables (Restate's numbers where the variable is the same); never reused."""

    INBOX_SEQ = 0
    OUTBOX_INDEX = 1
    APPLIED_LSN = 2
    LEADER = 7  # Restate keeps its epoch metadata under 7 too


TIMER_KIND_CODE: Final = {TimerKind.SLEEP: 1, TimerKind.INVOKE: 2, TimerKind.CLEANUP: 3}
_TIMER_KIND_OF: Final = {code: kind for kind, code in TIMER_KIND_CODE.items()}

INVOCATION_ID_BYTES: Final = 24
_PARTITION: Final = struct.Struct(">H")


class KeyFormatError(ValueError):
    """A value that does not fit the key layout, or bytes that are not a key of this layout."""


# --- field codecs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes, int], tuple[Any, int]]
    """(value, end) of the field starting at ``pos``."""
    fmt: str | None = None
    """Its struct code when fixed-width: a table of fixed-width fields packs a key in one call."""
    to_struct: Callable[[Any], Any] | None = None
    """Checks or converts the value for that struct code."""


_ERRORS: Final = (struct.error, KeyError, UnicodeError, TypeError, AttributeError)


def _uint(name: str, code: str) -> _Field:
    s = struct.Struct(">" + code)

    def decode(buf: bytes, pos: int) -> tuple[int, int]:
        return s.unpack_from(buf, pos)[0], pos + s.size

    return _Field(name, s.pack, decode, code)


def _invocation_id(name: str) -> _Field:
    def check(value: InvocationIdBytes) -> bytes:
        # struct's "24s" would pad or cut any other length.
        if not isinstance(value, bytes):
            raise TypeError(f"{type(value).__name__}, not bytes")
        if len(value) != INVOCATION_ID_BYTES:
            raise struct.error(f"{len(value)} bytes, not {INVOCATION_ID_BYTES}")
        return value

    def decode(buf: bytes, pos: int) -> tuple[bytes, int]:
        end = pos + INVOCATION_ID_BYTES
        if end > len(buf):
            raise struct.error("short invocation id")
        return buf[pos:end], end

    return _Field(name, check, decode, f"{INVOCATION_ID_BYTES}s", check)


_STR_END: Final = b"\x00\x01"


def _str(name: str) -> _Field:
    def encode(value: str) -> bytes:
        return value.encode("utf-8").replace(b"\x00", b"\x00\xff") + _STR_END

    def decode(buf: bytes, pos: int) -> tuple[str, int]:
        # Inside the body every 0x00 is followed by 0xFF, so the first 00 01 is the end.
        end = buf.find(_STR_END, pos)
        if end < 0:
            raise struct.error("unterminated string")
        return buf[pos:end].replace(b"\x00\xff", b"\x00").decode("utf-8"), end + len(_STR_END)

    return _Field(name, encode, decode)


def _rest(name: str) -> _Field:
    """Raw bytes to the end of the key: only as the last field."""

    def encode(value: bytes) -> bytes:
        if not isinstance(value, bytes):
            raise TypeError(f"{type(value).__name__}, not bytes")
        return value

    def decode(buf: bytes, pos: int) -> tuple[bytes, int]:
        return buf[pos:], len(buf)

    return _Field(name, encode, decode)


def _timer_kind(name: str) -> _Field:
    def code(value: TimerKind) -> int:
        return TIMER_KIND_CODE[value]

    def decode(buf: bytes, pos: int) -> tuple[TimerKind, int]:
        return _TIMER_KIND_OF[buf[pos]], pos + 1

    return _Field(name, lambda value: bytes((code(value),)), decode, "B", code)


# --- table keys ------------------------------------------------------------------------------


class TableKey:
    """One table's key: ``kind + partition + fields``, with prefixes of leading fields for scans."""

    def __init__(self, kind: KeyKind, *fields: _Field) -> None:
        self.kind = kind
        self.fields = fields
        self._kind = kind.value
        self._headers: dict[int, bytes] = {}
        # Keys are built a few times per applied record: fixed-width tables pack in one call.
        fixed = all(f.fmt for f in fields)
        self._struct = struct.Struct(">" + "".join(f.fmt or "" for f in fields)) if fixed else None
        self._converts = tuple((i, f.to_struct) for i, f in enumerate(fields) if f.to_struct)

    def encode(self, partition: int, *values: Any) -> bytes:
        if len(values) != len(self.fields):
            raise TypeError(f"a {self.kind.name} key has {len(self.fields)} fields, got {len(values)}")
        try:
            header = self._headers.get(partition) or self._header(partition)
            if self._struct is None:
                return header + b"".join([f.encode(v) for f, v in zip(self.fields, values, strict=True)])
            if self._converts:
                converted = list(values)
                for i, convert in self._converts:
                    converted[i] = convert(converted[i])
                return header + self._struct.pack(*converted)
            return header + self._struct.pack(*values)
        except _ERRORS as e:
            raise KeyFormatError(
                f"{self._describe(partition, values)} does not fit the key layout: {e}"
            ) from None

    def prefix(self, partition: int, *leading: Any) -> bytes:
        """The bytes every key of this partition starting with these leading fields begins with."""
        if len(leading) > len(self.fields):
            raise TypeError(f"a {self.kind.name} key has {len(self.fields)} fields, got {len(leading)}")
        try:
            header = self._headers.get(partition) or self._header(partition)
            return header + b"".join([f.encode(v) for f, v in zip(self.fields, leading, strict=False)])
        except _ERRORS as e:
            raise KeyFormatError(
                f"{self._describe(partition, leading)} does not fit the key layout: {e}"
            ) from None

    def bounds(self, partition: int, *leading: Any) -> tuple[bytes, bytes]:
        """[lower, upper) of the keys that start with these leading fields."""
        lower = self.prefix(partition, *leading)
        return lower, successor(lower)

    def decode(self, key: bytes) -> tuple[Any, ...]:
        """(partition, *fields) of a key of this table."""
        if key[:2] != self._kind:
            raise KeyFormatError(f"not a {self.kind.name} key: {key[:2]!r} prefix")
        try:
            values: list[Any] = [_PARTITION.unpack_from(key, 2)[0]]
            pos = 2 + _PARTITION.size
            for field in self.fields:
                value, pos = field.decode(key, pos)
                values.append(value)
        except (struct.error, KeyError, IndexError, UnicodeError) as e:
            raise KeyFormatError(f"malformed {self.kind.name} key {key.hex()}: {e}") from None
        if pos != len(key):
            raise KeyFormatError(
                f"malformed {self.kind.name} key {key.hex()}: {len(key) - pos} trailing bytes"
            )
        return tuple(values)

    def _header(self, partition: int) -> bytes:
        header = self._kind + _PARTITION.pack(partition)
        self._headers[partition] = header
        return header

    def _describe(self, partition: object, values: tuple[object, ...]) -> str:
        named = ", ".join(f"{f.name}={v!r}" for f, v in zip(self.fields, values, strict=False))
        return f"{self.kind.name} key (partition={partition!r}{', ' + named if named else ''})"


def successor(prefix: bytes) -> bytes:
    """The smallest key above every key that starts with ``prefix`` (an exclusive upper bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        raise KeyFormatError(f"no upper bound for prefix {prefix.hex()}")
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


FSM: Final = TableKey(KeyKind.FSM, _uint("variable", "H"))
DEDUP: Final = TableKey(KeyKind.DEDUP, _str("producer"))
STATUS: Final = TableKey(KeyKind.STATUS, _invocation_id("invocation_id"))
JOURNAL: Final = TableKey(KeyKind.JOURNAL, _invocation_id("invocation_id"), _uint("index", "I"))
STATE: Final = TableKey(KeyKind.STATE, _str("service"), _str("key"), _rest("name"))
LOCKS: Final = TableKey(KeyKind.LOCKS, _str("service"), _str("key"))
INBOX: Final = TableKey(KeyKind.INBOX, _str("service"), _str("key"), _uint("seq", "Q"))
TIMERS: Final = TableKey(
    KeyKind.TIMERS,
    _uint("wake_up_ms", "Q"),
    _invocation_id("invocation_id"),
    _timer_kind("kind"),
    _uint("completion_id", "I"),
)
OUTBOX: Final = TableKey(KeyKind.OUTBOX, _uint("index", "Q"))
PROMISES: Final = TableKey(KeyKind.PROMISES, _str("service"), _str("key"), _str("name"))

TABLES: Final = (FSM, DEDUP, STATUS, JOURNAL, STATE, LOCKS, INBOX, TIMERS, OUTBOX, PROMISES)


def timer_key(partition: int, timer: TimerKey) -> bytes:
    return TIMERS.encode(partition, timer.wake_up_ms, timer.invocation_id, timer.kind, timer.completion_id)


def decode_timer_key(key: bytes) -> TimerKey:
    _, wake_up_ms, invocation_id, kind, completion_id = TIMERS.decode(key)
    return TimerKey(wake_up_ms, invocation_id, kind, completion_id)

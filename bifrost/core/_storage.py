"""The log-server's storage seam: durable writes as data, reads through a narrow protocol.

The core never writes: it emits `Persist(token, writes)` and the shell turns each one into a
single RocksDB WriteBatch with one fsync (group commit), then feeds `Persisted(token)` back.
The core reads durable state through `LogStorage` (like raft's read-only `Storage`): loglet
state once, when it first hears of a loglet, and records when serving reads.

`MemoryLogStore` is the in-memory implementation the tests and the simulator use as a disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from ._types import GenerationalNodeId, LogletId


@dataclass(frozen=True, slots=True)
class LogletState:
    """What survives a restart for one loglet on one log-server."""

    local_tail: int = 1
    sealed: bool = False
    sequencer: GenerationalNodeId | None = None
    trim_point: int = 0
    known_global_tail: int = 1


# --- writes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutRecords:
    loglet_id: LogletId
    first_offset: int
    payloads: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PutLocalTail:
    loglet_id: LogletId
    local_tail: int


@dataclass(frozen=True, slots=True)
class PutKnownGlobalTail:
    loglet_id: LogletId
    known_global_tail: int


@dataclass(frozen=True, slots=True)
class PutSequencer:
    loglet_id: LogletId
    sequencer: GenerationalNodeId


@dataclass(frozen=True, slots=True)
class PutSealed:
    loglet_id: LogletId


@dataclass(frozen=True, slots=True)
class PutTrimPoint:
    """Also deletes every record at or below the trim point."""

    loglet_id: LogletId
    trim_point: int


Write = PutRecords | PutLocalTail | PutKnownGlobalTail | PutSequencer | PutSealed | PutTrimPoint


def describe_write(w: Write) -> str:
    match w:
        case PutRecords(first_offset=f, payloads=ps):
            return f"records@{f}+{len(ps)}"
        case PutLocalTail(local_tail=t):
            return f"local_tail={t}"
        case PutKnownGlobalTail(known_global_tail=t):
            return f"global_tail={t}"
        case PutSequencer(sequencer=s):
            return f"sequencer={s}"
        case PutSealed():
            return "sealed"
        case PutTrimPoint(trim_point=p):
            return f"trim_point={p}"
    raise TypeError(w)


class StorageError(Exception):
    """The store failed a read (corruption, an I/O error): the data it should hold cannot be
    trusted to be there. Raised by ``LogStorage`` implementations; the log-server core turns it
    into DISABLED answers, never into a partial read."""


class LogStorage(Protocol):
    def load_loglet(self, loglet_id: LogletId) -> LogletState:
        """Durable state of the loglet (the default state if the loglet is unknown)."""
        ...

    def read(self, loglet_id: LogletId, from_offset: int, to_offset: int) -> Iterator[tuple[int, bytes]]:
        """Durable records with from_offset <= offset <= to_offset, in ascending order. Raises
        ``StorageError`` rather than end early when the store cannot read what it holds."""
        ...


class MemoryLogStore:
    """A durable disk for tests and simulation: `apply` is the fsync'd WriteBatch."""

    __slots__ = ("_loglets", "_records")

    def __init__(self) -> None:
        self._loglets: dict[LogletId, LogletState] = {}
        self._records: dict[LogletId, dict[int, bytes]] = {}

    def load_loglet(self, loglet_id: LogletId) -> LogletState:
        return self._loglets.get(loglet_id, LogletState())

    def read(self, loglet_id: LogletId, from_offset: int, to_offset: int) -> Iterator[tuple[int, bytes]]:
        recs = self._records.get(loglet_id)
        if not recs:
            return
        if to_offset - from_offset > len(recs):
            for off in sorted(o for o in recs if from_offset <= o <= to_offset):
                yield off, recs[off]
            return
        for off in range(from_offset, to_offset + 1):
            p = recs.get(off)
            if p is not None:
                yield off, p

    def loglet_ids(self) -> list[LogletId]:
        return sorted(self._loglets.keys() | self._records.keys())

    def records(self, loglet_id: LogletId) -> dict[int, bytes]:
        """Read-only view for checkers."""
        return self._records.get(loglet_id, {})

    def apply(self, writes: tuple[Write, ...] | list[Write]) -> None:
        for w in writes:
            st = self._loglets.get(w.loglet_id, LogletState())
            match w:
                case PutRecords(loglet_id=lid, first_offset=f, payloads=ps):
                    recs = self._records.setdefault(lid, {})
                    for i, p in enumerate(ps):
                        if f + i > st.trim_point:
                            recs[f + i] = p
                case PutLocalTail(local_tail=t):
                    self._loglets[w.loglet_id] = replace(st, local_tail=t)
                case PutKnownGlobalTail(known_global_tail=t):
                    self._loglets[w.loglet_id] = replace(st, known_global_tail=t)
                case PutSequencer(sequencer=s):
                    self._loglets[w.loglet_id] = replace(st, sequencer=s)
                case PutSealed():
                    self._loglets[w.loglet_id] = replace(st, sealed=True)
                case PutTrimPoint(loglet_id=lid, trim_point=p):
                    self._loglets[w.loglet_id] = replace(st, trim_point=p)
                    recs = self._records.get(lid, {})
                    for off in [o for o in recs if o <= p]:
                        del recs[off]
                case _:
                    raise TypeError(w)

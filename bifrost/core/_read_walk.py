"""One read of a log, as a core: the walk from LSN to LSN across the chain's segments.

    step(ChainIs | LogletRecord | LogletGap | LogletEnd) -> [ReadLoglet | WantChain | Emit | ReadDone]

The walk keeps the next LSN to deliver. Given the chain, it maps that LSN to where it lives:

    below the chain's first segment    Emit a trim gap up to the first segment's base
    in a loglet segment                ReadLoglet(segment, offset): the shell streams that loglet
                                       from the offset and feeds each entry back
    at a seal marker / no chain yet    WantChain(after_version): wait for a newer chain

A loglet stream ends where the chain ends the segment (the shell's loglet learns that end from
`MarkSealed`); then `LogletEnd` makes the walk ask for the chain again (`WantChain(None)`: the
current one) and go on in the next segment. Trim gaps inside a loglet come through as
`LogletGap`. With ``to_lsn`` the walk ends (`ReadDone`) once it passed it.

With ``dedup``, a record whose appender tag was seen before with an equal or higher sequence
number (a copy re-appended after a seal, see `bifrost.record`) is skipped: appenders keep their
batches in order, so the first copy of each record comes first.

    state     ChainIs              LogletRecord/Gap      LogletEnd
    CHAIN     ReadLoglet | wait    -                      -
    LOGLET    -                    Emit (maybe DONE)      -> CHAIN (WantChain)
    DONE      ignore               ignore                 ignore
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._chain import Chain, Segment
from ._errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class LogRecord:
    lsn: int
    payload: bytes
    # The appender's tag (see bifrost.record): equal tags at two LSNs are one re-appended
    # record. Not part of equality: a record is its LSN and its bytes.
    appender: int = field(default=0, compare=False)
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class LogTrimGap:
    """LSNs ``[from_lsn, to_lsn]`` were trimmed."""

    from_lsn: int
    to_lsn: int


LogEntry = LogRecord | LogTrimGap


@dataclass(frozen=True, slots=True)
class ChainIs:
    chain: Chain | None
    version: int | None


@dataclass(frozen=True, slots=True)
class LogletRecord:
    """A record of the loglet being read, its tag already taken off."""

    offset: int
    payload: bytes
    appender: int
    seq: int


@dataclass(frozen=True, slots=True)
class LogletGap:
    from_offset: int
    to_offset: int


@dataclass(frozen=True, slots=True)
class LogletEnd:
    """The loglet's stream ended (the chain ended its segment)."""


ReadWalkInput = ChainIs | LogletRecord | LogletGap | LogletEnd


@dataclass(frozen=True, slots=True)
class ReadLoglet:
    """Stream ``segment``'s loglet from ``from_offset`` (replacing any stream before)."""

    segment: Segment
    from_offset: int


@dataclass(frozen=True, slots=True)
class WantChain:
    """Feed `ChainIs` again: the current chain (None), or one newer than ``after_version``."""

    after_version: int | None
    newer: bool


@dataclass(frozen=True, slots=True)
class Emit:
    entry: LogEntry


@dataclass(frozen=True, slots=True)
class ReadDone:
    pass


ReadWalkOutput = ReadLoglet | WantChain | Emit | ReadDone


class WalkState(enum.Enum):
    CHAIN = "chain"
    LOGLET = "loglet"
    DONE = "done"


class ReadWalk:
    def __init__(self, from_lsn: int, to_lsn: int | None = None, *, dedup: bool = False) -> None:
        if from_lsn < 1:
            raise LocalProtocolError(f"LSNs start at 1, got {from_lsn}")
        self._lsn = from_lsn
        self._to = to_lsn
        self._dedup = dedup
        self._seen: dict[int, int] = {}
        self._segment: Segment | None = None
        self._state = WalkState.CHAIN if to_lsn is None or from_lsn <= to_lsn else WalkState.DONE

    @property
    def state(self) -> WalkState:
        return self._state

    @property
    def next_lsn(self) -> int:
        return self._lsn

    def step(self, inp: ReadWalkInput) -> list[ReadWalkOutput]:
        st = self._state
        if st is WalkState.DONE:
            return [ReadDone()]
        out: list[ReadWalkOutput] = []
        if isinstance(inp, LogletRecord) and st is WalkState.LOGLET:
            seg = self._segment
            assert seg is not None
            lsn = seg.base_lsn + inp.offset - 1
            if not self._dedup or inp.seq > self._seen.get(inp.appender, 0):
                if self._dedup:
                    self._seen[inp.appender] = inp.seq
                out.append(Emit(LogRecord(lsn, inp.payload, inp.appender, inp.seq)))
            self._lsn = lsn + 1
        elif isinstance(inp, LogletGap) and st is WalkState.LOGLET:
            seg = self._segment
            assert seg is not None
            out.append(Emit(LogTrimGap(seg.lsn(inp.from_offset), seg.lsn(inp.to_offset))))
            self._lsn = seg.lsn(inp.to_offset) + 1
        elif isinstance(inp, LogletEnd) and st is WalkState.LOGLET:
            self._state = WalkState.CHAIN
            self._segment = None
            out.append(WantChain(None, newer=False))
            return out
        elif isinstance(inp, ChainIs) and st is WalkState.CHAIN:
            self._place(inp, out)
            return out
        else:
            raise LocalProtocolError(f"read walk: no transition for {type(inp).__name__} in {st}")
        if self._to is not None and self._lsn > self._to:
            self._state = WalkState.DONE
            out.append(ReadDone())
        return out

    def _place(self, inp: ChainIs, out: list[ReadWalkOutput]) -> None:
        chain = inp.chain
        if chain is None:
            out.append(WantChain(inp.version, newer=True))
            return
        head = chain.segments[0].base_lsn
        if self._lsn < head:
            out.append(Emit(LogTrimGap(self._lsn, head - 1)))
            self._lsn = head
            if self._to is not None and self._lsn > self._to:
                self._state = WalkState.DONE
                out.append(ReadDone())
                return
        seg = chain.find(self._lsn)
        if seg is None:  # at a seal marker: wait for the next segment
            out.append(WantChain(inp.version, newer=True))
            return
        self._segment = seg
        self._state = WalkState.LOGLET
        out.append(ReadLoglet(seg, seg.offset(self._lsn)))


def describe_read_walk(x: ReadWalkInput | ReadWalkOutput) -> str:
    match x:
        case ReadLoglet(segment=s, from_offset=o):
            return f"read-loglet #{s.index}@{s.base_lsn} from={o}"
        case WantChain(after_version=v, newer=newer):
            return f"want-chain newer-than v{v}" if newer else "want-chain current"
        case Emit(entry=LogRecord(lsn=lsn, payload=p, appender=a, seq=s)):
            return f"emit {lsn}: {p.decode('utf-8', 'backslashreplace')} (tag {a}/{s})"
        case Emit(entry=LogTrimGap(from_lsn=a, to_lsn=b)):
            return f"emit trim-gap [{a},{b}]"
        case ReadDone():
            return "done"
    return repr(x)

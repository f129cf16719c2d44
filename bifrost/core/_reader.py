"""The read-stream core for one loglet: reads from one log-server at a time, rotates on
failure, and never delivers an offset at or past the global tail it knows.

    step(Tick | Response | SetTail | Cached | Consumed | NodeDead | NodeAlive)
        -> [Send | Deliver | SetTimer]

The tail bound comes from response headers (every log-server reports the global tail it
knows, which is always a committed one) and from `SetTail` (the local sequencer's tail, or the
next segment's base once the loglet is sealed: then `final=True` and the stream ends there).
Server order: the preferred node (our own) first, then the rest shuffled by the injected rng.
A reply that makes no progress, a refusal, or a timeout moves to the next server.

`Cached` hands the stream committed records that the shell already holds in memory (the
sequencer's record cache, locally or pushed with a tail update): those at the stream's next
offset and below the tail are delivered without asking a log-server, which on the sequencer's
node may not have stored them yet (its own store can finish after the quorum's). Records
a log-server later returns for offsets already delivered are skipped.

Read-ahead is bounded by consumer credit: at most `max_unconsumed` records are delivered and not
yet reported `Consumed`; the stream asks for no more until the consumer catches up, so a stalled
consumer stops the reading instead of filling memory.

    state    Response            Tick/SetTail/hints
    READING  deliver, maybe DONE  request more / poll the tail
    DONE     ignore               ignore
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._io import NodeAlive, NodeDead, Response, Send, SetTimer, Tick, describe_io
from ._messages import Data, GetLogletInfo, GetRecords, LogletInfo, Records, RequestHeader, Status, TrimGap
from ._types import LogletId, NodeId


@dataclass(frozen=True, slots=True)
class SetTail:
    tail: int
    final: bool = False


@dataclass(frozen=True, slots=True)
class Cached:
    """Committed records ``first``, ``first + 1``, ... (the shell vouches that they are), with
    the committed tail they came with: one step learns the tail and delivers what it can, so no
    log-server is asked for records already in hand."""

    first: int
    payloads: tuple[bytes, ...]
    tail: int = 0


@dataclass(frozen=True, slots=True)
class Consumed:
    """The consumer took ``records`` delivered records (trim gaps count as one)."""

    records: int


@dataclass(frozen=True, slots=True)
class Deliver:
    offset: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeliverTrimGap:
    offset: int
    to: int


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    request_timeout_ms: int = 1000
    poll_interval_ms: int = 200
    limit_bytes: int = 32 * 1024
    batch_records: int = 64
    max_unconsumed: int = 256


ReaderInput = Tick | Response | SetTail | Cached | Consumed | NodeDead | NodeAlive
ReaderOutput = Send | Deliver | DeliverTrimGap | SetTimer


def describe_reader_output(out: ReaderOutput) -> str:
    match out:
        case Deliver(offset=o, payload=p):
            return f"deliver {o}: {p.decode('utf-8', 'backslashreplace')}"
        case DeliverTrimGap(offset=o, to=t):
            return f"deliver trim-gap [{o},{t}]"
        case _:
            return describe_io(out)


class ReaderState(enum.Enum):
    READING = "reading"
    DONE = "done"


class ReadStream:
    def __init__(
        self,
        loglet: LogletId,
        nodeset: tuple[NodeId, ...],
        rng: random.Random,
        config: ReaderConfig | None = None,
        *,
        from_offset: int = 1,
        preferred: NodeId | None = None,
        now_ms: int = 0,
    ) -> None:
        others = sorted(n for n in nodeset if n != preferred)
        rng.shuffle(others)
        self._order = ([preferred] if preferred in nodeset else []) + others
        self._loglet = loglet
        self._config = config or ReaderConfig()
        self._now = now_ms
        self._next = from_offset
        self._tail = 1
        self._final = False
        self._state = ReaderState.READING
        self._dead: dict[NodeId, bool] = {}
        self._outstanding: tuple[int, NodeId, int] | None = None  # rid, node, deadline
        self._next_rid = 1
        self._poll_at = -1
        self._unconsumed = 0
        self._timer: int | None = None

    @property
    def next_offset(self) -> int:
        return self._next

    @property
    def known_tail(self) -> int:
        return self._tail

    @property
    def state(self) -> ReaderState:
        return self._state

    def step(self, inp: ReaderInput) -> list[ReaderOutput]:
        out: list[ReaderOutput] = []
        if isinstance(inp, Tick):
            self._now = max(self._now, inp.now_ms)
        elif isinstance(inp, SetTail):
            if inp.final:
                # The loglet's end as the chain records it. Log-servers may know a higher
                # "global tail" (a concurrent find-tail that lost the chain's CAS may have
                # repaired more), but nothing at or past the chain's end belongs to the log.
                if not self._final:
                    self._tail = inp.tail
                self._final = True
            else:
                self._learn(inp.tail)
            if self._next < self._tail:
                # A pushed tail is news of committed records: read them now, not at the next poll.
                self._poll_at = -1
        elif isinstance(inp, Cached):
            self._learn(inp.tail)
            self._take_cached(inp, out)
            if self._next < self._tail:
                self._poll_at = -1
        elif isinstance(inp, Consumed):
            self._unconsumed = max(0, self._unconsumed - inp.records)
        elif isinstance(inp, NodeDead | NodeAlive):
            self._dead[inp.node] = isinstance(inp, NodeDead)
        elif isinstance(inp, Response):
            self._on_response(inp, out)
        else:
            raise LocalProtocolError(f"read stream: no transition for {type(inp).__name__} in {self._state}")
        if self._final and self._next >= self._tail:
            self._state = ReaderState.DONE
        if self._state is ReaderState.READING:
            self._pump(out)
        at = None
        if self._state is ReaderState.READING:
            at = (
                self._outstanding[2]
                if self._outstanding
                else (self._poll_at if self._poll_at > self._now else None)
            )
        if at is not None and at != self._timer:
            out.append(SetTimer(at))
        self._timer = at
        return out

    def _learn(self, tail: int) -> None:
        if not self._final:
            self._tail = max(self._tail, tail)

    def _take_cached(self, inp: Cached, out: list[ReaderOutput]) -> None:
        skip = self._next - inp.first
        if skip < 0:
            return  # a gap before them: the log-servers fill it first
        for payload in inp.payloads[skip:]:
            if self._next >= self._tail or self._unconsumed >= self._config.max_unconsumed:
                break
            out.append(Deliver(self._next, payload))
            self._next += 1
            self._unconsumed += 1

    def _on_response(self, inp: Response, out: list[ReaderOutput]) -> None:
        if self._outstanding is None or self._outstanding[0] != inp.request_id:
            return
        self._outstanding = None
        m = inp.message
        if not isinstance(m, Records | LogletInfo) or m.header.status is not Status.OK:
            self._rotate()
            return
        self._learn(m.header.known_global_tail)
        if isinstance(m, LogletInfo):
            if self._next >= self._tail:
                self._poll_at = self._now + self._config.poll_interval_ms
            return
        start = self._next
        for e in m.entries:
            if self._next >= self._tail:
                break
            if isinstance(e, Data):
                if e.offset < self._next:
                    continue  # delivered from the cache while this request was out
                if e.offset != self._next:
                    break
                out.append(Deliver(e.offset, e.payload))
                self._next += 1
            elif isinstance(e, TrimGap):
                if e.to < self._next:
                    continue
                if e.offset > self._next:
                    break
                to = min(e.to, self._tail - 1)
                out.append(DeliverTrimGap(self._next, to))
                self._next = to + 1
            self._unconsumed += 1
        if self._next == start and self._next < self._tail:
            # This server has not stored them (yet): another member of the write quorum has.
            self._rotate(backoff=False)

    def _rotate(self, backoff: bool = True) -> None:
        self._order.append(self._order.pop(0))
        if backoff:
            self._poll_at = self._now + self._config.poll_interval_ms // 4

    def _pump(self, out: list[ReaderOutput]) -> None:
        if self._outstanding is not None:
            if self._outstanding[2] > self._now:
                return
            self._outstanding = None
            self._rotate()
        if self._poll_at > self._now:
            return
        credit = self._config.max_unconsumed - self._unconsumed
        if self._next < self._tail:
            # The consumer is behind: wait until a full request's worth of credit is back. Asking
            # as soon as one record was consumed would fetch one record per request.
            wanted = min(self._config.batch_records, self._tail - self._next, self._config.max_unconsumed)
            if credit < wanted:
                return
        for _ in range(len(self._order)):
            if not self._dead.get(self._order[0], False):
                break
            self._order.append(self._order.pop(0))
        node = self._order[0]
        rid = self._next_rid
        self._next_rid += 1
        hdr = RequestHeader(self._loglet, self._tail)
        if self._next < self._tail:
            to = min(self._tail - 1, self._next + min(self._config.batch_records, credit) - 1)
            msg: GetRecords | GetLogletInfo = GetRecords(hdr, self._next, to, self._config.limit_bytes)
        else:
            msg = GetLogletInfo(hdr)
        self._outstanding = (rid, node, self._now + self._config.request_timeout_ms)
        out.append(Send(node, rid, msg))

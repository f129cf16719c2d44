"""The ordered appender of one log on one node: Bifrost's append policy, as a core.

    step(NewBatch | Tail | BatchAcked | BatchRefused | Tick)
        -> [Enqueue | Resolved | Rejected | WantTail | SetTimer]

Every record is tagged with this appender's id and a per-record sequence number (see
`bifrost.record`), so a reader can tell a re-appended copy from a new record.

Order. Batches are enqueued into the tail loglet in call order, pipelined (no waiting between
them); the loglet commits them in that order. Each enqueue names the sequence number of the
previous batch this appender sent to the same loglet (`prev_seq`, 0 for its first): a remote
sequencer accepts a batch only right after that one, recognises a resent batch it already has
(it answers with the first result: exactly once within a segment) and refuses one that would
overtake a lost predecessor (OUT_OF_ORDER). So a lost request or reply never duplicates or
reorders within a segment.

Failures (a refusal of any pending batch by the current loglet):

    SEALED              wait for a newer tail (someone reconfigured); after `seal_grace_ms`
                        without one, reconfigure ourselves
    SEQUENCER_GONE,     reconfigure now: the loglet can never take these batches
    WRITE_UNAVAILABLE
    UNREACHABLE,        resend every unacknowledged batch, in order, to the same loglet after a
    OUT_OF_ORDER        backoff (the sequencer drops what it already has)

When a newer tail arrives, every unacknowledged batch is enqueued again, in order, into the new
loglet: at-least-once across segments (the old one may hold them too: repair keeps what an
f-majority stored). Those copies carry the same tags. A batch acknowledged by the old loglet
after that is resolved with the old LSN (the earliest copy); the later one is a duplicate. Such
a batch stays in the current loglet's chain of sequence numbers until that loglet acknowledges
it too (or the tail moves on): a resend must not skip it, or the sequencer, which may hold it,
would refuse every later batch as out of order, for good.

Each batch fails with `Rejected` once `deadline_ms` passed without an acknowledgement, or at
once when the log is sealed for good (an operator seal) or no tail can be had.

    state       NewBatch       BatchAcked/Refused     Tail                  Tick
    WRITING     enqueue        resolve / recover      switch if newer        retry, deadlines
    RECOVERING  queue          resolve / ignore       switch -> WRITING      grace, deadlines
    (no tail yet = RECOVERING with WantTail outstanding)
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from ._chain import Segment
from ._errors import LocalProtocolError
from ._io import SetTimer, Tick
from ._types import LogletParams


class RefusalReason(enum.Enum):
    SEALED = "sealed"
    SEQUENCER_GONE = "sequencer-gone"
    WRITE_UNAVAILABLE = "write-unavailable"
    UNREACHABLE = "unreachable"
    OUT_OF_ORDER = "out-of-order"


class RejectReason(enum.Enum):
    DEADLINE = "deadline"
    LOG_SEALED = "log-sealed"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class NewBatch:
    batch_id: int
    payloads: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Tail:
    """The chain's writable tail segment as this node knows it, at chain ``version``; None when
    the chain is sealed for good (``sealed``) or has no segment yet."""

    version: int
    segment: Segment | None
    sealed: bool = False


@dataclass(frozen=True, slots=True)
class BatchAcked:
    batch_id: int
    loglet_id: int
    last_offset: int


@dataclass(frozen=True, slots=True)
class BatchRefused:
    batch_id: int
    loglet_id: int
    reason: RefusalReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TailUnavailable:
    """The shell could not bring a tail for the last WantTail. ``fatal``: waiting cannot help
    (no writable nodeset): every pending batch fails now; else it asks again after a backoff."""

    detail: str
    fatal: bool = False


AppenderInput = NewBatch | Tail | BatchAcked | BatchRefused | TailUnavailable | Tick


@dataclass(frozen=True, slots=True)
class Enqueue:
    params: LogletParams
    batch_id: int
    first_seq: int
    prev_seq: int
    payloads: tuple[bytes, ...]
    """As given by the caller: the shell tags them (tags derive from ``first_seq``)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    batch_id: int
    first_lsn: int


@dataclass(frozen=True, slots=True)
class Rejected:
    batch_id: int
    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class WantTail:
    """Bring a tail newer than ``after_version`` (None: any); with ``reconfigure``, seal the
    current tail segment and start a new one if nobody else did."""

    after_version: int | None
    reconfigure: bool


AppenderOutput = Enqueue | Resolved | Rejected | WantTail | SetTimer


@dataclass(frozen=True, slots=True)
class AppenderConfig:
    deadline_ms: int = 30_000
    seal_grace_ms: int = 1000
    retry_min_ms: int = 10
    retry_max_ms: int = 500


class AppenderState(enum.Enum):
    WRITING = "writing"
    RECOVERING = "recovering"
    FAILED = "failed"


class _Batch:
    __slots__ = ("batch_id", "deadline", "enqueued_to", "first_seq", "payloads", "resolved")

    def __init__(self, batch_id: int, payloads: tuple[bytes, ...], first_seq: int, deadline: int) -> None:
        self.batch_id = batch_id
        self.payloads = payloads
        self.first_seq = first_seq
        self.deadline = deadline
        self.enqueued_to: int | None = None  # loglet id of the latest enqueue
        self.resolved = False  # acknowledged by an older loglet, still in flight to the current one


class Appender:
    def __init__(self, config: AppenderConfig | None = None, *, now_ms: int = 0) -> None:
        self._config = config or AppenderConfig()
        self._now = now_ms
        self._state = AppenderState.RECOVERING
        self._pending: deque[_Batch] = deque()
        self._next_seq = 1
        self._tail: Tail | None = None
        self._last_sent_seq = 0  # prev_seq of the next enqueue into the current loglet
        self._acked_seq: dict[int, int] = {}  # loglet id -> last sequence number it acknowledged
        self._segments: dict[int, Segment] = {}  # loglets with batches in flight, to map offsets
        self._retry_at: int | None = None
        self._retry_delay = self._config.retry_min_ms
        self._escalate_at: int | None = None  # after a SEALED: reconfigure ourselves from then
        self._want_at: int | None = None  # ask for a tail again at this time
        self._want_reconfigure = False
        self._wanting = False
        self._timer: int | None = None
        self._out: list[AppenderOutput] = []
        self.reappended_records = 0
        """Records enqueued again into a newer loglet after an older one failed them."""

    @property
    def state(self) -> AppenderState:
        return self._state

    @property
    def pending(self) -> int:
        """Batches not resolved yet."""
        return sum(1 for b in self._pending if not b.resolved)

    def step(self, inp: AppenderInput) -> list[AppenderOutput]:
        if self._state is AppenderState.FAILED:
            raise LocalProtocolError("appender is FAILED")
        self._out = []
        if isinstance(inp, Tick):
            self._now = max(self._now, inp.now_ms)
        elif isinstance(inp, NewBatch):
            self._on_new(inp)
        elif isinstance(inp, Tail):
            self._on_tail(inp)
        elif isinstance(inp, BatchAcked):
            self._on_acked(inp)
        elif isinstance(inp, BatchRefused):
            self._on_refused(inp)
        elif isinstance(inp, TailUnavailable):
            self._on_tail_unavailable(inp)
        else:
            self._state = AppenderState.FAILED
            raise LocalProtocolError(f"appender: unknown input {inp!r}")
        self._on_time()
        self._arm_timer()
        out, self._out = self._out, []
        return out

    # --- handlers ---

    def _on_new(self, inp: NewBatch) -> None:
        if not inp.payloads:
            raise LocalProtocolError("an append needs at least one record")
        b = _Batch(inp.batch_id, inp.payloads, self._next_seq, self._now + self._config.deadline_ms)
        self._next_seq += len(inp.payloads)
        self._pending.append(b)
        if self._state is AppenderState.WRITING:
            self._enqueue(b)
        elif not self._wanting and self._want_at is None:
            self._want(reconfigure=False)

    def _on_tail(self, inp: Tail) -> None:
        if self._tail is not None and inp.version <= self._tail.version:
            if self._wanting:
                # Nothing newer came: ask again (reconfiguring this time) once the grace ends.
                self._wanting = False
                if self._state is AppenderState.RECOVERING:
                    self._want_later(
                        max(self._escalate_at or 0, self._now + self._retry_delay), reconfigure=True
                    )
            return
        old = self._current_loglet()
        self._tail = inp
        self._wanting = False
        if inp.segment is None or inp.segment.params is None:
            self._state = AppenderState.RECOVERING
            if inp.sealed:
                self._reject_all(
                    RejectReason.LOG_SEALED,
                    f"the log is sealed at LSN {inp.segment.base_lsn if inp.segment else 0}",
                )
            elif self.pending:
                self._want_later(self._now + self._retry_delay, reconfigure=True)
            return
        self._want_at = None
        self._escalate_at = None
        if inp.segment.params.loglet_id != old:
            self._last_sent_seq = 0
            self._pending = deque(b for b in self._pending if not b.resolved)
            in_flight = {b.enqueued_to for b in self._pending}
            self._segments = {lid: seg for lid, seg in self._segments.items() if lid in in_flight}
            self._acked_seq = {lid: s for lid, s in self._acked_seq.items() if lid in in_flight}
            self._state = AppenderState.WRITING
            self._retry_at = None
            for b in self._pending:
                if b.enqueued_to is not None:
                    self.reappended_records += len(b.payloads)
                self._enqueue(b)
        elif self._state is AppenderState.RECOVERING:
            # Same loglet, still writable as far as the chain says: try it again.
            self._state = AppenderState.WRITING
            self._resend_all()

    def _on_acked(self, inp: BatchAcked) -> None:
        seg = self._segments.get(inp.loglet_id)
        for i, b in enumerate(self._pending):
            if b.batch_id == inp.batch_id:
                last_seq = b.first_seq + len(b.payloads) - 1
                self._acked_seq[inp.loglet_id] = max(self._acked_seq.get(inp.loglet_id, 0), last_seq)
                current = self._current_loglet()
                # Kept while the current loglet has yet to take it, however often the old one
                # acknowledges it (a duplicated reply): resends must still chain through it.
                if b.enqueued_to != current or inp.loglet_id == current:
                    del self._pending[i]
                if b.resolved:
                    break  # acknowledged before: nothing more to tell
                b.resolved = True
                if seg is not None:
                    first = inp.last_offset - len(b.payloads) + 1
                    self._out.append(Resolved(b.batch_id, seg.lsn(first)))
                else:  # cannot happen: segments of loglets with batches in flight are kept
                    raise LocalProtocolError(f"ack from loglet {inp.loglet_id} that no batch was sent to")
                break
        self._retry_delay = self._config.retry_min_ms

    def _on_refused(self, inp: BatchRefused) -> None:
        if inp.loglet_id != self._current_loglet() or not any(
            b.batch_id == inp.batch_id for b in self._pending
        ):
            return  # about a loglet we left already, or a batch already resolved
        if self._state is not AppenderState.WRITING:
            return  # already recovering: one refusal is enough
        match inp.reason:
            case RefusalReason.SEALED:
                self._state = AppenderState.RECOVERING
                self._escalate_at = self._now + self._config.seal_grace_ms
                self._want(reconfigure=False)
            case RefusalReason.SEQUENCER_GONE | RefusalReason.WRITE_UNAVAILABLE:
                self._state = AppenderState.RECOVERING
                self._want(reconfigure=True)
            case RefusalReason.UNREACHABLE | RefusalReason.OUT_OF_ORDER:
                if self._retry_at is None:
                    self._retry_at = self._now + self._retry_delay
                    self._retry_delay = min(self._retry_delay * 2, self._config.retry_max_ms)

    def _on_tail_unavailable(self, inp: TailUnavailable) -> None:
        self._wanting = False
        if inp.fatal:
            self._reject_all(RejectReason.UNAVAILABLE, inp.detail)
            return
        self._want_later(self._now + self._retry_delay, reconfigure=self._want_reconfigure)
        self._retry_delay = min(self._retry_delay * 2, self._config.retry_max_ms)

    def _on_time(self) -> None:
        now = self._now
        expired = [b for b in self._pending if b.deadline <= now and not b.resolved]
        for b in expired:
            self._pending.remove(b)
            self._out.append(
                Rejected(b.batch_id, RejectReason.DEADLINE, "no acknowledgement before the deadline")
            )
        if self._retry_at is not None and self._retry_at <= now:
            self._retry_at = None
            if self._state is AppenderState.WRITING:
                self._resend_all()
        if self._want_at is not None and self._want_at <= now and not self._wanting:
            self._want_at = None
            if self.pending:
                self._want(self._want_reconfigure)

    # --- internals ---

    def _current_loglet(self) -> int | None:
        if self._tail is None or self._tail.segment is None or self._tail.segment.params is None:
            return None
        return self._tail.segment.params.loglet_id

    def _want(self, reconfigure: bool) -> None:
        self._wanting = True
        self._want_reconfigure = reconfigure
        self._out.append(WantTail(self._tail.version if self._tail is not None else None, reconfigure))

    def _want_later(self, at: int, reconfigure: bool) -> None:
        self._want_at = at
        self._want_reconfigure = reconfigure

    def _reject_all(self, reason: RejectReason, detail: str) -> None:
        for b in self._pending:
            if not b.resolved:
                self._out.append(Rejected(b.batch_id, reason, detail))
        self._pending.clear()

    def _enqueue(self, b: _Batch) -> None:
        seg = self._tail.segment if self._tail is not None else None
        assert seg is not None and seg.params is not None
        self._segments[seg.params.loglet_id] = seg
        b.enqueued_to = seg.params.loglet_id
        self._out.append(Enqueue(seg.params, b.batch_id, b.first_seq, self._last_sent_seq, b.payloads))
        self._last_sent_seq = b.first_seq + len(b.payloads) - 1

    def _resend_all(self) -> None:
        """Everything unacknowledged again, in order, chained from the last batch this loglet
        acknowledged: the sequencer answers the ones it already has from memory."""
        current = self._current_loglet()
        self._last_sent_seq = self._acked_seq.get(current, 0) if current is not None else 0
        for b in self._pending:
            self._enqueue(b)

    def _arm_timer(self) -> None:
        times = [b.deadline for b in self._pending if not b.resolved]
        if self._retry_at is not None:
            times.append(self._retry_at)
        if self._want_at is not None:
            times.append(self._want_at)
        at = min((t for t in times if t > self._now), default=None)
        if at is not None and at != self._timer:
            self._out.append(SetTimer(at))
        self._timer = at

"""The log-server core: store rules, seal, trim and reads for every loglet on one node.

One `LogServer` per node; it keeps per-loglet state, loaded lazily from `LogStorage` the first
time a loglet is named (constructing a new `LogServer` over the same storage *is* recovery).

    step(Request(sender, request_id, message) | Persisted(token)) -> [Persist | Reply]

**Persist before you acknowledge.** A reply that vouches for durable state (Stored OK, Sealed,
Trimmed, and the Sealed refusal of a store that waited on a seal) is held back until the
`Persisted(token)` of the batch carrying its writes comes back — raft's `msgsAfterAppend`.
Refusals and reads vouch for nothing new and go out at once. Replies always describe the
*durable* state (local tail, seal flag), never the staged one.

**Group commit.** At most one `Persist` is outstanding. Writes accepted while it is being
synced accumulate and leave as one `Persist` when its `Persisted` arrives, so the shell does
one WriteBatch + fsync per group, whatever the request rate.

Store acceptance rules, in order (Restate's log-server, §3.3 of the reference):

1. no payloads, offset 0, or last offset past u32       -> MALFORMED
2. durably sealed and not an IGNORE_SEAL (repair) store  -> SEALED
3. writes disabled on this node                          -> DISABLED
4. sequencer differs from the first one ever seen       -> SEQUENCER_MISMATCH
5. first offset > max(staging local tail, known global tail)
   (a hole above the global tail)                        -> OUT_OF_BOUNDS
6. an offset already held here (durable or staged) with
   different bytes                                       -> CONFLICT
7. every offset already durable here, same bytes         -> OK at once (a retry or a repair)
8. seal being persisted: repair store                    -> SEALING (retry later)
                         normal store                    -> SEALED once the seal is durable
9. otherwise stage the offsets not held yet              -> OK once all of them are durable

Rule 6 is why an acknowledgement always vouches for the bytes the sender sent: a server never
answers OK for an offset that holds someone else's record.

**Storage faults.** A failed sync (`PersistFailed`: ENOSPC, EIO) leaves the disk in an unknown
state: the batch's waiters are answered DISABLED (nothing they sent is vouched for), and from
then on every request that writes (Store, Seal, Trim) is answered DISABLED at once, while reads
of durable state go on. A read that meets a storage error (`StorageError`: corruption) disables
reads too. `fault` says why. The shell recovers by building a new `LogServer` over the repaired
storage (construction is recovery).

Per-loglet modes (the seal is the only mode change; everything else is data):

    mode     Store          Seal                  Persisted(batch with the seal)
    OPEN     rules 1-8      -> SEALING (persist)  -
    SEALING  rules 1-8      join, reply on durable -> SEALED
    SEALED   rules 1-8      Sealed at once        -
    (GetLogletInfo, GetRecords, Trim, GetDigest are answered the same in every mode)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._messages import (
    Data,
    Digest,
    DigestKind,
    DigestRange,
    GetDigest,
    GetLogletInfo,
    GetRecords,
    LogletInfo,
    Records,
    ReplyMessage,
    RequestMessage,
    ResponseHeader,
    Seal,
    Sealed,
    Status,
    Store,
    Stored,
    StoreFlags,
    Trim,
    TrimGap,
    Trimmed,
    describe_message,
)
from ._storage import (
    LogStorage,
    PutKnownGlobalTail,
    PutLocalTail,
    PutRecords,
    PutSealed,
    PutSequencer,
    PutTrimPoint,
    StorageError,
    Write,
    describe_write,
)
from ._types import GenerationalNodeId, LogletId, NodeId

# --- inputs and outputs -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A request from a peer; `sender` is opaque to the core and comes back in the Reply."""

    sender: object
    request_id: int
    message: RequestMessage


@dataclass(frozen=True, slots=True)
class Persisted:
    """The shell synced the Persist with this token."""

    token: int


@dataclass(frozen=True, slots=True)
class PersistFailed:
    """The shell's write or sync of the Persist with this token failed."""

    token: int
    reason: str


LogServerInput = Request | Persisted | PersistFailed


@dataclass(frozen=True, slots=True)
class Persist:
    """Write all of `writes` in one batch with one fsync, then feed back Persisted(token)."""

    token: int
    writes: tuple[Write, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    to: object
    request_id: int
    message: ReplyMessage


LogServerOutput = Persist | Reply


def describe_log_server_output(out: LogServerOutput) -> str:
    if isinstance(out, Persist):
        return f"persist #{out.token}: " + ", ".join(describe_write(w) for w in out.writes)
    return f"reply to={out.to} rid={out.request_id}: {describe_message(out.message)}"


class LogletMode(enum.Enum):
    OPEN = "open"
    SEALING = "sealing"
    SEALED = "sealed"


# --- per-loglet state -------------------------------------------------------------------


class _Loglet:
    __slots__ = (
        "staged",
        "known_global_tail",
        "local_tail",
        "mode",
        "persisted_global_tail",
        "sequencer",
        "staging_local_tail",
        "staging_sequencer",
        "trim_point",
    )

    def __init__(self, storage: LogStorage, loglet_id: LogletId) -> None:
        st = storage.load_loglet(loglet_id)
        self.local_tail = st.local_tail
        self.staging_local_tail = st.local_tail
        self.mode = LogletMode.SEALED if st.sealed else LogletMode.OPEN
        self.sequencer: GenerationalNodeId | None = st.sequencer
        self.staging_sequencer: GenerationalNodeId | None = st.sequencer
        self.trim_point = st.trim_point
        self.known_global_tail = st.known_global_tail
        self.persisted_global_tail = st.known_global_tail
        # Records accepted but not yet durable, by offset: rule 6 compares against them too.
        self.staged: dict[int, bytes] = {}


class _WaitKind(enum.Enum):
    STORED = "stored"
    SEALED = "sealed"
    STORE_REFUSED_SEALED = "store-refused-sealed"
    TRIMMED = "trimmed"


@dataclass(frozen=True, slots=True)
class _Waiter:
    kind: _WaitKind
    loglet_id: LogletId
    to: object
    request_id: int


class LogServer:
    """Log-server state machine for all loglets of one node. See the module docstring."""

    def __init__(self, node: NodeId, storage: LogStorage, *, writes_disabled: bool = False) -> None:
        self._node = node
        self._storage = storage
        self._writes_disabled = writes_disabled
        self._loglets: dict[LogletId, _Loglet] = {}
        self._next_token = 1
        self._buffer: list[Write] = []
        self._buffer_waiters: list[_Waiter] = []
        self._inflight: tuple[int, tuple[Write, ...], list[_Waiter]] | None = None
        self._failed = False
        self._fault: str | None = None
        self._reads_failed = False
        self._out: list[LogServerOutput] = []

    # --- read-only introspection ---

    @property
    def node(self) -> NodeId:
        return self._node

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def fault(self) -> str | None:
        """Why this server refuses writes (and maybe reads), or None when it is healthy."""
        return self._fault

    def mode(self, loglet_id: LogletId) -> LogletMode:
        return self._loglet(loglet_id).mode

    def local_tail(self, loglet_id: LogletId) -> int:
        return self._loglet(loglet_id).local_tail

    def known_global_tail(self, loglet_id: LogletId) -> int:
        return self._loglet(loglet_id).known_global_tail

    def trim_point(self, loglet_id: LogletId) -> int:
        return self._loglet(loglet_id).trim_point

    # --- the funnel ---

    def step(self, inp: LogServerInput) -> list[LogServerOutput]:
        if self._failed:
            raise LocalProtocolError(f"log-server N{self._node} is FAILED; input {inp!r} refused")
        self._out = []
        try:
            if isinstance(inp, Persisted):
                self._on_persisted(inp.token)
            elif isinstance(inp, PersistFailed):
                self._on_persist_failed(inp)
            elif isinstance(inp, Request):
                self._on_request(inp)
            else:
                raise LocalProtocolError(f"unknown input {inp!r}")
        except LocalProtocolError:
            self._failed = True
            raise
        self._maybe_flush()
        out, self._out = self._out, []
        return out

    def _on_request(self, inp: Request) -> None:
        msg = inp.message
        if self._fault is not None and self._reads_failed:
            # Nothing it holds can be trusted: not even its tails are described.
            header = ResponseHeader(1, msg.header.known_global_tail, False, Status.DISABLED)
            return self._out.append(Reply(inp.sender, inp.request_id, _refusal(msg, header)))
        try:
            lg = self._loglet(msg.header.loglet_id)
            # The header's global tail is a fact about committed offsets: learn it first,
            # so a store may fill the slot right at the newly learned tail.
            lg.known_global_tail = max(lg.known_global_tail, msg.header.known_global_tail)
            if self._fault is not None and isinstance(msg, _WRITES):
                return self._reply(inp, _refusal(msg, self._header(lg, Status.DISABLED)))
            handler = _TABLE.get((lg.mode, type(msg)))
            if handler is None:
                raise LocalProtocolError(f"no transition for {type(msg).__name__} in {lg.mode}")
            handler(self, lg, inp)
        except StorageError as e:
            # Reads happen before any state changes in every handler: nothing was staged.
            self._fault = f"the store cannot be read: {e}"
            self._reads_failed = True
            header = ResponseHeader(1, msg.header.known_global_tail, False, Status.DISABLED)
            self._out.append(Reply(inp.sender, inp.request_id, _refusal(msg, header)))

    def _on_persist_failed(self, inp: PersistFailed) -> None:
        if self._inflight is None or self._inflight[0] != inp.token:
            raise LocalProtocolError(
                f"PersistFailed({inp.token}) but the outstanding batch is {self._inflight!r}"
            )
        self._fault = f"a write to the store failed: {inp.reason}"
        waiters = self._inflight[2] + self._buffer_waiters
        self._inflight = None
        self._buffer, self._buffer_waiters = [], []
        for w in waiters:
            lg = self._loglet(w.loglet_id)
            header = self._header(lg, Status.DISABLED)
            msg: ReplyMessage
            match w.kind:
                case _WaitKind.SEALED:
                    msg = Sealed(header)
                case _WaitKind.TRIMMED:
                    msg = Trimmed(header)
                case _:
                    msg = Stored(header)
            self._out.append(Reply(w.to, w.request_id, msg))

    # --- helpers ---

    def _loglet(self, loglet_id: LogletId) -> _Loglet:
        lg = self._loglets.get(loglet_id)
        if lg is None:
            lg = self._loglets[loglet_id] = _Loglet(self._storage, loglet_id)
        return lg

    def _header(self, lg: _Loglet, status: Status) -> ResponseHeader:
        return ResponseHeader(lg.local_tail, lg.known_global_tail, lg.mode is LogletMode.SEALED, status)

    def _reply(self, req: Request, msg: ReplyMessage) -> None:
        self._out.append(Reply(req.sender, req.request_id, msg))

    def _stage(self, writes: list[Write], waiter: _Waiter | None) -> None:
        self._buffer.extend(writes)
        if waiter is not None:
            self._buffer_waiters.append(waiter)

    def _after_everything_staged(self, waiter: _Waiter) -> None:
        """Release `waiter` once every write accepted so far is durable."""
        if self._buffer:
            self._buffer_waiters.append(waiter)
        elif self._inflight is not None:
            self._inflight[2].append(waiter)
        else:
            self._release(waiter)

    def _maybe_flush(self) -> None:
        if self._inflight is None and self._buffer and self._fault is None:
            token = self._next_token
            self._next_token += 1
            writes = tuple(self._buffer)
            self._inflight = (token, writes, self._buffer_waiters)
            self._buffer, self._buffer_waiters = [], []
            self._out.append(Persist(token, writes))

    def _on_persisted(self, token: int) -> None:
        if self._inflight is None or self._inflight[0] != token:
            raise LocalProtocolError(f"Persisted({token}) but the outstanding batch is {self._inflight!r}")
        _, writes, waiters = self._inflight
        self._inflight = None
        for w in writes:
            lg = self._loglet(w.loglet_id)
            match w:
                case PutRecords(first_offset=first, payloads=payloads):
                    staged = lg.staged
                    if len(staged) == len(payloads):
                        staged.clear()  # only these were staged (each offset is staged once)
                    else:
                        for off in range(first, first + len(payloads)):
                            staged.pop(off, None)
                case PutLocalTail(local_tail=t):
                    lg.local_tail = max(lg.local_tail, t)
                case PutSealed():
                    lg.mode = LogletMode.SEALED
                case PutSequencer(sequencer=s):
                    lg.sequencer = s
                case _:
                    pass
        for waiter in waiters:
            self._release(waiter)

    def _release(self, w: _Waiter) -> None:
        lg = self._loglet(w.loglet_id)
        msg: ReplyMessage
        match w.kind:
            case _WaitKind.STORED:
                msg = Stored(self._header(lg, Status.OK))
            case _WaitKind.SEALED:
                msg = Sealed(self._header(lg, Status.OK))
            case _WaitKind.STORE_REFUSED_SEALED:
                msg = Stored(self._header(lg, Status.SEALED))
            case _WaitKind.TRIMMED:
                msg = Trimmed(self._header(lg, Status.OK))
        self._out.append(Reply(w.to, w.request_id, msg))

    # --- handlers ---

    def _on_store(self, lg: _Loglet, req: Request) -> None:
        m = req.message
        assert isinstance(m, Store)
        lid = m.header.loglet_id
        repair = StoreFlags.IGNORE_SEAL in m.flags
        if m.is_malformed():
            return self._reply(req, Stored(self._header(lg, Status.MALFORMED)))
        if lg.mode is LogletMode.SEALED and not repair:
            return self._reply(req, Stored(self._header(lg, Status.SEALED)))
        if self._writes_disabled:
            return self._reply(req, Stored(self._header(lg, Status.DISABLED)))
        if lg.staging_sequencer is not None and lg.staging_sequencer != m.sequencer:
            return self._reply(req, Stored(self._header(lg, Status.SEQUENCER_MISMATCH)))
        if m.first_offset > max(lg.staging_local_tail, lg.known_global_tail):
            return self._reply(req, Stored(self._header(lg, Status.OUT_OF_BOUNDS)))
        keep_from = max(m.first_offset, lg.trim_point + 1)
        missing = self._missing(lg, lid, keep_from, m)
        if missing is None:
            return self._reply(req, Stored(self._header(lg, Status.CONFLICT)))
        if not missing:
            if not any(off in lg.staged for off in range(keep_from, m.last_offset + 1)):
                return self._reply(req, Stored(self._header(lg, Status.OK)))
            if lg.mode is not LogletMode.SEALING:
                # Same bytes already on their way to disk: acknowledge with them.
                return self._after_everything_staged(
                    _Waiter(_WaitKind.STORED, lid, req.sender, req.request_id)
                )
        if lg.mode is LogletMode.SEALING:
            if repair:
                return self._reply(req, Stored(self._header(lg, Status.SEALING)))
            return self._after_everything_staged(
                _Waiter(_WaitKind.STORE_REFUSED_SEALED, lid, req.sender, req.request_id)
            )
        writes: list[Write] = []
        for first, payloads in missing:
            writes.append(PutRecords(lid, first, payloads))
            lg.staged.update(zip(range(first, first + len(payloads)), payloads, strict=True))
        if m.last_offset + 1 > lg.staging_local_tail:
            lg.staging_local_tail = m.last_offset + 1
            writes.append(PutLocalTail(lid, lg.staging_local_tail))
        if lg.staging_sequencer is None:
            lg.staging_sequencer = m.sequencer
            writes.append(PutSequencer(lid, m.sequencer))
        if lg.known_global_tail > lg.persisted_global_tail:
            # Opportunistic: it rides along with data we sync anyway.
            lg.persisted_global_tail = lg.known_global_tail
            writes.append(PutKnownGlobalTail(lid, lg.known_global_tail))
        self._stage(writes, _Waiter(_WaitKind.STORED, lid, req.sender, req.request_id))

    def _missing(
        self, lg: _Loglet, lid: LogletId, lo: int, m: Store
    ) -> list[tuple[int, tuple[bytes, ...]]] | None:
        """The runs of [lo, last] not held here yet, as (first offset, payloads); None if an offset
        is held (durable or staged) with other bytes. Offsets at or above the staging local tail
        were never written, so a store that starts there (the sequencer's normal case) reads
        nothing."""
        last = m.last_offset
        if lo > last:
            return []
        if lo >= lg.staging_local_tail:
            # The sequencer's normal case: nothing at or above the staging local tail is held.
            return [(lo, m.payloads if lo == m.first_offset else m.payloads[lo - m.first_offset :])]
        held: dict[int, bytes] = {}
        if lo < lg.staging_local_tail:
            for off, payload in self._storage.read(lid, lo, min(last, lg.staging_local_tail - 1)):
                held[off] = payload
            for off in range(lo, min(last, lg.staging_local_tail - 1) + 1):
                staged = lg.staged.get(off)
                if staged is not None:
                    held[off] = staged
        runs: list[tuple[int, tuple[bytes, ...]]] = []
        run_start = -1
        for off in range(lo, last + 1):
            payload = m.payloads[off - m.first_offset]
            existing = held.get(off)
            if existing is not None:
                if existing != payload:
                    return None
                if run_start >= 0:
                    runs.append((run_start, m.payloads[run_start - m.first_offset : off - m.first_offset]))
                    run_start = -1
            elif run_start < 0:
                run_start = off
        if run_start >= 0:
            runs.append((run_start, m.payloads[run_start - m.first_offset :]))
        return runs

    def _on_seal_open(self, lg: _Loglet, req: Request) -> None:
        lid = req.message.header.loglet_id
        lg.mode = LogletMode.SEALING
        # The seal goes behind every store accepted so far: the sealed local tail includes them.
        self._stage([PutSealed(lid)], _Waiter(_WaitKind.SEALED, lid, req.sender, req.request_id))

    def _on_seal_join(self, lg: _Loglet, req: Request) -> None:
        lid = req.message.header.loglet_id
        self._after_everything_staged(_Waiter(_WaitKind.SEALED, lid, req.sender, req.request_id))

    def _on_seal_sealed(self, lg: _Loglet, req: Request) -> None:
        self._reply(req, Sealed(self._header(lg, Status.OK)))

    def _on_info(self, lg: _Loglet, req: Request) -> None:
        self._reply(req, LogletInfo(self._header(lg, Status.OK), lg.trim_point))

    def _on_get_records(self, lg: _Loglet, req: Request) -> None:
        m = req.message
        assert isinstance(m, GetRecords)
        hi = min(m.to_offset, lg.local_tail - 1)
        nxt = max(m.from_offset, 1)
        entries: list[Data | TrimGap] = []
        if nxt <= hi and nxt <= lg.trim_point:
            to = min(lg.trim_point, hi)
            entries.append(TrimGap(nxt, to))
            nxt = to + 1
        budget = m.limit_bytes
        if nxt <= hi:
            for off, payload in self._storage.read(m.header.loglet_id, nxt, hi):
                if off != nxt:
                    break  # a hole below the global tail: the reader gets it from another server
                if budget < len(payload) and any(isinstance(e, Data) for e in entries):
                    break
                entries.append(Data(off, payload))
                budget -= len(payload)
                nxt = off + 1
        self._reply(req, Records(self._header(lg, Status.OK), nxt, tuple(entries)))

    def _on_trim(self, lg: _Loglet, req: Request) -> None:
        m = req.message
        assert isinstance(m, Trim)
        lid = m.header.loglet_id
        # Only committed offsets may go: below the global tail, never the local tail (a local
        # tail can include records that no quorum acknowledged).
        point = min(m.trim_point, lg.known_global_tail - 1)
        if point <= lg.trim_point:
            return self._reply(req, Trimmed(self._header(lg, Status.OK)))
        # Readers see the gap at once; the reply waits for the deletion to be durable.
        lg.trim_point = point
        self._stage([PutTrimPoint(lid, point)], _Waiter(_WaitKind.TRIMMED, lid, req.sender, req.request_id))

    def _on_get_digest(self, lg: _Loglet, req: Request) -> None:
        m = req.message
        assert isinstance(m, GetDigest)
        hi = min(m.to_offset, lg.local_tail - 1)
        ranges: list[DigestRange] = []
        lo = m.from_offset
        if lo <= hi and lo <= lg.trim_point:
            ranges.append(DigestRange(lo, min(hi, lg.trim_point), DigestKind.TRIMMED))
            lo = lg.trim_point + 1
        if lo <= hi:
            start = prev = -1
            for off, _ in self._storage.read(m.header.loglet_id, lo, hi):
                if off != prev + 1:
                    if start >= 0:
                        ranges.append(DigestRange(start, prev, DigestKind.EXISTS))
                    start = off
                prev = off
            if start >= 0:
                ranges.append(DigestRange(start, prev, DigestKind.EXISTS))
        self._reply(req, Digest(self._header(lg, Status.OK), tuple(ranges)))


_WRITES = (Store, Seal, Trim)


def _refusal(msg: RequestMessage, header: ResponseHeader) -> ReplyMessage:
    """The reply of the request's own type, carrying only a refusal."""
    match msg:
        case Store():
            return Stored(header)
        case Seal():
            return Sealed(header)
        case GetLogletInfo():
            return LogletInfo(header, 0)
        case GetRecords(from_offset=f):
            return Records(header, f, ())
        case Trim():
            return Trimmed(header)
        case GetDigest():
            return Digest(header, ())
    raise TypeError(f"not a log-server request: {msg!r}")


_Handler = Callable[[LogServer, _Loglet, Request], None]

_ANY_MODE: dict[type, _Handler] = {
    GetLogletInfo: LogServer._on_info,
    GetRecords: LogServer._on_get_records,
    Trim: LogServer._on_trim,
    GetDigest: LogServer._on_get_digest,
    Store: LogServer._on_store,
}

_TABLE: dict[tuple[LogletMode, type], _Handler] = {
    **{(mode, t): h for mode in LogletMode for t, h in _ANY_MODE.items()},
    (LogletMode.OPEN, Seal): LogServer._on_seal_open,
    (LogletMode.SEALING, Seal): LogServer._on_seal_join,
    (LogletMode.SEALED, Seal): LogServer._on_seal_sealed,
}
"""(mode, request type) -> handler; the table in the module docstring, as data."""

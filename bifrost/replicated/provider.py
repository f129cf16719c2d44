"""Everything the replicated loglet needs on one node: the data-port network, this node's
log-server, the sequencers this node runs, and the loglets it has opened.

A sequencer runs only on the node named in the loglet's params *with that exact generation*;
a restarted node (new generation) never sequences its old loglets again: they get sealed and
replaced by reconfiguration.

Requests from the network come with the sender's authenticated identity, and what changes state
is checked against it: a ``Store`` that is not a repair must come from the sequencer it names;
a request may start a sequencer here only for params that the log's chain names as its tail
(``names_loglet``, which may refresh the chain from the metadata store), so a forged
``AppendRequest``/``GetTailRequest`` cannot plant a sequencer with made-up params. Refused
requests are dropped (the sender's own timeout handles them), counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from bifrost.core import RequestMessage, Store, StoreFlags, Trim
from bifrost.core._types import GenerationalNodeId, LogletParams
from bifrost.errors import LogletSealed, LogletWriteUnavailable
from bifrost.limits import TAIL_PUSH_BYTES
from bifrost.loglet import LogletProvider, TailState
from bifrost.policy import TAIL_WAIT_MS
from bifrost.replicated.log_server import LogServerService
from bifrost.replicated.loglet import ReplicatedLoglet
from bifrost.replicated.messages import (
    AppendRequest,
    AppendResponse,
    AppendStatus,
    GetTailRequest,
    GetTailResponse,
    TailUpdate,
    WaitForTailRequest,
)
from bifrost.replicated.runtime import Network, RequestHandler
from bifrost.replicated.sequencer import SequencerService, Settle

log = logging.getLogger(__name__)

_LOG_SERVER_REQUESTS = RequestMessage.__args__  # type: ignore[attr-defined]

Reply = Callable[[int, Any], None]

# Batches per appender and loglet whose results are kept to answer a resend. A resend only ever
# concerns batches still unacknowledged at the appender, which are bounded by its in-flight
# limit, so this only has to exceed that.
LEDGER_RESULTS = 4096


class _Outcome:
    """The outcome of one appender's batch, kept to answer a resend the same way."""

    __slots__ = ("done", "error", "last_offset", "waiting")

    def __init__(self) -> None:
        self.done = False
        self.last_offset = 0
        self.error: BaseException | None = None
        self.waiting: list[Settle] = []

    def settle(self, last_offset: int, error: BaseException | None) -> None:
        self.done, self.last_offset, self.error = True, last_offset, error
        waiting, self.waiting = self.waiting, []
        for then in waiting:
            then(last_offset, error)

    def then(self, settle: Settle) -> None:
        if self.done:
            settle(self.last_offset, self.error)
        else:
            self.waiting.append(settle)


class _Ledger:
    """One appender's batches on one loglet of this node's sequencer (see AppendRequest)."""

    __slots__ = ("last_seq", "results")

    def __init__(self) -> None:
        self.last_seq = 0
        self.results: OrderedDict[int, _Outcome] = OrderedDict()

    def admit(self, req: AppendRequest, seq: SequencerService) -> _Outcome | None:
        """This batch's outcome: a new one, or the earlier one for a resend; None when the batch
        would overtake one this node never got."""
        known = self.results.get(req.first_seq)
        if known is not None:
            return known
        if req.prev_seq != self.last_seq or req.first_seq <= self.last_seq:
            return None
        outcome = _Outcome()
        self.last_seq = req.first_seq + len(req.payloads) - 1
        self.results[req.first_seq] = outcome
        while len(self.results) > LEDGER_RESULTS:
            self.results.popitem(last=False)
        seq.append_then(req.payloads, outcome.settle)
        return outcome

    def why_not(self, req: AppendRequest) -> str:
        return f"batch {req.first_seq} follows {req.prev_seq}, but the last one taken is {self.last_seq}"


def _answer(
    reply: Reply, request_id: int, seq: SequencerService, last_offset: int, error: BaseException | None
) -> None:
    """Reply to a remote append with its outcome."""
    if error is None:
        reply(request_id, AppendResponse(AppendStatus.OK, last_offset, seq.known_global_tail))
    elif isinstance(error, LogletSealed):
        reply(request_id, AppendResponse(AppendStatus.SEALED, known_global_tail=error.tail))
    elif isinstance(error, LogletWriteUnavailable):
        reply(request_id, AppendResponse(AppendStatus.WRITE_UNAVAILABLE, message=str(error)))
    else:
        reply(request_id, AppendResponse(AppendStatus.UNAVAILABLE, message=str(error)))


class ReplicatedProvider(LogletProvider):
    def __init__(
        self,
        me: GenerationalNodeId,
        network: Network,
        log_server: LogServerService | None,
        is_dead: Callable[[int], bool] = lambda node: False,
        is_stale: Callable[[GenerationalNodeId], bool] = lambda node: False,
        on_other_request: RequestHandler | None = None,
        *,
        names_loglet: Callable[[LogletParams], Awaitable[bool]],
        non_authoritative: Callable[[int], frozenset[int]] = lambda loglet_id: frozenset(),
    ) -> None:
        self.me = me
        self.network = network
        self._log_server = log_server
        self.is_dead = is_dead
        # True when that process is known to be replaced by a newer generation of its node.
        self.is_stale = is_stale
        # Nodes whose stores may have lost records of a loglet: never evidence for its tail.
        self.non_authoritative = non_authoritative
        self._on_other_request = on_other_request
        # Whether the log's chain has these params as its tail segment (the only check that lets a
        # request from the network start a sequencer here).
        self._names_loglet = names_loglet
        self._verifying: dict[LogletParams, asyncio.Future[bool]] = {}
        self._sequencers: dict[int, SequencerService] = {}
        self._loglets: dict[int, ReplicatedLoglet] = {}
        # Tail updates waiting for a commit: their timeout timers, each cancelling its own wait.
        self._tail_waits: dict[asyncio.TimerHandle, Callable[[], None]] = {}
        # loglet id -> appender id -> what this node's sequencer took from that appender
        self._ledgers: dict[int, dict[int, _Ledger]] = {}
        self.duplicate_appends = 0
        """Records of resent batches answered from memory instead of being appended again."""

    def loglet(self, params: LogletParams) -> ReplicatedLoglet:
        loglet = self._loglets.get(params.loglet_id)
        if loglet is None or loglet.params != params:
            loglet = self._loglets[params.loglet_id] = ReplicatedLoglet(params, self)
        return loglet

    def sequencer(self, params: LogletParams) -> SequencerService | None:
        """This node's sequencer for the loglet, started on first use; None if not ours."""
        if params.sequencer != self.me:
            return None
        seq = self._sequencers.get(params.loglet_id)
        if seq is None:
            seq = self._sequencers[params.loglet_id] = SequencerService(params, self.network)
            for node in params.nodeset:
                if self.is_dead(node):
                    seq.hint(node, alive=False)
        return seq

    def node_liveness_changed(self, node: int, alive: bool) -> None:
        for seq in self._sequencers.values():
            if node in seq.params.nodeset:
                seq.hint(node, alive)

    def drop_sequencer(self, loglet_id: int) -> None:
        self._ledgers.pop(loglet_id, None)
        seq = self._sequencers.pop(loglet_id, None)
        if seq is not None:
            seq.close()

    @property
    def sequencers(self) -> dict[int, SequencerService]:
        return self._sequencers

    # --- requests from the network ---

    def handle_request(self, peer: GenerationalNodeId, reply: Reply, request_id: int, message: Any) -> None:
        if isinstance(message, _LOG_SERVER_REQUESTS):
            if isinstance(message, Trim) and (seq := self._sequencers.get(message.header.loglet_id)):
                seq.cache.trim(message.trim_point)  # a trim run on another node
            if (
                isinstance(message, Store)
                and StoreFlags.REPAIR not in message.flags
                and message.sequencer != peer
            ):
                self.network.refusals.count(
                    "store-not-from-its-sequencer", f"{peer} sent a Store naming {message.sequencer}"
                )
                return
            if self._log_server is not None:
                self._log_server.handle(reply, request_id, message)
        elif isinstance(message, AppendRequest):
            # The hot path: this node already runs the loglet's sequencer.
            seq = self._sequencers.get(message.params.loglet_id)
            if seq is not None and message.params.sequencer == self.me:
                self._remote_append(seq if seq.params == message.params else None, reply, request_id, message)
                return
            self._remote_sequencer(
                message.params,
                lambda seq: self._remote_append(seq, reply, request_id, message),
                lambda why: reply(request_id, AppendResponse(AppendStatus.UNAVAILABLE, message=why)),
            )
        elif isinstance(message, WaitForTailRequest):
            # No answer when the params cannot be checked now: the waiter's timeout makes it retry.
            self._remote_sequencer(
                message.params,
                lambda seq: self._wait_for_tail(seq, reply, request_id, message),
                lambda why: None,
            )
        elif isinstance(message, GetTailRequest):
            # No answer when the params cannot be checked now: the asker's timeout makes it retry.
            self._remote_sequencer(
                message.params, lambda seq: self._remote_tail(seq, reply, request_id), lambda why: None
            )
        elif self._on_other_request is not None:
            self._on_other_request(peer, reply, request_id, message)

    def _remote_sequencer(
        self,
        params: LogletParams,
        then: Callable[[SequencerService | None], None],
        unavailable: Callable[[str], None],
    ) -> None:
        """Call ``then`` with this node's sequencer for ``params`` (None if it is not ours), starting
        it only if the log's chain names these params as its tail; ``unavailable`` when the chain
        cannot be read now (not a refusal: the sender should retry, not reconfigure)."""
        if params.sequencer != self.me:
            then(None)
            return
        seq = self._sequencers.get(params.loglet_id)
        if seq is not None:
            then(seq if seq.params == params else None)
            return
        pending = self._verifying.get(params)
        if pending is None:
            pending = self._verifying[params] = asyncio.ensure_future(self._names_loglet(params))
            pending.add_done_callback(lambda f: self._verifying.pop(params, None))

        def verified(f: asyncio.Future[bool]) -> None:
            if f.cancelled():
                return
            if f.exception() is not None:
                log.info(
                    "cannot check loglet params", extra={"loglet": str(params), "error": repr(f.exception())}
                )
                unavailable(f"cannot check loglet {params} against its chain now: {f.exception()}")
            elif not f.result():
                self.network.refusals.count(
                    "loglet-not-in-chain", f"{params} is not the tail of its log's chain"
                )
                then(None)
            else:
                then(self.sequencer(params))

        pending.add_done_callback(verified)

    def _remote_tail(self, seq: SequencerService | None, reply: Reply, request_id: int) -> None:
        # A sequencer that was never started here has an empty loglet: starting it is exact.
        if seq is None:
            reply(request_id, GetTailResponse(found=False))
        else:
            state = seq.tail_state
            reply(request_id, GetTailResponse(True, state.offset, state.sealed))

    def _remote_append(
        self, seq: SequencerService | None, reply: Reply, request_id: int, req: AppendRequest
    ) -> None:
        if seq is None:
            reply(
                request_id,
                AppendResponse(AppendStatus.NOT_SEQUENCER, message=f"{self.me} does not sequence it"),
            )
            return
        answer = partial(_answer, reply, request_id, seq)
        if req.appender == 0:
            seq.append_then(req.payloads, answer)
            return
        ledger = self._ledgers.setdefault(req.params.loglet_id, {}).setdefault(req.appender, _Ledger())
        if req.first_seq in ledger.results:
            self.duplicate_appends += len(req.payloads)
        outcome = ledger.admit(req, seq)
        if outcome is None:
            reply(request_id, AppendResponse(AppendStatus.OUT_OF_ORDER, message=ledger.why_not(req)))
            return
        outcome.then(answer)

    def _wait_for_tail(
        self, seq: SequencerService | None, reply: Reply, request_id: int, req: WaitForTailRequest
    ) -> None:
        if seq is None:
            reply(request_id, TailUpdate(found=False))
            return
        state = seq.tail.state
        if state.offset > req.known_tail or state.sealed:
            reply(request_id, _tail_update(seq, req, state))
            return

        def answer() -> None:
            # On the change or at the timeout, whichever comes first; the other is cancelled.
            timer.cancel()
            self._tail_waits.pop(timer, lambda: None)()
            reply(request_id, _tail_update(seq, req, seq.tail.state))

        timer = asyncio.get_running_loop().call_later(min(req.max_wait_ms, TAIL_WAIT_MS) / 1000, answer)
        self._tail_waits[timer] = seq.tail.call_on_change(answer)

    async def close(self) -> None:
        for pending in list(self._verifying.values()):
            pending.cancel()
        for timer, cancel in self._tail_waits.items():
            timer.cancel()
            cancel()
        self._tail_waits.clear()
        for loglet_id in list(self._sequencers):
            self.drop_sequencer(loglet_id)


def _tail_update(seq: SequencerService, req: WaitForTailRequest, state: TailState) -> TailUpdate:
    if not req.with_records:
        return TailUpdate(True, state.offset, state.sealed)
    first = req.known_tail
    return TailUpdate(
        True, state.offset, state.sealed, first, seq.cache.get(first, state.offset, TAIL_PUSH_BYTES)
    )

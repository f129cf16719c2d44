"""Everything the replicated loglet needs on one node: the data-port network, this node's
log-server, the sequencers this node runs, and the loglets it has opened.

A sequencer runs only on the node named in the loglet's params *with that exact generation*;
a restarted node (new generation) never sequences its old loglets again: they get sealed and
replaced by reconfiguration.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from bifrost.core import RequestMessage
from bifrost.core._types import GenerationalNodeId, LogletParams
from bifrost.errors import LogletSealed, LogletWriteUnavailable
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
from bifrost.replicated.runtime import Network
from bifrost.replicated.sequencer import SequencerService

log = logging.getLogger(__name__)

_LOG_SERVER_REQUESTS = RequestMessage.__args__  # type: ignore[attr-defined]

# Batches per appender and loglet whose results are kept to answer a resend. A resend only ever
# concerns batches still unacknowledged at the appender, which are bounded by its in-flight
# limit, so this only has to exceed that.
LEDGER_RESULTS = 4096


class _Ledger:
    """One appender's batches on one loglet of this node's sequencer (see AppendRequest)."""

    __slots__ = ("last_seq", "results")

    def __init__(self) -> None:
        self.last_seq = 0
        self.results: OrderedDict[int, asyncio.Future[int]] = OrderedDict()

    def admit(self, req: AppendRequest, seq: SequencerService) -> asyncio.Future[int] | None:
        """The future of this batch's append: a new one, or the earlier one for a resend; None
        when the batch would overtake one this node never got."""
        known = self.results.get(req.first_seq)
        if known is not None:
            return known
        if req.prev_seq != self.last_seq or req.first_seq <= self.last_seq:
            return None
        fut = seq.append(req.payloads)
        self.last_seq = req.first_seq + len(req.payloads) - 1
        self.results[req.first_seq] = fut
        while len(self.results) > LEDGER_RESULTS:
            self.results.popitem(last=False)
        return fut

    def why_not(self, req: AppendRequest) -> str:
        return f"batch {req.first_seq} follows {req.prev_seq}, but the last one taken is {self.last_seq}"


class ReplicatedProvider:
    def __init__(
        self,
        me: GenerationalNodeId,
        network: Network,
        log_server: LogServerService | None,
        is_dead: Callable[[int], bool] = lambda node: False,
        is_stale: Callable[[GenerationalNodeId], bool] = lambda node: False,
        on_other_request: Callable[[Callable[[int, Any], None], int, Any], None] | None = None,
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
        self._sequencers: dict[int, SequencerService] = {}
        self._loglets: dict[int, ReplicatedLoglet] = {}
        self._tail_waits: set[asyncio.Task[None]] = set()
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

    def handle_request(self, reply: Callable[[int, Any], None], request_id: int, message: Any) -> None:
        if isinstance(message, _LOG_SERVER_REQUESTS):
            if self._log_server is not None:
                self._log_server.handle(reply, request_id, message)
        elif isinstance(message, AppendRequest):
            self._remote_append(reply, request_id, message)
        elif isinstance(message, WaitForTailRequest):
            self._wait_for_tail(reply, request_id, message)
        elif isinstance(message, GetTailRequest):
            # A sequencer that was never started here has an empty loglet: starting it is exact.
            seq = self.sequencer(message.params)
            if seq is None:
                reply(request_id, GetTailResponse(found=False))
            else:
                state = seq.tail_state
                reply(request_id, GetTailResponse(True, state.offset, state.sealed))
        elif self._on_other_request is not None:
            self._on_other_request(reply, request_id, message)

    def _remote_append(self, reply: Callable[[int, Any], None], request_id: int, req: AppendRequest) -> None:
        seq = self.sequencer(req.params)
        if seq is None:
            reply(
                request_id,
                AppendResponse(AppendStatus.NOT_SEQUENCER, message=f"{self.me} does not sequence it"),
            )
            return
        fut: asyncio.Future[int] | None
        if req.appender == 0:
            fut = seq.append(req.payloads)
        else:
            ledger = self._ledgers.setdefault(req.params.loglet_id, {}).setdefault(req.appender, _Ledger())
            if req.first_seq in ledger.results:
                self.duplicate_appends += len(req.payloads)
            fut = ledger.admit(req, seq)
            if fut is None:
                reply(request_id, AppendResponse(AppendStatus.OUT_OF_ORDER, message=ledger.why_not(req)))
                return

        def done(f: asyncio.Future[int]) -> None:
            exc = f.exception()
            if exc is None:
                reply(request_id, AppendResponse(AppendStatus.OK, f.result(), seq.tail_state.offset))
            elif isinstance(exc, LogletSealed):
                reply(request_id, AppendResponse(AppendStatus.SEALED, known_global_tail=exc.tail))
            elif isinstance(exc, LogletWriteUnavailable):
                reply(request_id, AppendResponse(AppendStatus.WRITE_UNAVAILABLE, message=str(exc)))
            else:
                reply(request_id, AppendResponse(AppendStatus.UNAVAILABLE, message=str(exc)))

        fut.add_done_callback(done)

    def _wait_for_tail(self, reply: Callable[[int, Any], None], request_id: int, req: WaitForTailRequest) -> None:
        seq = self.sequencer(req.params)
        if seq is None:
            reply(request_id, TailUpdate(found=False))
            return
        state = seq.tail.state
        if state.offset > req.known_tail or state.sealed:
            reply(request_id, TailUpdate(True, state.offset, state.sealed))
            return

        async def answer_on_change() -> None:
            try:
                await asyncio.wait_for(seq.tail.wait_for_change(state), min(req.max_wait_ms, TAIL_WAIT_MS) / 1000)
            except TimeoutError:
                pass
            now = seq.tail.state
            reply(request_id, TailUpdate(True, now.offset, now.sealed))

        task = asyncio.ensure_future(answer_on_change())
        self._tail_waits.add(task)
        task.add_done_callback(self._tail_waits.discard)

    async def close(self) -> None:
        for task in self._tail_waits:
            task.cancel()
        for loglet_id in list(self._sequencers):
            self.drop_sequencer(loglet_id)

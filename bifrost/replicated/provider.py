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
from collections.abc import Awaitable, Callable
from typing import Any

from bifrost.core import RequestMessage, Store, StoreFlags
from bifrost.core._types import GenerationalNodeId, LogletParams
from bifrost.errors import LogletSealed
from bifrost.replicated.log_server import LogServerService
from bifrost.replicated.loglet import ReplicatedLoglet
from bifrost.replicated.messages import (
    AppendRequest,
    AppendResponse,
    AppendStatus,
    GetTailRequest,
    GetTailResponse,
)
from bifrost.replicated.runtime import Network, RequestHandler
from bifrost.replicated.sequencer import SequencerService

log = logging.getLogger(__name__)

_LOG_SERVER_REQUESTS = RequestMessage.__args__  # type: ignore[attr-defined]

Reply = Callable[[int, Any], None]


class ReplicatedProvider:
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
    ) -> None:
        self.me = me
        self.network = network
        self._log_server = log_server
        self.is_dead = is_dead
        # True when that process is known to be replaced by a newer generation of its node.
        self.is_stale = is_stale
        self._on_other_request = on_other_request
        # Whether the log's chain has these params as its tail segment (the only check that lets a
        # request from the network start a sequencer here).
        self._names_loglet = names_loglet
        self._verifying: dict[LogletParams, asyncio.Future[bool]] = {}
        self._sequencers: dict[int, SequencerService] = {}
        self._loglets: dict[int, ReplicatedLoglet] = {}

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
        seq = self._sequencers.pop(loglet_id, None)
        if seq is not None:
            seq.close()

    @property
    def sequencers(self) -> dict[int, SequencerService]:
        return self._sequencers

    # --- requests from the network ---

    def handle_request(self, peer: GenerationalNodeId, reply: Reply, request_id: int, message: Any) -> None:
        if isinstance(message, _LOG_SERVER_REQUESTS):
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
            self._remote_sequencer(
                message.params,
                lambda seq: self._remote_append(seq, reply, request_id, message),
                lambda why: reply(request_id, AppendResponse(AppendStatus.UNAVAILABLE, message=why)),
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
                log.info("cannot check loglet params", extra={"loglet": str(params), "error": repr(f.exception())})
                unavailable(f"cannot check loglet {params} against its chain now: {f.exception()}")
            elif not f.result():
                self.network.refusals.count("loglet-not-in-chain", f"{params} is not the tail of its log's chain")
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
        fut = seq.append(req.payloads)

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is None:
                reply(request_id, AppendResponse(AppendStatus.OK, f.result(), seq.tail_state.offset))
            elif isinstance(exc, LogletSealed):
                reply(request_id, AppendResponse(AppendStatus.SEALED, known_global_tail=exc.tail))
            else:
                reply(request_id, AppendResponse(AppendStatus.UNAVAILABLE, message=str(exc)))

        fut.add_done_callback(done)

    async def close(self) -> None:
        for pending in list(self._verifying.values()):
            pending.cancel()
        for loglet_id in list(self._sequencers):
            self.drop_sequencer(loglet_id)

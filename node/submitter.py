"""The ingress's way into the partitions: append an invocation to its partition's log, then wait
for the partition leader's answer, wherever that leader runs.

A call or send gets this node's sink (node id, generation, a request number) and is appended as
an `Invoke` to the log of the partition its id belongs to; any node can append to any log. The
leader answers once it applied the record (a send: accepted or a duplicate) or once the
invocation ended (a call: its result), over the data port as a `NodeNotice` (this module's
`IngressReply`), or in-process when it runs here.

An answer can be lost: the leader that applied the record may step down before it dispatched
the reply. So a request that has no answer after a while appends the same `Invoke` again: same
invocation id, same sink. The state machine treats it as the duplicate it is (it attaches the
sink to the running invocation, or answers from the retained result), so the request is never
run twice, whatever the number of resends.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from bifrost.core._types import GenerationalNodeId
from node.ingress import CallOutcome, SendOutcome, SubmitUnavailable
from node.ingress_rules import Rejection
from processor.core import (
    Envelope,
    IngressRejected,
    IngressResponse,
    IngressSink,
    IngressSubmitted,
    Invoke,
    Result,
    ServiceInvocation,
    encode_envelope,
)
from processor.ids import partition_for_key

log = logging.getLogger(__name__)

TOPIC = "ingress-reply"
# A request without an answer this long appends its Invoke again (a duplicate, harmless).
RESEND_AFTER_S = (2.0, 4.0, 8.0, 16.0, 30.0)


class IngressReply(msgspec.Struct, frozen=True, array_like=True):
    """A partition leader's answer to one ingress request (see the module docstring)."""

    generation: int
    request_id: int
    invocation_id: bytes
    result: Result | None = None
    expires_at_ms: int = 0
    submitted: bool = False
    previously_accepted: bool = False
    execution_time_ms: int = 0
    rejection_code: int = 0
    rejection_message: str = ""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(IngressReply)


def reply_of(action: IngressResponse | IngressSubmitted | IngressRejected) -> tuple[int, IngressReply]:
    """(the node to send it to, the reply) for a leader's ingress action."""
    sink = action.sink
    match action:
        case IngressResponse(invocation_id=inv, result=result, expires_at_ms=expires):
            return sink.node, IngressReply(sink.generation, sink.request_id, inv, result=result, expires_at_ms=expires)
        case IngressSubmitted(invocation_id=inv, previously_accepted=again, execution_time_ms=at):
            return sink.node, IngressReply(
                sink.generation, sink.request_id, inv, submitted=True, previously_accepted=again, execution_time_ms=at
            )
        case IngressRejected(invocation_id=inv, failure_code=code, message=message):
            return sink.node, IngressReply(
                sink.generation, sink.request_id, inv, rejection_code=code, rejection_message=message
            )
    raise TypeError(action)


def encode_reply(reply: IngressReply) -> bytes:
    return _ENCODER.encode(reply)


class IngressSubmitter:
    """`node.ingress.Submitter` over the partitions' logs (see the module docstring)."""

    def __init__(
        self,
        me: GenerationalNodeId,
        append: Callable[[int, Sequence[bytes]], Awaitable[int]],
        num_partitions: Callable[[], int],
        wall_clock_ms: Callable[[], float],
    ) -> None:
        self._me = me
        self._append = append
        self._num_partitions = num_partitions
        self._now = wall_clock_ms
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[IngressReply]] = {}

    async def call(self, invocation: ServiceInvocation) -> CallOutcome:
        rid = next(self._ids)
        sink = IngressSink(self._me.node, self._me.generation, rid)
        reply = await self._submit(rid, msgspec.structs.replace(invocation, response_sink=sink))
        if reply.rejection_code:
            return CallOutcome(reply.invocation_id, rejection=Rejection(reply.rejection_code, reply.rejection_message))
        return CallOutcome(reply.invocation_id, result=reply.result or Result(), expires_at_ms=reply.expires_at_ms)

    async def send(self, invocation: ServiceInvocation) -> SendOutcome:
        rid = next(self._ids)
        sink = IngressSink(self._me.node, self._me.generation, rid)
        reply = await self._submit(rid, msgspec.structs.replace(invocation, submit_sink=sink))
        return SendOutcome(reply.invocation_id, reply.previously_accepted, reply.execution_time_ms)

    def on_reply(self, body: bytes) -> None:
        try:
            reply = _DECODER.decode(body)
        except msgspec.DecodeError as e:
            log.warning("ignoring a malformed ingress reply", extra={"error": str(e)})
            return
        self.deliver(reply)

    def deliver(self, reply: IngressReply) -> None:
        if reply.generation != self._me.generation:
            return  # for an earlier incarnation of this node: its requests are gone
        fut = self._pending.get(reply.request_id)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def _submit(self, rid: int, invocation: ServiceInvocation) -> IngressReply:
        fut: asyncio.Future[IngressReply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        partition = partition_for_key(int.from_bytes(invocation.invocation_id[:8], "big"), self._num_partitions())
        record = encode_envelope(Envelope(Invoke(invocation), int(self._now())))
        try:
            for wait in itertools.chain(RESEND_AFTER_S, itertools.repeat(RESEND_AFTER_S[-1])):
                try:
                    await self._append(partition, [record])
                except Exception as e:
                    raise SubmitUnavailable(f"partition {partition}'s log is unavailable: {e}") from None
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), wait)
                except TimeoutError:
                    log.info("no answer yet: appending the invocation again", extra={"partition": partition})
            raise AssertionError("unreachable: the resends never end")
        finally:
            self._pending.pop(rid, None)

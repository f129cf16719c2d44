"""The ingress's way into the partitions: append an invocation to its partition's log, then wait
for the partition leader's answer, wherever that leader runs.

A call or send gets this node's sink (node id, generation, a request number) and is appended as
an `Invoke` to the log of the partition its id belongs to; any node can append to any log. The
leader answers once it applied the record (a send: accepted or a duplicate) or once the
invocation ended (a call: its result), over the data port as a `NodeNotice` (this module's
`IngressReply`), or in-process when it runs here.

An answer can be lost: the leader that applied the record may step down before it dispatched
the reply, or the notice may not get through. The Invoke is never appended twice -- once the
append returned it is in the log and runs exactly once, while a second Invoke of an invocation
that ended and was not retained would run it again. Instead:

- a call that has no answer after a while appends an `Attach` (same invocation, same sink): the
  leader answers from the retained result, adds the sink to the running invocation, or says the
  result is gone (it ended and was not retained, and its first answer was lost);
- a send that has no acknowledgement after a while is answered from the append itself: the
  invocation is in the log, so it is accepted (a lost "previously accepted" shows as accepted).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from bifrost.core._types import GenerationalNodeId
from node.ingress import CallOutcome, ControlRefused, SendOutcome, SubmitUnavailable
from node.ingress_rules import Rejection
from processor.core import (
    CANCEL_SIGNAL,
    Attach,
    Command,
    Envelope,
    IngressRejected,
    IngressResponse,
    IngressSink,
    IngressSubmitted,
    InvocationSignal,
    Invoke,
    Kill,
    Output,
    Pause,
    Purge,
    Result,
    Resume,
    ServiceInvocation,
    Signal,
    encode_envelope,
)
from processor.ids import partition_for_key

log = logging.getLogger(__name__)

TOPIC = "ingress-reply"
# A call without an answer this long asks again with an Attach (harmless, and cheap: no payload).
ASK_AGAIN_AFTER_S = (2.0, 4.0, 8.0, 16.0, 30.0)
# A send's acknowledgement (or an admin action's outcome) is waited for this long, then the
# append alone answers it.
SEND_ACK_WAIT_S = 5.0


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
            return sink.node, IngressReply(
                sink.generation, sink.request_id, inv, result=result, expires_at_ms=expires
            )
        case IngressSubmitted(invocation_id=inv, previously_accepted=again, execution_time_ms=at):
            return sink.node, IngressReply(
                sink.generation,
                sink.request_id,
                inv,
                submitted=True,
                previously_accepted=again,
                execution_time_ms=at,
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
        self._closed = False

    async def call(self, invocation: ServiceInvocation) -> CallOutcome:
        rid, sink = self._new_request()
        invocation = msgspec.structs.replace(invocation, response_sink=sink)
        return _outcome(await self._ask(rid, Invoke(invocation), Attach(invocation.invocation_id, sink)))

    async def send(self, invocation: ServiceInvocation) -> SendOutcome:
        rid, sink = self._new_request()
        invocation = msgspec.structs.replace(invocation, submit_sink=sink)
        reply = await self._ask(rid, Invoke(invocation), None)
        return SendOutcome(reply.invocation_id, reply.previously_accepted, reply.execution_time_ms)

    async def attach(self, invocation_id: bytes) -> CallOutcome:
        rid, sink = self._new_request()
        command = Attach(invocation_id, sink)
        return _outcome(await self._ask(rid, command, command))

    async def output(self, invocation_id: bytes) -> CallOutcome:
        rid, sink = self._new_request()
        command = Output(invocation_id, sink)
        return _outcome(await self._ask(rid, command, command))

    async def signal(self, signal: InvocationSignal) -> None:
        await self._append_to_owner(signal.target, Signal(signal))

    # The admin API's actions: each returns the partition's `AdminOutcome`, or None when no
    # answer came in time (the command is in the log all the same), or raises ControlRefused.

    async def cancel(self, invocation_id: bytes) -> bytes | None:
        return await self._control(lambda sink: Signal(InvocationSignal(invocation_id, CANCEL_SIGNAL), sink))

    async def kill(self, invocation_id: bytes) -> bytes | None:
        return await self._control(lambda sink: Kill(invocation_id, sink))

    async def purge(self, invocation_id: bytes) -> bytes | None:
        return await self._control(lambda sink: Purge(invocation_id, sink))

    async def pause(self, invocation_id: bytes) -> bytes | None:
        return await self._control(lambda sink: Pause(invocation_id, sink=sink))

    async def resume(self, invocation_id: bytes, deployment_id: str | None) -> bytes | None:
        return await self._control(lambda sink: Resume(invocation_id, deployment_id, sink))

    async def _control(self, command_for: Callable[[IngressSink], Command]) -> bytes | None:
        rid, sink = self._new_request()
        # Unanswered in time, _ask answers from the append: a reply without a result (None).
        reply = await self._ask(rid, command_for(sink), None)
        if reply.rejection_code:
            raise ControlRefused(reply.rejection_code, reply.rejection_message)
        return None if reply.result is None else reply.result.value

    async def _append_to_owner(self, invocation_id: bytes, command: Command) -> None:
        """Append a command that needs no answer; returns once it is in the log."""
        if self._closed:
            raise SubmitUnavailable("the node is shutting down")
        await self._append_one(self._partition_of(invocation_id), command)

    def close(self) -> None:
        """The node is stopping: every waiting request is told so (its invocation still runs)."""
        self._closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(SubmitUnavailable("the node is shutting down; the invocation was accepted"))

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

    def _new_request(self) -> tuple[int, IngressSink]:
        rid = next(self._ids)
        return rid, IngressSink(self._me.node, self._me.generation, rid)

    def _partition_of(self, invocation_id: bytes) -> int:
        return partition_for_key(int.from_bytes(invocation_id[:8], "big"), self._num_partitions())

    async def _ask(self, rid: int, first: Command, again: Command | None) -> IngressReply:
        """Append ``first`` and wait for the answer to request ``rid``. Without an answer for a
        while, append ``again`` (an Attach or an Output: harmless repeats); with no ``again``
        (a send, an admin action), the append itself answers: the command is in the log, so a
        send is accepted."""
        if self._closed:
            raise SubmitUnavailable("the node is shutting down")
        fut: asyncio.Future[IngressReply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        inv_id = _invocation_of(first)
        partition = self._partition_of(inv_id)
        try:
            await self._append_one(partition, first)
            if again is None:
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), SEND_ACK_WAIT_S)
                except TimeoutError:
                    return IngressReply(self._me.generation, rid, inv_id, submitted=True)
            for wait in itertools.chain(ASK_AGAIN_AFTER_S, itertools.repeat(ASK_AGAIN_AFTER_S[-1])):
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), wait)
                except TimeoutError:
                    log.info("no answer yet: asking the partition again", extra={"partition": partition})
                await self._append_one(partition, again)
            raise AssertionError("unreachable: the questions never end")
        finally:
            self._pending.pop(rid, None)

    async def _append_one(self, partition: int, command: Command) -> None:
        record = encode_envelope(Envelope(command, int(self._now())))
        try:
            await self._append(partition, [record])
        except Exception as e:
            raise SubmitUnavailable(f"partition {partition}'s log is unavailable: {e}") from None


def _invocation_of(command: Command) -> bytes:
    match command:
        case Invoke(invocation=invocation):
            return invocation.invocation_id
        case Attach(invocation_id=inv) | Output(invocation_id=inv) | Kill(invocation_id=inv):
            return inv
        case Purge(invocation_id=inv) | Pause(invocation_id=inv) | Resume(invocation_id=inv):
            return inv
        case Signal(signal=signal):
            return signal.target
    raise TypeError(f"not a request about one invocation: {command!r}")


def _outcome(reply: IngressReply) -> CallOutcome:
    if reply.rejection_code:
        return CallOutcome(
            reply.invocation_id, rejection=Rejection(reply.rejection_code, reply.rejection_message)
        )
    return CallOutcome(
        reply.invocation_id, result=reply.result or Result(), expires_at_ms=reply.expires_at_ms
    )

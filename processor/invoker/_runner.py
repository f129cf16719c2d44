"""One attempt's I/O: the asyncio shell around one ``processor.invoker.core.Attempt``.

It waits for a concurrency slot and for the attempt's fence (the invoker's), reads what the
attempt starts from (the invoker's ``plan``), opens the HTTP stream, and then pumps: response
bytes and partition inputs go into the core; its outputs come out as writes (one writer task,
in order, coalesced), ``end()`` of the request stream, proposals and the one timer. Inputs
from the partition that arrive before the attempt began are kept and fed right after ``Begin``
(the core drops those its replay already holds).

When the core ends the attempt cleanly (End, Suspension) the response is drained until the
SDK ends it, for at most ``drain_timeout_s``; after a failure the stream is reset at once,
since the SDK may still be running the handler. ``abort()`` stops everything and guarantees
that nothing more is proposed for this attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from processor.core import InvokerEffect
from processor.invoker.core import (
    Attempt,
    AttemptEnded,
    AttemptError,
    Begin,
    CallResolver,
    CloseRequest,
    DataReceived,
    EndKind,
    Input,
    LocalProtocolError,
    ProposeEffect,
    ResponseHeaders,
    SendFrames,
    SetTimer,
    StreamClosed,
    StreamFailed,
    Tick,
)
from processor.invoker.transport import (
    Endpoint,
    NotProcessed,
    Stream,
    StreamStateError,
    Transport,
    TransportError,
)

if TYPE_CHECKING:
    from processor.invoker._targets import HandlerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where and how to run an attempt: read from the partition and the schema just before it."""

    endpoint: Endpoint
    path: str
    headers: tuple[tuple[str, str], ...]
    begin: Begin  # ``now_ms`` is set when the stream is open
    settings: HandlerSettings


class Runner:
    """Runs one attempt (see the module docstring). ``owner`` is the invoker."""

    def __init__(self, owner: RunnerOwner, invocation_id: bytes, resolve: CallResolver) -> None:
        self.owner = owner
        self.invocation_id = invocation_id
        self.core = Attempt(resolve)
        self.plan: Plan | None = None
        self.aborted = False
        self.task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._early: list[Input] = []  # partition inputs before Begin
        self._begun = False
        self._stream: Stream | None = None
        self._out = bytearray()
        self._close = False  # the core asked to end the request stream
        self._request_ended = False
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False  # ended by a failure: reset, do not drain
        self._over: AttemptEnded | None = None

    # --- state ------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.aborted or self._over is not None

    def now_ms(self) -> int:
        return int(self._loop.time() * 1000)

    # --- inputs -----------------------------------------------------------------------------

    def input(self, inp: Input) -> None:
        """An input from the partition side (notification, ack, journaled command)."""
        if self.ended:
            return
        if not self._begun:
            self._early.append(inp)
            return
        self._feed(inp)

    def _feed(self, inp: Input) -> None:
        if self.ended:
            return
        try:
            outputs = self.core.step(inp)
        except LocalProtocolError as error:
            log.error("invoker bug: %s", error, extra={"invocation": self.invocation_id.hex()})
            self._on_output(
                AttemptEnded(EndKind.FAILED_RETRYABLE, AttemptError(500, f"invoker bug: {error}"))
            )
            return
        for out in outputs:
            if self.aborted:
                return
            self._on_output(out)

    def _on_output(self, out: object) -> None:
        if isinstance(out, SendFrames):
            self._out += out.data
            self._wake.set()
        elif isinstance(out, ProposeEffect):
            self.owner.propose(self, out.effect)
        elif isinstance(out, CloseRequest):
            self._close = True
            self._wake.set()
        elif isinstance(out, SetTimer):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(out.at_ms / 1000, self._tick)
        elif isinstance(out, AttemptEnded):
            self._over = out
            self._cancel_timer()
            if out.kind not in (EndKind.END, EndKind.SUSPENDED):
                self._failed = True
                if self._stream is not None:
                    self._stream.reset()
            self._wake.set()
            self.owner.attempt_ended(self, out)

    def _tick(self) -> None:
        self._timer = None
        self._feed(Tick(self.now_ms()))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the attempt ------------------------------------------------------------------------

    def abort(self) -> None:
        """Stop now; nothing more is proposed or reported for this attempt."""
        if self.aborted:
            return
        self.aborted = True
        self._cancel_timer()
        if self._stream is not None:
            self._stream.reset()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    async def run(self, transport: Transport, slots: asyncio.Semaphore, drain_timeout_s: float) -> None:
        try:
            async with slots:
                await self.owner.fence(self)
                if self.aborted:
                    return
                try:
                    plan = self.owner.plan(self)
                except Exception as error:  # a store read failed: retried like Restate's reader errors
                    log.warning(
                        "cannot read the invocation: %r",
                        error,
                        extra={"invocation": self.invocation_id.hex()},
                    )
                    self._fail_before_start(
                        AttemptError(500, f"cannot read the invocation: {error!r}"), counts=False
                    )
                    return
                if plan is None or self.aborted:
                    return
                if isinstance(plan, AttemptError):
                    self._fail_before_start(plan)
                    return
                self.plan = plan
                try:
                    stream = await transport.open_stream(plan.endpoint, plan.path, plan.headers)
                except TransportError as error:
                    self._fail_before_start(AttemptError(500, f"{plan.endpoint}: {error}"))
                    return
                async with stream:
                    self._stream = stream
                    if self.aborted:
                        return
                    await self._exchange(stream, plan, drain_timeout_s)
        except asyncio.CancelledError:
            if not self.aborted:
                raise
        except Exception as error:  # a bug: fail the attempt so that the invocation is retried, not lost
            log.exception("attempt crashed", extra={"invocation": self.invocation_id.hex()})
            if not self.ended:
                self._fail_before_start(AttemptError(500, f"invoker error: {error!r}"))
        finally:
            self._cancel_timer()
            self._stream = None

    def _fail_before_start(self, error: AttemptError, counts: bool = True) -> None:
        """Nothing ran (no plan, no connection): the attempt core is never begun."""
        self._over = AttemptEnded(EndKind.FAILED_RETRYABLE, error, counts=counts)
        self.owner.attempt_ended(self, self._over)

    async def _exchange(self, stream: Stream, plan: Plan, drain_timeout_s: float) -> None:
        self._begun = True
        self._feed(dataclasses.replace(plan.begin, now_ms=self.now_ms()))
        early, self._early = self._early, []
        for inp in early:
            self._feed(inp)
        # The replay goes out right behind the request's HEADERS (one socket write for both,
        # and with the end of the request in request/response mode) when it fits the window.
        while await self._write_pending(stream):
            pass
        if self._request_ended:  # request/response: all is written
            await self._read(stream, drain_timeout_s)
            return
        writer = asyncio.create_task(self._write(stream))
        try:
            await self._read(stream, drain_timeout_s)
        finally:
            if not writer.done():
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _read(self, stream: Stream, drain_timeout_s: float) -> None:
        try:
            head = await stream.response()
            self._feed(ResponseHeaders(head.get("content-type"), self.now_ms()))
            while not self._failed and not self.aborted:
                if self._over is not None:
                    # Cleanly over: let the SDK finish its response, but not for ever.
                    async with asyncio.timeout(drain_timeout_s):
                        await self._drain(stream)
                    return
                chunk = await stream.receive()
                if chunk is None:
                    self._feed(StreamClosed())
                    return
                self._feed(DataReceived(chunk, self.now_ms()))
        except TimeoutError:
            log.debug(
                "the deployment did not end its response", extra={"invocation": self.invocation_id.hex()}
            )
        except StreamStateError:
            pass  # we reset the stream ourselves
        except TransportError as error:
            self._feed(StreamFailed(str(error), maybe_processed=not isinstance(error, NotProcessed)))

    @staticmethod
    async def _drain(stream: Stream) -> None:
        while await stream.receive() is not None:
            pass

    async def _write(self, stream: Stream) -> None:
        while not self._failed and not self.aborted and not self._request_ended:
            if not await self._write_pending(stream):
                self._wake.clear()
                await self._wake.wait()

    async def _write_pending(self, stream: Stream) -> bool:
        """Write what the core handed out, then end the request if it asked; False if idle."""
        try:
            if self._out:
                data = bytes(self._out)
                self._out.clear()
                await stream.send(data)
                return True
            if self._close and not self._request_ended:
                self._request_ended = True
                await stream.end()
                return True
        except StreamStateError:
            self._failed = True  # reset: nothing more can be written
        except TransportError as error:
            self._feed(StreamFailed(str(error), maybe_processed=not isinstance(error, NotProcessed)))
            self._failed = True
        return False


class RunnerOwner(Protocol):
    """What a runner needs from its invoker (``Invoker`` implements it)."""

    async def fence(self, runner: Runner) -> None: ...

    def plan(self, runner: Runner) -> Plan | AttemptError | None: ...

    def propose(self, runner: Runner, effect: InvokerEffect) -> None: ...

    def attempt_ended(self, runner: Runner, ended: AttemptEnded) -> None: ...

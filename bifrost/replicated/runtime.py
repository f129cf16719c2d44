"""Shell plumbing shared by every networked core: the clock, the network and a core driver.

A core speaks ``Send``/``SetTimer`` and takes ``Response``/``Tick``; :class:`Network` carries the
sends to log-servers (or straight to this node's own log-server, without a socket) and routes
each reply back to the core that asked, under the core's own request id. :class:`CoreDriver`
feeds one core, executes its ``Send``/``SetTimer`` outputs and hands every other output to the
owner. I/O failures become inputs: a lost connection is simply a reply that never comes, and the
core's own timeouts decide what to do.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from bifrost.core import NodeAlive, NodeDead, Response, Send, SetTimer, Tick
from bifrost.net.messaging import (
    Codec,
    ConnectionLimits,
    DataPortAuth,
    MessageServer,
    OnRequest,
    Peers,
    Refusals,
)
from bifrost.policy import ROUTE_TTL_S

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.monotonic() * 1000)


class Core(Protocol):
    def step(self, inp: Any) -> list[Any]: ...


# Handles a request that arrived from a peer (or from this node): on_request(peer, reply,
# request_id, message), with the peer's authenticated identity and reply(request_id, message).
RequestHandler = OnRequest


class Network:
    def __init__(
        self,
        auth: DataPortAuth,
        codec: Codec,
        address_of: Callable[[int], tuple[str, int] | None],
        on_request: RequestHandler,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.identity = auth.me
        self.me = auth.me.node
        self.refusals = Refusals()
        self._on_request = on_request
        self._server = MessageServer(codec, auth, on_request, limits, self.refusals)
        self._peers = Peers(codec, auth, address_of, self._on_reply, self._on_down, limits, self.refusals)
        self._wire_ids = itertools.count(1)
        # wire id -> (where the reply goes, the asker's request id, peer, sent at)
        self._routes: dict[int, tuple[Callable[[Response], None], int, int, float]] = {}
        # wire id -> called if the connection the request went out on is lost
        self._on_lost: dict[int, Callable[[], None]] = {}
        self._prune_handle: asyncio.TimerHandle | None = None
        # One-shot calls: wire id -> (the caller's future, the node asked). Their deadlines share
        # one timer (a heap of (deadline, wire id)): a timer per call costs more than the call.
        self._calls: dict[int, tuple[asyncio.Future[Any], int]] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = float("inf")

    async def start(self, host: str, port: int) -> int:
        self._schedule_prune()
        return await self._server.start(host, port)

    @property
    def connections(self) -> tuple[int, int]:
        """Inbound data-port connections: (in their handshake, authenticated)."""
        return self._server.connections

    @property
    def server(self) -> MessageServer:
        return self._server

    async def close(self) -> None:
        if self._prune_handle:
            self._prune_handle.cancel()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        await self._peers.close()
        await self._server.close()

    def send(
        self, deliver: Callable[[Response], None], send: Send, on_lost: Callable[[], None] | None = None
    ) -> int:
        """Send ``send.message``; its reply comes back to ``deliver`` as a Response, or never
        (``on_lost`` tells when it surely never will: the connection dropped)."""
        wire = next(self._wire_ids)
        if on_lost is not None:
            self._on_lost[wire] = on_lost
        self._routes[wire] = (deliver, send.request_id, send.to, time.monotonic())
        self._transmit(send.to, wire, send.message)
        return wire

    def _transmit(self, node: int, wire: int, message: Any) -> None:
        if node == self.me:
            # Our own log-server: no socket, but still asynchronous, as a peer would be. Deferred
            # by two loop turns so the frames to the peers (flushed one turn after queueing) hit
            # the wire before the local store's fsync blocks the loop: the remote round trips
            # then overlap the local fsync instead of following it.
            loop = asyncio.get_running_loop()
            loop.call_soon(
                loop.call_soon,
                self._on_request,
                self.identity,
                lambda rid, msg: self._on_reply(self.me, rid, msg),
                wire,
                message,
            )
        else:
            self._peers.send(node, wire, message)

    def notify(self, node: int, message: Any) -> None:
        """A one-way message (no reply expected, nothing remembered)."""
        if node != self.me:
            self._peers.send(node, 0, message)

    async def call(self, node: int, message: Any, timeout_s: float) -> Any:
        """One request, one reply: raises TimeoutError when none comes in time, ConnectionError
        when the connection it went out on is lost. (The hot path of remote appends: a future
        and a heap entry per call, nothing else.)"""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        wire = next(self._wire_ids)
        self._calls[wire] = (fut, node)
        deadline = loop.time() + timeout_s
        if len(self._deadlines) > 2 * len(self._calls) + 1024:
            # Mostly answered calls: keep the heap proportional to the calls still waiting.
            self._deadlines = [e for e in self._deadlines if e[1] in self._calls]
            heapq.heapify(self._deadlines)
        heapq.heappush(self._deadlines, (deadline, wire))
        if deadline < self._deadline_at:
            self._arm_deadlines(loop, deadline)
        self._transmit(node, wire, message)
        try:
            return await fut
        finally:
            self._calls.pop(wire, None)

    def _arm_deadlines(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = at
        self._deadline_timer = loop.call_at(at, self._expire_calls)

    def _expire_calls(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline_timer, self._deadline_at = None, float("inf")
        now = loop.time()
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, wire = heapq.heappop(heap)
            call = self._calls.pop(wire, None)
            if call is not None and not call[0].done():
                call[0].set_exception(TimeoutError(f"no reply from node {call[1]} in time"))
        # Entries of calls that were answered stay until their deadline: popped here, unread.
        if heap:
            self._arm_deadlines(loop, heap[0][0])

    def forget(self, deliver: Callable[[Response], None]) -> None:
        for wire in [w for w, route in self._routes.items() if route[0] == deliver]:
            del self._routes[wire]
            self._on_lost.pop(wire, None)

    def _on_reply(self, node: int, wire: int, message: Any) -> None:
        call = self._calls.get(wire)
        if call is not None:
            if call[1] == node:
                del self._calls[wire]
                if not call[0].done():
                    call[0].set_result(message)
            return
        route = self._routes.pop(wire, None)
        self._on_lost.pop(wire, None)
        if route is None or route[2] != node:
            return  # a reply for a request its core has given up on
        deliver, request_id, _, _ = route
        deliver(Response(node, request_id, message))

    def _on_down(self, node: int) -> None:
        for wire in [w for w, call in self._calls.items() if call[1] == node]:
            fut = self._calls.pop(wire)[0]
            if not fut.done():
                fut.set_exception(ConnectionError(f"connection to node {node} lost"))
        for wire in [w for w, route in self._routes.items() if route[2] == node]:
            del self._routes[wire]
            lost = self._on_lost.pop(wire, None)
            if lost is not None:
                lost()

    def _schedule_prune(self) -> None:
        self._prune_handle = asyncio.get_running_loop().call_later(ROUTE_TTL_S, self._prune)

    def _prune(self) -> None:
        cutoff = time.monotonic() - ROUTE_TTL_S
        for wire in [w for w, route in self._routes.items() if route[3] < cutoff]:
            del self._routes[wire]
            self._on_lost.pop(wire, None)
        self._schedule_prune()


class CoreDriver:
    """Feeds one core; executes ``Send`` and ``SetTimer``; passes other outputs to ``on_output``."""

    def __init__(
        self,
        core: Core,
        network: Network,
        on_output: Callable[[Any], None],
        after_step: Callable[[], None] | None = None,
    ) -> None:
        self.core = core
        self._network = network
        self._on_output = on_output
        self._after_step = after_step
        self._timer: asyncio.TimerHandle | None = None
        self._last_tick = -1
        self._closed = False
        self._feeding = False
        self._queue: list[Any] = []

    def feed(self, inp: Any) -> None:
        """Step the core with ``inp`` (after a Tick, so its clock is current) and execute outputs."""
        if self._closed:
            return
        self._queue.append(inp)
        if self._feeding:
            return  # an output handler fed us re-entrantly: the outer loop will get to it
        self._feeding = True
        try:
            while self._queue and not self._closed:
                nxt = self._queue.pop(0)
                now = now_ms()
                if now != self._last_tick and not isinstance(nxt, Tick):
                    self._last_tick = now
                    self._execute(self.core.step(Tick(now)))
                self._execute(self.core.step(nxt))
                if self._after_step is not None:
                    self._after_step()
        finally:
            self._feeding = False

    def kick(self) -> None:
        """Step the core with the current time (cores send their first requests on a Tick)."""
        now = now_ms()
        self._last_tick = now
        self.feed(Tick(now))

    def hint(self, node: int, alive: bool) -> None:
        self.feed(NodeAlive(node) if alive else NodeDead(node))

    def _execute(self, outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._network.send(self.feed, out)
            elif isinstance(out, SetTimer):
                self._set_timer(out.at_ms)
            else:
                self._on_output(out)

    def _set_timer(self, at_ms: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (at_ms - now_ms()) / 1000)
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = now_ms()
        self._last_tick = now
        self.feed(Tick(now))

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._network.forget(self.feed)

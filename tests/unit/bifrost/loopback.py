"""In-memory network of log-servers for focused tests of the requester cores (h11's
ConnectionPair, raft's `network`): synchronous delivery, automatic persistence, and
`cut`/`isolate`/`drop` switches. Below the full simulator on purpose: no clock, no crashes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bifrost.core import LogServer, MemoryLogStore, Persist, Persisted, Reply, Request, Response, Send, Tick


class Loopback:
    def __init__(self, nodes: list[int]) -> None:
        self.disks = {n: MemoryLogStore() for n in nodes}
        self.servers = {n: LogServer(n, self.disks[n]) for n in nodes}
        self.isolated: dict[int, bool] = {}
        self.drop: Callable[[Send], bool] = lambda s: False
        self.now = 0

    def isolate(self, n: int, on: bool = True) -> None:
        self.isolated[n] = on

    def deliver(self, send: Send) -> list[Response]:
        """Run one request through its server, persisting synchronously; the replies."""
        if self.isolated.get(send.to) or self.drop(send) or send.to not in self.servers:
            return []
        srv = self.servers[send.to]
        queue: list[Any] = srv.step(Request("core", send.request_id, send.message))
        replies: list[Response] = []
        while queue:
            o = queue.pop(0)
            if isinstance(o, Persist):
                self.disks[send.to].apply(o.writes)
                queue.extend(srv.step(Persisted(o.token)))
            elif isinstance(o, Reply):
                replies.append(Response(send.to, o.request_id, o.message))
        return replies

    def drive(
        self, core: Any, done: Callable[[Any], bool], *, max_steps: int = 10_000, tick_ms: int = 100
    ) -> list[Any]:
        """Feed `core` until an output satisfies `done`; time advances only when idle."""
        inbox: list[Any] = [Tick(self.now)]
        seen: list[Any] = []
        for _ in range(max_steps):
            if not inbox:
                self.now += tick_ms
                inbox.append(Tick(self.now))
            for o in core.step(inbox.pop(0)):
                seen.append(o)
                if done(o):
                    return seen
                if isinstance(o, Send):
                    inbox.extend(self.deliver(o))
        raise AssertionError(f"core did not finish; last outputs {seen[-5:]}")

"""Heartbeat failure detector: a peer is dead after ``timeout_ms`` without a heartbeat.

A heartbeat carries the sender's generation. A peer that comes back with the *same* generation
after being declared dead stays dead for ``suspect_ms`` more: a process that was paused or cut
off is not trusted again at once (Restate's "suspect" state). A higher generation is a new
process and is alive at once.

Inputs: ``Heartbeat(node, generation, now_ms)`` and ``Tick(now_ms)``. Outputs: ``Dead(node)``
and ``Alive(node, generation)`` on every change, in node-name order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: int
    generation: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int


@dataclass(frozen=True, slots=True)
class Dead:
    node: int


@dataclass(frozen=True, slots=True)
class Alive:
    node: int
    generation: int


@dataclass(slots=True)
class _Peer:
    generation: int
    last_heard_ms: int
    alive: bool
    dead_since_ms: int | None = None


class FailureDetector:
    def __init__(self, peers: list[int], now_ms: int, timeout_ms: int = 1500, suspect_ms: int = 3000) -> None:
        # Peers start alive with a grace period of one timeout, like a node that just heard them.
        self._peers = {p: _Peer(0, now_ms, True) for p in sorted(peers)}
        self._timeout = timeout_ms
        self._suspect = suspect_ms

    def is_alive(self, node: int) -> bool:
        peer = self._peers.get(node)
        return peer is not None and peer.alive

    @property
    def alive(self) -> list[int]:
        return [n for n, p in self._peers.items() if p.alive]

    def step(self, inp: Heartbeat | Tick) -> list[Alive | Dead]:
        out: list[Alive | Dead] = []
        if isinstance(inp, Heartbeat):
            if inp.node not in self._peers:
                self._peers = dict(
                    sorted({**self._peers, inp.node: _Peer(inp.generation, inp.now_ms, True)}.items())
                )
                out.append(Alive(inp.node, inp.generation))
            peer = self._peers[inp.node]
            if inp.generation < peer.generation:
                return out  # a stale process of that node: ignore it
            newer = inp.generation > peer.generation
            peer.generation = inp.generation
            peer.last_heard_ms = inp.now_ms
            if not peer.alive:
                trusted = newer or (
                    peer.dead_since_ms is not None and inp.now_ms - peer.dead_since_ms >= self._suspect
                )
                if trusted:
                    peer.alive = True
                    peer.dead_since_ms = None
                    out.append(Alive(inp.node, inp.generation))
            now = inp.now_ms
        else:
            now = inp.now_ms
        for name, peer in self._peers.items():
            if peer.alive and now - peer.last_heard_ms > self._timeout:
                peer.alive = False
                peer.dead_since_ms = now
                out.append(Dead(name))
        return out

"""One toxic acting on one direction of one connection: a planner from items to due times.

A stage takes items (data chunks, the end of the stream, a teardown) stamped with the time they
left the previous stage, and schedules each output at a due time; `pull(now)` hands out every
output that is due. Due times never decrease, so a stage never reorders bytes. An emitted
item is restamped with its due time, so delays of chained toxics add up.

The semantics are those of Toxiproxy's `toxics/*.go`, with time made explicit:

- latency: each chunk leaves `latency ± jitter` ms after it arrived, never before the previous
  one; the end of the stream follows the last chunk at once.
- bandwidth: `rate` KB/s with KB = 1000 bytes (Toxiproxy's arithmetic); big chunks go out in
  pieces of 100 ms worth. Idle time earns no credit. `rate` 0 means unlimited (Toxiproxy
  stalls the stream forever on it).
- slow_close: data passes; the end of the stream (or a teardown) waits `delay` ms.
- timeout: drops all data; tears the connection down `timeout` ms after the toxic started or
  after the last chunk it dropped (Toxiproxy re-arms its timer on every chunk); 0 = never.
- reset_peer: drops all data; the first item to arrive arms a timer of `timeout` ms that resets
  the connection. An idle connection is never reset (Toxiproxy waits on its input the same way).
- limit_data: passes `bytes` bytes in total (counted across updates of the toxic), then tears
  the connection down; a limit already reached closes on the next chunk.
- slicer: cuts each chunk by recursive bisection (±`size_variation` around the middle) into
  pieces of about `average_size` bytes, `delay` µs apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from ._toxics import Toxic


class Rng(Protocol):
    """What the core needs of `random.Random` (injected, so tests are deterministic)."""

    def random(self) -> float: ...

    def randrange(self, start: int, stop: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    data: bytes
    ts: float


@dataclass(frozen=True, slots=True)
class Eof:
    """The end of the stream: propagates as a half-close."""

    ts: float


@dataclass(frozen=True, slots=True)
class Teardown:
    """A toxic ends the whole connection: FIN both ways, or RST if `reset`."""

    ts: float
    reset: bool


Item = Chunk | Eof | Teardown


class LimitCount:
    """Bytes a limit_data toxic has let through on one link; survives updates of the toxic."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0


class Stage:
    """Pass-through: the stage of a toxic that lost its toxicity draw for this connection."""

    def __init__(self) -> None:
        self._queue: deque[tuple[float, Item]] = deque()
        self._last_due = float("-inf")
        self.held_bytes = 0

    def push(self, item: Item) -> None:
        for due, out in self._plan(item):
            # Clamping keeps the queue sorted by due time, which is what keeps bytes in order.
            due = max(due, self._last_due)
            self._last_due = due
            self._queue.append((due, out))
            if isinstance(out, Chunk):
                self.held_bytes += len(out.data)

    def pull(self, now: float) -> list[Item]:
        out: list[Item] = []
        while self._queue and self._queue[0][0] <= now:
            due, item = self._queue.popleft()
            if isinstance(item, Chunk):
                self.held_bytes -= len(item.data)
            out.append(replace(item, ts=due))
        return out

    def deadline(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def drain(self) -> list[Item]:
        """Everything planned but not yet emitted, with the times it arrived here."""
        items = [item for _, item in self._queue]
        self._queue.clear()
        self.held_bytes = 0
        return items

    def on_remove(self, now: float) -> list[Item]:
        """What removing the toxic releases at `now`: by default its held data, at once
        (Toxiproxy flushes an interrupted toxic's buffer rather than dropping it)."""
        return [replace(item, ts=now) for item in self.drain()]

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        return ((item.ts, item),)


class _Latency(Stage):
    def __init__(self, latency_ms: int, jitter_ms: int, rng: Rng) -> None:
        super().__init__()
        self._latency = latency_ms
        self._jitter = jitter_ms
        self._rng = rng

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        if not isinstance(item, Chunk):
            return ((item.ts, item),)
        delay = self._latency
        if self._jitter > 0:
            delay += self._rng.randrange(-self._jitter, self._jitter)
        return ((item.ts + delay / 1000, item),)


class _Bandwidth(Stage):
    def __init__(self, rate_kb_s: int) -> None:
        super().__init__()
        self._bytes_per_s = rate_kb_s * 1000
        self._piece = max(rate_kb_s * 100, 1)
        self._free_at = float("-inf")

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        if not isinstance(item, Chunk) or self._bytes_per_s == 0:
            return ((max(item.ts, self._free_at), item),)
        t = max(item.ts, self._free_at)
        out: list[tuple[float, Item]] = []
        for start in range(0, len(item.data), self._piece):
            piece = item.data[start : start + self._piece]
            t += len(piece) / self._bytes_per_s
            out.append((t, Chunk(piece, item.ts)))
        self._free_at = t
        return out


class _SlowClose(Stage):
    def __init__(self, delay_ms: int) -> None:
        super().__init__()
        self._delay = delay_ms / 1000

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        if isinstance(item, Chunk):
            return ((item.ts, item),)
        return ((item.ts + self._delay, item),)


class _Timeout(Stage):
    def __init__(self, timeout_ms: int, now: float) -> None:
        super().__init__()
        self._timeout = timeout_ms / 1000
        self._fire_at = now + self._timeout if timeout_ms > 0 else None
        self._done = False

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        fired = self._fire(item.ts, strict=True)
        if self._done:
            return fired
        if isinstance(item, Chunk):
            if self._fire_at is not None:
                self._fire_at = item.ts + self._timeout
            return ()
        self._done, self._fire_at = True, None
        return ((item.ts, item),)

    def pull(self, now: float) -> list[Item]:
        for due, item in self._fire(now, strict=False):
            self._queue.append((due, item))
        return super().pull(now)

    def deadline(self) -> float | None:
        own = super().deadline()
        if self._fire_at is None:
            return own
        return self._fire_at if own is None else min(own, self._fire_at)

    def on_remove(self, now: float) -> list[Item]:
        # Toxiproxy's TimeoutToxic.Cleanup closes the link when the toxic is removed.
        if self._done:
            return super().on_remove(now)
        self._done = True
        return [*super().on_remove(now), Teardown(now, reset=False)]

    def _fire(self, t: float, *, strict: bool) -> list[tuple[float, Item]]:
        # An item stamped after the deadline arrived too late: the timer went off first.
        if self._done or self._fire_at is None or (t <= self._fire_at if strict else t < self._fire_at):
            return []
        at, self._fire_at, self._done = self._fire_at, None, True
        return [(at, Teardown(at, reset=False))]


class _ResetPeer(Stage):
    def __init__(self, timeout_ms: int) -> None:
        super().__init__()
        self._timeout = timeout_ms / 1000
        self._armed = False

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        if self._armed:
            return ()
        self._armed = True
        at = item.ts + self._timeout
        return ((at, Teardown(at, reset=True)),)

    def on_remove(self, now: float) -> list[Item]:
        # Cancels a pending reset. Toxiproxy's reset_peer ignores interrupts while it waits, so
        # there the reset still happens; cancelling is what a test removing the toxic expects.
        self.drain()
        return []


class _LimitData(Stage):
    def __init__(self, limit: int, count: LimitCount) -> None:
        super().__init__()
        self._limit = limit
        self._count = count
        self._done = False

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        if self._done:
            return ()
        if not isinstance(item, Chunk):
            self._done = True
            return ((item.ts, item),)
        out: list[tuple[float, Item]] = []
        piece = item.data[: max(self._limit - self._count.sent, 0)]
        if piece:
            self._count.sent += len(piece)
            out.append((item.ts, Chunk(piece, item.ts)))
        if self._count.sent >= self._limit:
            self._done = True
            out.append((item.ts, Teardown(item.ts, reset=False)))
        return out


class _Slicer(Stage):
    def __init__(self, average: int, variation: int, delay_us: int, rng: Rng) -> None:
        super().__init__()
        self._average = average
        self._variation = variation
        self._delay = delay_us / 1_000_000
        self._rng = rng
        self._free_at = float("-inf")

    def _plan(self, item: Item) -> Iterable[tuple[float, Item]]:
        t = max(item.ts, self._free_at)
        if not isinstance(item, Chunk):
            return ((t, item),)
        out: list[tuple[float, Item]] = []
        for lo, hi in self._cuts(0, len(item.data)):
            out.append((t, Chunk(item.data[lo:hi], item.ts)))
            t += self._delay
        self._free_at = t
        return out

    def _cuts(self, start: int, end: int) -> list[tuple[int, int]]:
        # Toxiproxy's SlicerToxic.chunk, with the middle clamped inside the range: the Go
        # version indexes past the chunk when size_variation is large.
        if (end - start) - self._average <= self._variation:
            return [(start, end)] if end > start else []
        mid = start + (end - start) // 2
        if self._variation > 0:
            mid += self._rng.randrange(-self._variation, self._variation)
        mid = min(max(mid, start + 1), end - 1)
        return [*self._cuts(start, mid), *self._cuts(mid, end)]


def make_stage(toxic: Toxic, rng: Rng, now: float, count: LimitCount) -> Stage:
    """The stage for `toxic` on a new link (or after an update): the toxicity is drawn here."""
    if not rng.random() < toxic.toxicity:
        return Stage()
    a = toxic.attr
    match toxic.type:
        case "latency":
            return _Latency(a("latency"), a("jitter"), rng)
        case "bandwidth":
            return _Bandwidth(a("rate"))
        case "slow_close":
            return _SlowClose(a("delay"))
        case "timeout":
            return _Timeout(a("timeout"), now)
        case "reset_peer":
            return _ResetPeer(a("timeout"))
        case "limit_data":
            return _LimitData(a("bytes"), count)
        case "slicer":
            return _Slicer(a("average_size"), a("size_variation"), a("delay"), rng)
    raise ValueError(f"no stage for toxic type {toxic.type!r}")

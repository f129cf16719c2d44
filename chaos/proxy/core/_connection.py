"""One proxied TCP connection, both directions, as a sans-I/O state machine.

Each direction (a *link*) is a live chain of stages, one per toxic of that stream, in the
order the toxics were added; bytes read from the source enter the first stage and whatever the
last stage emits is written to the destination. Toxics can be added, updated and removed while
the connection runs, as in Toxiproxy:

- add: the new stage goes to the end of the chain; data already inside the chain passes it.
- update: the stage is rebuilt with the new attributes and a fresh toxicity draw, and the data
  it held is re-planned under the new attributes (keeping its arrival times).
- remove: the data the stage held goes on at once; a timeout toxic tears the connection down
  (Toxiproxy's `Cleanup`); a pending reset_peer is cancelled.

Ends of streams propagate as half-closes (FIN on one side, the other direction keeps flowing);
the connection closes when both directions have delivered their end, when a toxic tears it
down, or once a socket fails and the surviving direction has delivered its end.

```
            Received / EofReceived / PeerLost          TimerFired, Toxic*
                          │                                 │
  UPSTREAM   client ─► [stage] ─► [stage] ─► … ─► Send/SendEof ─► server
  DOWNSTREAM server ─► [stage] ─► … ─────────────► Send/SendEof ─► client
                          └─ held bytes ≥ high water, or WritePaused ─► PauseReading
```
"""

from __future__ import annotations

from ._events import (
    Close,
    EofReceived,
    Input,
    Output,
    PauseReading,
    PeerLost,
    Received,
    ResumeReading,
    Send,
    SendEof,
    SetTimer,
    TimerFired,
    ToxicAdded,
    ToxicRemoved,
    ToxicUpdated,
    WritePaused,
    WriteResumed,
)
from ._stages import Chunk, Eof, Item, LimitCount, Rng, Stage, Teardown, make_stage
from ._toxics import Stream

HIGH_WATER = 512 * 1024
"""Bytes held in a link's chain above which the shell stops reading its source."""
LOW_WATER = 128 * 1024


class _Link:
    __slots__ = ("congested", "counts", "finished", "input_ended", "paused", "stages", "stream")

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.stages: list[tuple[str, Stage]] = []
        self.counts: dict[str, LimitCount] = {}
        self.input_ended = False
        self.finished = False
        """The end was delivered, or the destination is gone: nothing more is written."""
        self.congested = False
        self.paused = False

    def index(self, name: str) -> int | None:
        for i, (stage_name, _) in enumerate(self.stages):
            if stage_name == name:
                return i
        return None

    def run(self, now: float, start: int, items: list[Item]) -> list[Item]:
        """Feed `items` into the stage at `start` and pass everything due down the chain."""
        for _, stage in self.stages[start:]:
            for item in items:
                stage.push(item)
            items = stage.pull(now)
        return items

    def held_bytes(self) -> int:
        return sum(stage.held_bytes for _, stage in self.stages)

    def deadline(self) -> float | None:
        due = [d for _, stage in self.stages if (d := stage.deadline()) is not None]
        return min(due, default=None)


class Connection:
    """Both directions of one proxied connection. Feed inputs to `step`, execute its outputs."""

    def __init__(self, rng: Rng, *, high_water: int = HIGH_WATER, low_water: int = LOW_WATER) -> None:
        self._rng = rng
        self._high = high_water
        self._low = low_water
        self._links = {stream: _Link(stream) for stream in Stream}
        self._closed = False
        self._timer_at: float | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def held_bytes(self, stream: Stream) -> int:
        return self._links[stream].held_bytes()

    def step(self, inp: Input) -> list[Output]:
        if self._closed:
            return []
        out: list[Output] = []
        now = inp.now
        entering: dict[Stream, list[Item]] = {stream: [] for stream in Stream}
        match inp:
            case Received(stream=stream, data=data):
                link = self._links[stream]
                if data and not link.input_ended and not link.finished:
                    entering[stream].append(Chunk(data, now))
            case EofReceived(stream=stream):
                self._end_input(stream, now, entering)
            case PeerLost(stream=stream):
                self._end_input(stream, now, entering)
                dead = self._links[stream.other]
                dead.finished = True
                # Its toxics' pending data and timers (a timeout, a reset) have no socket left
                # to act on, and must not tear down the direction that is still delivering.
                dead.stages.clear()
            case WritePaused(stream=stream):
                self._links[stream].congested = True
            case WriteResumed(stream=stream):
                self._links[stream].congested = False
            case TimerFired():
                self._timer_at = None
            case ToxicAdded(toxic=toxic) if not self._links[toxic.stream].finished:
                link = self._links[toxic.stream]
                count = link.counts.setdefault(toxic.name, LimitCount())
                link.stages.append((toxic.name, make_stage(toxic, self._rng, now, count)))
            case ToxicUpdated(toxic=toxic):
                link = self._links[toxic.stream]
                i = link.index(toxic.name)
                if i is not None:
                    held = link.stages[i][1].drain()
                    link.stages[i] = (toxic.name, make_stage(toxic, self._rng, now, link.counts[toxic.name]))
                    self._deliver(link, link.run(now, i, held), out)
            case ToxicRemoved(name=name):
                for link in self._links.values():
                    i = link.index(name)
                    if i is not None:
                        released = link.stages.pop(i)[1].on_remove(now)
                        link.counts.pop(name, None)
                        self._deliver(link, link.run(now, i, released), out)
        for stream, link in self._links.items():
            self._deliver(link, link.run(now, 0, entering[stream]), out)
        if not self._closed:
            self._flow(out)
            self._timer(out)
        return out

    def _end_input(self, stream: Stream, now: float, entering: dict[Stream, list[Item]]) -> None:
        link = self._links[stream]
        if not link.input_ended:
            link.input_ended = True
            entering[stream].append(Eof(now))

    def _deliver(self, link: _Link, items: list[Item], out: list[Output]) -> None:
        for item in items:
            if self._closed:
                return
            if isinstance(item, Teardown):
                self._close(item.reset, out)
                return
            if link.finished:
                continue
            if isinstance(item, Chunk):
                if item.data:
                    out.append(Send(link.stream, item.data))
            elif isinstance(item, Eof):
                out.append(SendEof(link.stream))
                link.finished = True
        if all(other.finished for other in self._links.values()):
            self._close(False, out)

    def _close(self, reset: bool, out: list[Output]) -> None:
        if not self._closed:
            self._closed = True
            out.append(Close(reset))

    def _flow(self, out: list[Output]) -> None:
        for link in self._links.values():
            if link.input_ended or link.finished:
                continue  # nothing more will be read from, or written for, this link
            held = link.held_bytes()
            want = link.congested or held >= self._high or (link.paused and held > self._low)
            if want != link.paused:
                link.paused = want
                out.append(PauseReading(link.stream) if want else ResumeReading(link.stream))

    def _timer(self, out: list[Output]) -> None:
        due = [d for link in self._links.values() if (d := link.deadline()) is not None]
        at = min(due, default=None)
        if at != self._timer_at:
            self._timer_at = at
            out.append(SetTimer(at))

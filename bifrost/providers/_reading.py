"""The read loop of a single-node loglet (memory, local): trim gaps, records below the tail,
then wait for the tail to move, and end at the tail once the loglet is sealed. And their
wait-for-tail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from bifrost.loglet import LogletEntry, Record, TailState, TrimGap
from bifrost.tail_watch import TailWatch


async def read_loglet(
    from_offset: int,
    trim_point: Callable[[], int],
    tail: TailWatch,
    fetch: Callable[[int, int], list[tuple[int, bytes]]],
) -> AsyncIterator[LogletEntry]:
    """``fetch(first, end)`` returns stored records with first <= offset < end, in order."""
    offset = from_offset
    while True:
        trimmed = trim_point()
        if offset <= trimmed:
            yield TrimGap(offset, trimmed)
            offset = trimmed + 1
            continue
        state = tail.state
        if offset < state.offset:
            for off, payload in fetch(offset, state.offset):
                if off != offset:  # trimmed meanwhile: the next pass reports the gap
                    break
                yield Record(off, payload)
                offset += 1
        elif state.sealed:
            return
        else:
            await tail.wait_for_change(state)


async def wait_for_offset(tail: TailWatch, offset: int) -> TailState:
    """The tail once it reaches ``offset`` or the loglet is sealed."""
    state = tail.state
    while state.offset < offset and not state.sealed:
        state = await tail.wait_for_change(state)
    return state

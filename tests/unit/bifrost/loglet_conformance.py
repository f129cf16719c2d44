"""Provider-agnostic checks of the loglet contract (bifrost/loglet.py).

Each function takes a loglet (fresh and empty) and raises AssertionError on a violation. The
test module runs every function against every provider; a new provider only adds a parameter.
"""

from __future__ import annotations

import asyncio
import random

from bifrost.errors import LogletSealed
from bifrost.loglet import Loglet, Record, TrimGap

DEADLINE_S = 10.0


async def read_n(loglet: Loglet, from_offset: int, n: int) -> list:
    out = []
    stream = loglet.read(from_offset)
    async with asyncio.timeout(DEADLINE_S):
        async for entry in stream:
            out.append(entry)
            if len(out) == n:
                break
    await stream.aclose()
    return out


async def read_all_sealed(loglet: Loglet, from_offset: int = 1) -> list:
    async with asyncio.timeout(DEADLINE_S):
        return [entry async for entry in loglet.read(from_offset)]


async def gapless_smoke(loglet: Loglet) -> None:
    assert (await loglet.find_tail()).offset == 1
    lasts = []
    for i in range(10):
        lasts.append(await loglet.enqueue_batch([f"r{i}-{j}".encode() for j in range(i + 1)]))
    assert lasts == [sum(range(1, i + 2)) for i in range(10)]
    tail = await loglet.find_tail()
    assert (tail.offset, tail.sealed) == (56, False)
    entries = await read_n(loglet, 1, 55)
    assert [e.offset for e in entries] == list(range(1, 56))
    assert entries[0].payload == b"r0-0" and entries[-1].payload == b"r9-9"


async def tailing_read_sees_new_records(loglet: Loglet) -> None:
    reader = asyncio.ensure_future(read_n(loglet, 1, 3))
    await asyncio.sleep(0)  # let the reader reach the empty tail first
    await loglet.enqueue_batch([b"a"])
    await loglet.enqueue_batch([b"b", b"c"])
    entries = await reader
    assert entries == [Record(1, b"a"), Record(2, b"b"), Record(3, b"c")]


async def append_after_seal(loglet: Loglet) -> None:
    await loglet.enqueue_batch([b"x", b"y"])
    await loglet.seal()
    await loglet.seal()  # idempotent
    try:
        await loglet.enqueue_batch([b"z"])
    except LogletSealed:
        pass
    else:
        raise AssertionError("append after seal was acknowledged")
    tail = await loglet.find_tail()
    assert (tail.offset, tail.sealed) == (3, True)
    assert await read_all_sealed(loglet) == [Record(1, b"x"), Record(2, b"y")]


async def seal_empty(loglet: Loglet) -> None:
    await loglet.seal()
    tail = await loglet.find_tail()
    assert (tail.offset, tail.sealed) == (1, True)
    assert await read_all_sealed(loglet) == []


async def append_racing_seal(loglet: Loglet) -> None:
    rng = random.Random(7)
    acked: dict[int, bytes] = {}

    async def appender(name: int) -> None:
        for i in range(1000):
            payload = f"{name}-{i}".encode()
            try:
                last = await loglet.enqueue_batch([payload])
            except LogletSealed:
                return
            assert last not in acked, f"offset {last} acknowledged twice"
            acked[last] = payload
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    tasks = [asyncio.ensure_future(appender(n)) for n in range(8)]
    for _ in range(50):
        await asyncio.sleep(0)
    await loglet.seal()
    await asyncio.gather(*tasks)
    tail = await loglet.find_tail()
    assert tail.sealed
    assert acked, "nothing was acknowledged before the seal"
    assert max(acked) < tail.offset, "an acknowledged offset is at or beyond the sealed tail"
    read = {e.offset: e.payload for e in await read_all_sealed(loglet)}
    for offset, payload in acked.items():
        assert read.get(offset) == payload, f"acknowledged record at {offset} not readable"
    assert sorted(read) == list(range(1, tail.offset))


async def trim_then_read(loglet: Loglet) -> None:
    await loglet.enqueue_batch([f"{i}".encode() for i in range(1, 11)])
    assert await loglet.get_trim_point() == 0
    await loglet.trim(4)
    await loglet.trim(2)  # never moves back
    assert await loglet.get_trim_point() == 4
    entries = await read_n(loglet, 1, 7)
    assert entries[0] == TrimGap(1, 4)
    assert entries[1:] == [Record(i, f"{i}".encode()) for i in range(5, 11)]
    await loglet.trim(1000)  # clamped to tail - 1
    assert await loglet.get_trim_point() == 10
    assert (await loglet.find_tail()).offset == 11
    await loglet.enqueue_batch([b"after"])
    assert await read_n(loglet, 3, 2) == [TrimGap(3, 10), Record(11, b"after")]


SUITE = [
    gapless_smoke,
    tailing_read_sees_new_records,
    append_after_seal,
    seal_empty,
    append_racing_seal,
    trim_then_read,
]

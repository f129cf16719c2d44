"""The in-memory Bifrost (bifrost.memory_bifrost): the facade's operations over memory loglets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bifrost.bifrost import Bifrost, LogRecord, LogTrimGap
from bifrost.errors import InvalidLsn, RecordTooLarge, UnknownLog
from bifrost.memory_bifrost import memory_bifrost


def run(body: Callable[[Bifrost], Awaitable[None]], **kwargs: int) -> None:
    async def main() -> None:
        b = await memory_bifrost(**kwargs)
        try:
            async with asyncio.timeout(10):
                await body(b)
        finally:
            await b.close()

    asyncio.run(main())


async def read(b: Bifrost, log_id: int, first: int, last: int) -> list[LogRecord | LogTrimGap]:
    return [e async for e in b.read(log_id, first, last)]


def test_appends_read_back_in_order_across_a_reconfiguration() -> None:
    async def body(b: Bifrost) -> None:
        assert await b.find_tail(0) == (1, False)
        assert await b.append(0, [b"a", b"b"]) == 1
        assert await b.append(0, [b"c"]) == 3
        chain = await b.reconfigure(0)
        assert [s.base_lsn for s in chain.segments] == [1, 4]
        assert await b.append(0, [b"d"]) == 4
        assert await b.find_tail(0) == (5, False)
        got = await read(b, 0, 1, 4)
        assert got == [LogRecord(1, b"a"), LogRecord(2, b"b"), LogRecord(3, b"c"), LogRecord(4, b"d")]

    run(body)


def test_logs_are_separate_and_unknown_logs_refused() -> None:
    async def body(b: Bifrost) -> None:
        assert await b.append(0, [b"zero"]) == 1
        assert await b.append(1, [b"one"]) == 1
        assert await read(b, 1, 1, 1) == [LogRecord(1, b"one")]
        with pytest.raises(UnknownLog):
            await b.append(2, [b"x"])

    run(body, num_logs=2)


def test_trim_leaves_a_gap_and_seal_stops_appends_until_reconfigured() -> None:
    async def body(b: Bifrost) -> None:
        await b.append(0, [b"1", b"2", b"3"])
        await b.trim(0, 2)
        assert await read(b, 0, 1, 3) == [LogTrimGap(1, 2), LogRecord(3, b"3")]
        with pytest.raises(InvalidLsn):
            await b.trim(0, 4)  # at the tail
        assert await b.seal(0) == 4
        assert await b.find_tail(0) == (4, True)
        await b.reconfigure(0)
        assert await b.append(0, [b"4"]) == 4

    run(body)


def test_a_follower_sees_appends_and_wait_for_tail_returns() -> None:
    async def body(b: Bifrost) -> None:
        async def follow() -> list[bytes]:
            got = []
            async for e in b.read(0, 1):
                assert isinstance(e, LogRecord)
                got.append(e.payload)
                if len(got) == 3:
                    return got
            raise AssertionError("the read ended")

        follower = asyncio.ensure_future(follow())
        waiter = asyncio.ensure_future(b.wait_for_tail(0, 3))
        for p in (b"x", b"y", b"z"):
            await b.append(0, [p])
        assert await follower == [b"x", b"y", b"z"]
        assert await waiter == 4

    run(body)


def test_record_size_limit() -> None:
    async def body(b: Bifrost) -> None:
        with pytest.raises(RecordTooLarge):
            await b.append(0, [b"x" * 101])

    run(body, max_record_bytes=100)

"""A loglet's tail watch: waiters and one-shot callbacks on each change."""

from __future__ import annotations

import asyncio

from bifrost.loglet import TailState
from bifrost.tail_watch import TailWatch


def test_a_callback_runs_once_at_the_next_change_and_can_be_cancelled() -> None:
    async def main() -> None:
        watch = TailWatch()
        seen: list[TailState] = []
        watch.call_on_change(lambda: seen.append(watch.state))
        cancelled: list[TailState] = []
        cancel = watch.call_on_change(lambda: cancelled.append(watch.state))
        cancel()
        watch.advance(1)  # no change: nobody is called
        assert seen == []
        watch.advance(5)
        assert seen == [TailState(5, False)], "called in the same turn as the change"
        watch.advance(7, sealed=True)
        assert seen == [TailState(5, False)], "once only"
        assert cancelled == []
        assert await asyncio.wait_for(watch.wait_for_change(TailState(5, False)), 1) == TailState(7, True)

    asyncio.run(main())

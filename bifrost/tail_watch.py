"""A loglet's tail as seen by one process: monotonic, and awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bifrost.loglet import TailState


class TailWatch:
    def __init__(self, offset: int = 1, sealed: bool = False) -> None:
        self._state = TailState(offset, sealed)
        self._changed = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def state(self) -> TailState:
        return self._state

    def advance(self, offset: int, sealed: bool = False) -> None:
        """Move the tail forward (never back) and/or mark it sealed (never unseal)."""
        new = TailState(max(offset, self._state.offset), sealed or self._state.sealed)
        if new != self._state:
            self._state = new
            self._changed.set()
            self._changed = asyncio.Event()
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    def call_on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback()`` once, from the next change, with no task in between (a remote reader's
        tail update leaves in the same loop turn as the commit); returns a canceller."""
        self._callbacks.append(callback)

        def cancel() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return cancel

    async def wait_for_change(self, seen: TailState) -> TailState:
        """Return as soon as the state differs from ``seen``."""
        while self._state == seen:
            await self._changed.wait()
        return self._state

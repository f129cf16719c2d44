"""A loglet's tail as seen by one process: monotonic, and awaitable."""

from __future__ import annotations

import asyncio

from bifrost.loglet import TailState


class TailWatch:
    def __init__(self, offset: int = 1, sealed: bool = False) -> None:
        self._state = TailState(offset, sealed)
        self._changed = asyncio.Event()

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

    async def wait_for_change(self, seen: TailState) -> TailState:
        """Return as soon as the state differs from ``seen``."""
        while self._state == seen:
            await self._changed.wait()
        return self._state

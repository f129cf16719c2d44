"""An in-memory ``MetadataStore``: the contract with nothing underneath, for tests of the layers
above (an in-memory Bifrost, processors) that need no durability and no other process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from metadata.core.cas import decide
from metadata.core.keys import validate_key, validate_value
from metadata.core.types import NO_PRECONDITION, Precondition, Versioned
from metadata.errors import PreconditionFailed, StoreClosed

_CLOSED = object()


class MemoryMetadataStore:
    def __init__(self) -> None:
        self._entries: dict[str, Versioned] = {}
        self._revision = 0
        self._watchers: dict[str, set[asyncio.Queue[object]]] = {}
        self._closed = False

    async def get(self, key: str) -> Versioned | None:
        validate_key(key)
        self._check_open()
        return self._entries.get(key)

    async def put(self, key: str, value: bytes, precondition: Precondition = NO_PRECONDITION) -> int:
        validate_key(key)
        validate_value(value)
        self._check_open()
        self._check(key, precondition)
        self._revision += 1
        self._set(key, Versioned(value, self._revision))
        return self._revision

    async def delete(self, key: str, precondition: Precondition = NO_PRECONDITION) -> None:
        validate_key(key)
        self._check_open()
        self._check(key, precondition)
        if key in self._entries:
            self._revision += 1  # a re-created key must not reuse a version
            self._set(key, None)

    async def watch(self, key: str) -> AsyncIterator[Versioned | None]:
        validate_key(key)
        self._check_open()
        queue: asyncio.Queue[object] = asyncio.Queue()
        # Registered before the current state is read, with no await between: no gap, no duplicate.
        self._watchers.setdefault(key, set()).add(queue)
        try:
            yield self._entries.get(key)
            while (change := await queue.get()) is not _CLOSED:
                assert change is None or isinstance(change, Versioned)
                yield change
        finally:
            self._watchers.get(key, set()).discard(queue)

    async def close(self) -> None:
        self._closed = True
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(_CLOSED)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the in-memory metadata store is closed")

    def _check(self, key: str, precondition: Precondition) -> None:
        decision = decide(self._entries.get(key), precondition)
        if not decision.applies:
            raise PreconditionFailed(decision.current_version)

    def _set(self, key: str, value: Versioned | None) -> None:
        if value is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = value
        for queue in self._watchers.get(key, set()):
            queue.put_nowait(value)

"""The node's copy of the schema registry, for the ingress's hot path.

The schema lives in the metadata store under ``SCHEMA_KEY`` (``metadata.schema``); reading it
there on every request would cost a store read (an etcd round trip in a cluster) per
invocation. ``SchemaCache`` keeps the latest decoded ``Schema`` in memory, follows the key with
the store's watch, and keeps whichever version is highest (versions only grow), so a watch that
lags never moves it backwards.

A watch delivers changes a little after they commit; a request naming a service registered a
moment ago (on this node or another) must not get a 404 for that. Callers therefore call
``refresh()`` -- a linearizable read -- before answering "not found"; concurrent refreshes share
one read, so a burst of requests for an unknown name costs one store read at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from metadata.schema import SCHEMA_KEY, Schema, decode_schema
from metadata.store import MetadataStore

log = logging.getLogger(__name__)

# Pause before re-opening a watch that failed (the store is down, or closing).
WATCH_RETRY_S = 1.0


class SchemaCache:
    """The latest schema seen; ``start()`` follows changes until ``stop()``."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._schema = Schema()
        self._version = 0
        self._refreshing: asyncio.Task[Schema] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set and replaced at every adopted change

    @property
    def current(self) -> Schema:
        return self._schema

    @property
    def version(self) -> int:
        """The metadata version of ``current`` (0: nothing stored yet)."""
        return self._version

    def offer(self, raw: bytes | None, version: int) -> Schema:
        """Adopt the stored value at ``version`` if it is newer than what we hold."""
        if version > self._version:
            self._schema = decode_schema(raw)
            self._version = version
            self._changed.set()
            self._changed = asyncio.Event()
        return self._schema

    async def wait_for(self, version: int) -> Schema:
        """The schema once this cache holds ``version`` or a later one."""
        while self._version < version:
            await self._changed.wait()
        return self._schema

    async def refresh(self) -> Schema:
        """Read the store now (one read shared by concurrent callers) and return the newest schema."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._refreshing)

    async def _read(self) -> Schema:
        current = await self._store.get(SCHEMA_KEY)
        if current is None:
            return self._schema
        return self.offer(current.value, current.version)

    async def start(self) -> None:
        """Load the schema once, then follow it in the background."""
        await self.refresh()
        self._watcher = asyncio.create_task(self._watch(), name="schema-cache-watch")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _watch(self) -> None:
        while True:
            try:
                async with contextlib.aclosing(self._store.watch(SCHEMA_KEY)) as changes:
                    async for change in changes:
                        if change is not None:
                            self.offer(change.value, change.version)
                return  # the store was closed
            except Exception as error:  # any failure: the cache must keep following, reads refresh meanwhile
                log.warning("schema watch failed, retrying", extra={"error": repr(error)})
            await asyncio.sleep(WATCH_RETRY_S)

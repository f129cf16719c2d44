"""The single-node metadata store: RocksDB on local disk, every write synced.

Shape: the whole key space lives in memory (metadata is small: nodes, chains, partition table,
schema), RocksDB is its durable copy. Reads and watches are served from memory; writes are
serialised by one lock, decided by the CAS core against memory, written as one synced WriteBatch
(the entry plus the store revision), and only then applied to memory and announced to watchers.
Because memory changes only after the sync, a reader never sees a value that a crash could lose.

A key's version is the store revision of its last modification (like etcd's ``mod_revision``):
one counter for the whole store, persisted in the same batch as the entry, so a re-created key
always gets a version above anything it had before.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from metadata.core.cas import decide
from metadata.core.keys import validate_key, validate_value
from metadata.core.types import NO_PRECONDITION, Precondition, Versioned
from metadata.errors import MetadataError, PreconditionFailed, StoreClosed, UnknownOutcome
from metadata.local_format import (
    REVISION_KEY,
    KeyKind,
    decode_entry,
    decode_revision,
    encode_entry,
    encode_revision,
    entry_key,
    key_of_entry,
)


class _End(enum.Enum):
    CLOSED = "closed"


_Change = Versioned | None | _End


class LocalMetadataStore:
    """``MetadataStore`` on a local RocksDB directory. Open with ``LocalMetadataStore.open(path)``.

    Only one store may have a directory open at a time (RocksDB's lock enforces it). Watchers get
    every change, each on its own unbounded queue: fine at metadata's write rates.
    """

    def __init__(self, db: Rdict, path: Path, entries: dict[str, Versioned], revision: int) -> None:
        self._db = db
        self._path = path
        self._entries = entries
        self._revision = revision
        self._write_options = WriteOptions()
        self._write_options.sync = True
        self._write_lock = asyncio.Lock()
        self._watchers: dict[str, set[asyncio.Queue[_Change]]] = {}
        self._inflight: set[asyncio.Task[int | None]] = set()
        self._closed = False
        self._failure: BaseException | None = None

    @classmethod
    def open(cls, path: str | Path) -> LocalMetadataStore:
        """Open (or create) the store in directory ``path`` and load it into memory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        try:
            db = Rdict(str(path), options)
        except Exception as error:  # rocksdict raises bare Exception for lock and I/O errors
            raise MetadataError(f"cannot open the local metadata store at {path}: {error}") from error
        try:
            entries, revision = _load(db)
        except BaseException:
            db.close()
            raise
        return cls(db, path, entries, revision)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def revision(self) -> int:
        """The version given to the last modification (0 for a new store)."""
        return self._revision

    async def get(self, key: str) -> Versioned | None:
        validate_key(key)
        self._check_open()
        return self._entries.get(key)

    async def put(self, key: str, value: bytes, precondition: Precondition = NO_PRECONDITION) -> int:
        validate_key(key)
        validate_value(value)
        version = await self._commit(key, value, precondition)
        assert version is not None  # a put that applies always writes
        return version

    async def delete(self, key: str, precondition: Precondition = NO_PRECONDITION) -> None:
        validate_key(key)
        await self._commit(key, None, precondition)

    async def watch(self, key: str) -> AsyncIterator[Versioned | None]:
        validate_key(key)
        self._check_open()
        queue: asyncio.Queue[_Change] = asyncio.Queue()
        # Registering and reading the current state with no await in between means the first
        # queued change is exactly the one after the state we yield: no gap, no duplicate.
        self._watchers.setdefault(key, set()).add(queue)
        try:
            yield self._entries.get(key)
            while True:
                change = await queue.get()
                if change is _End.CLOSED:
                    return
                yield change
        finally:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[key]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Writes already past their checks finish (their callers may have been cancelled, but the
        # sync may be under way); anything still queued on the lock sees the store closed.
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        self._db.close()
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(_End.CLOSED)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the local metadata store at {self._path} is closed")
        if self._failure is not None:
            raise StoreClosed(
                f"the local metadata store at {self._path} failed a write ({self._failure}); reopen it"
            )

    async def _commit(self, key: str, value: bytes | None, precondition: Precondition) -> int | None:
        self._check_open()
        # The commit runs as its own task, shielded: a caller cancelled mid-fsync must not leave
        # the disk updated but memory and watchers stale.
        task = asyncio.get_running_loop().create_task(self._commit_locked(key, value, precondition))
        self._inflight.add(task)
        task.add_done_callback(_forget(self._inflight))
        return await asyncio.shield(task)

    async def _commit_locked(self, key: str, value: bytes | None, precondition: Precondition) -> int | None:
        async with self._write_lock:
            self._check_open()
            current = self._entries.get(key)
            decision = decide(current, precondition)
            if not decision.applies:
                raise PreconditionFailed(decision.current_version)
            if value is None and current is None:
                return None  # deleting an absent key changes nothing, so it takes no revision
            revision = self._revision + 1
            new = None if value is None else Versioned(value, revision)
            batch = WriteBatch(raw_mode=True)
            if new is None:
                batch.delete(entry_key(key))
            else:
                batch.put(entry_key(key), encode_entry(new))
            batch.put(REVISION_KEY, encode_revision(revision))
            try:
                # rocksdict holds the GIL during the fsync; a thread at least keeps the loop's
                # other callbacks from queueing behind the whole write call.
                await asyncio.to_thread(self._db.write, batch, self._write_options)
            except Exception as error:
                # The batch may or may not be on disk: memory can no longer be trusted to match.
                self._failure = error
                raise UnknownOutcome(f"local metadata write of {key!r} failed: {error}") from error
            self._revision = revision
            if new is None:
                del self._entries[key]
            else:
                self._entries[key] = new
            for queue in self._watchers.get(key, ()):
                queue.put_nowait(new)
            return revision


def _load(db: Rdict) -> tuple[dict[str, Versioned], int]:
    entries: dict[str, Versioned] = {}
    raw_revision = db.get(REVISION_KEY)
    revision = 0 if raw_revision is None else decode_revision(raw_revision)
    for raw_key, raw_value in db.items(from_key=KeyKind.ENTRY.value):
        if not raw_key.startswith(KeyKind.ENTRY.value):
            break
        entries[key_of_entry(raw_key)] = decode_entry(raw_value)
    return entries, revision


def _forget(tasks: set[asyncio.Task[int | None]]) -> Callable[[asyncio.Task[int | None]], None]:
    def done(task: asyncio.Task[int | None]) -> None:
        tasks.discard(task)
        # Mark the exception retrieved: the caller may have been cancelled and never look.
        if not task.cancelled():
            task.exception()

    return done

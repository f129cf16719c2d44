"""The local loglet: one node, RocksDB, group commit. Every loglet of the node shares one DB;
`LocalProvider` serves them to Bifrost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from rocksdict import Options, Rdict, ReadOptions

from bifrost.core._types import GenerationalNodeId, LogletParams, NodeId
from bifrost.errors import LogletSealed
from bifrost.log_server.writer import GroupCommitWriter
from bifrost.loglet import LogletEntry, LogletProvider, TailState
from bifrost.providers import local_keys as keys
from bifrost.providers._reading import read_loglet, wait_for_offset
from bifrost.tail_watch import TailWatch

# Records handed to a reader per RocksDB iterator pass.
_READ_CHUNK = 256


class LocalLogletStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), Options(raw_mode=True))
        self._writer = GroupCommitWriter(self._db)
        self._loglets: dict[int, LocalLoglet] = {}

    def loglet(self, loglet_id: int) -> LocalLoglet:
        if loglet_id not in self._loglets:
            self._loglets[loglet_id] = LocalLoglet(self, loglet_id)
        return self._loglets[loglet_id]

    @property
    def writer(self) -> GroupCommitWriter:
        return self._writer

    @property
    def db(self) -> Rdict:
        return self._db

    async def close(self) -> None:
        await self._writer.close()
        self._db.close()

    def last_offset(self, loglet_id: int) -> int:
        it = self._db.iter()
        it.seek_for_prev(keys.data_upper_bound(loglet_id))
        if it.valid() and it.key()[:9] == keys.data_key(loglet_id, 0)[:9]:
            return keys.data_key_offset(it.key())
        return 0

    def read_range(self, loglet_id: int, first: int, end: int) -> list[tuple[int, bytes]]:
        opts = ReadOptions()
        opts.set_iterate_upper_bound(keys.data_key(loglet_id, end))
        it = self._db.iter(opts)
        it.seek(keys.data_key(loglet_id, first))
        out = []
        while it.valid() and len(out) < _READ_CHUNK:
            out.append((keys.data_key_offset(it.key()), it.value()))
            it.next()
        return out


class LocalLoglet:
    def __init__(self, store: LocalLogletStore, loglet_id: int) -> None:
        self._store = store
        self._id = loglet_id
        db = store.db
        sealed = db.get(keys.seal_key(loglet_id)) is not None
        trim = db.get(keys.trim_key(loglet_id))
        self._trim_point = keys.decode_u64(trim) if trim is not None else 0
        tail = max(store.last_offset(loglet_id), self._trim_point) + 1
        self._next = tail
        self._tail = TailWatch(tail, sealed)
        # Set when seal() is called, before the seal is durable: no batch may be enqueued after it.
        self._sealing = sealed

    @property
    def loglet_id(self) -> int:
        return self._id

    def enqueue_batch(
        self, payloads: Sequence[bytes], *, appender: int = 0, first_seq: int = 0, prev_seq: int = 0
    ) -> asyncio.Future[int]:
        # In-process: a batch is never resent, so the appender's sequence numbers are not needed.
        loop = asyncio.get_running_loop()
        if self._sealing:
            fut: asyncio.Future[int] = loop.create_future()
            fut.set_exception(LogletSealed(self._next))
            return fut
        first = self._next
        self._next += len(payloads)
        ops = [(keys.data_key(self._id, first + i), p) for i, p in enumerate(payloads)]
        durable = self._store.writer.submit(ops)
        last = self._next - 1
        return asyncio.ensure_future(self._commit(durable, last))

    async def _commit(self, durable: asyncio.Future[None], last: int) -> int:
        await durable
        # The writer resolves write sets in submission order, so everything before is durable.
        self._tail.advance(last + 1)
        return last

    async def find_tail(self) -> TailState:
        return self._tail.state

    async def wait_for_tail(self, offset: int) -> TailState:
        return await wait_for_offset(self._tail, offset)

    async def seal(self) -> int:
        self._sealing = True
        # Queued behind every enqueued batch: the sealed tail covers all of them.
        await self._store.writer.submit([(keys.seal_key(self._id), b"\x01")])
        self._tail.advance(self._next, sealed=True)
        return self._tail.state.offset

    def mark_sealed(self, tail: int) -> None:
        """A single copy's own seal is where the chain ends it: nothing to learn."""

    async def trim(self, offset: int) -> None:
        offset = min(offset, self._tail.state.offset - 1)
        if offset <= self._trim_point:
            return
        await self._store.writer.submit([(keys.trim_key(self._id), keys.encode_u64(offset))])
        self._trim_point = offset
        # The trim point is durable first, so a crash mid-delete only leaves unreachable records.
        self._store.db.delete_range(keys.data_key(self._id, 0), keys.data_key(self._id, offset + 1))

    async def get_trim_point(self) -> int:
        return self._trim_point

    def read(self, from_offset: int) -> AsyncIterator[LogletEntry]:
        return read_loglet(
            from_offset,
            lambda: self._trim_point,
            self._tail,
            lambda first, end: self._store.read_range(self._id, first, end),
        )


class LocalProvider(LogletProvider):
    """The local loglets of one node, in one RocksDB at ``path``."""

    def __init__(self, path: Path, me: GenerationalNodeId | None = None) -> None:
        self.me = me or GenerationalNodeId(1, 1)
        self._store = LocalLogletStore(path)

    def loglet(self, params: LogletParams) -> LocalLoglet:
        return self._store.loglet(params.loglet_id)

    def is_dead(self, node: NodeId) -> bool:
        return False

    def is_stale(self, process: GenerationalNodeId) -> bool:
        return False

    async def close(self) -> None:
        await self._store.close()

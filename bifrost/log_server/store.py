"""The log-server's durable state in RocksDB: the core's ``LogStorage`` (reads) plus the
translation of a core ``Persist`` into one write set for the group-commit writer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
from rocksdict import AccessType, Options, Rdict, ReadOptions, WriteOptions

from bifrost.core import (
    LogletState,
    PutKnownGlobalTail,
    PutLocalTail,
    PutRecords,
    PutSealed,
    PutSequencer,
    PutTrimPoint,
    Write,
)
from bifrost.core._types import GenerationalNodeId
from bifrost.log_server import keys
from bifrost.log_server.storage_state import StoreIdentity
from bifrost.log_server.writer import DeleteRange, GroupCommitWriter, Ops


class RocksLogStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), Options(raw_mode=True))
        self.writer = GroupCommitWriter(self.db)

    async def close(self) -> None:
        await self.writer.close()
        self.db.close()

    # --- identity ---

    def identity(self) -> StoreIdentity | None:
        return _decode_identity(self.db.get(keys.IDENTITY))

    @staticmethod
    def read_identity(path: Path) -> StoreIdentity | None:
        """The marker of the store at ``path`` without creating or changing anything (None when
        there is no store there, or a store without a marker)."""
        if not path.is_dir() or not any(path.iterdir()):
            return None
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            return _decode_identity(db.get(keys.IDENTITY))
        finally:
            db.close()

    def write_identity(self, identity: StoreIdentity) -> None:
        """Once, when the store is created; synced, because the nodes configuration will vouch
        for it."""
        opts = WriteOptions()
        opts.sync = True
        self.db.put(keys.IDENTITY, msgspec.msgpack.encode(identity), opts)

    # --- LogStorage ---

    def _u64(self, loglet_id: int, field: bytes, default: int) -> int:
        raw = self.db.get(keys.meta_key(loglet_id, field))
        return default if raw is None else keys.U64.unpack(raw)[0]

    def load_loglet(self, loglet_id: int) -> LogletState:
        seq_raw = self.db.get(keys.meta_key(loglet_id, keys.SEQUENCER))
        sequencer = None if seq_raw is None else GenerationalNodeId(*keys.NODE_GEN.unpack(seq_raw))
        return LogletState(
            local_tail=self._u64(loglet_id, keys.LOCAL_TAIL, 1),
            sealed=self.db.get(keys.meta_key(loglet_id, keys.SEALED)) is not None,
            sequencer=sequencer,
            trim_point=self._u64(loglet_id, keys.TRIM_POINT, 0),
            known_global_tail=self._u64(loglet_id, keys.GLOBAL_TAIL, 1),
        )

    def read(self, loglet_id: int, from_offset: int, to_offset: int) -> Iterator[tuple[int, bytes]]:
        opts = ReadOptions()
        opts.set_iterate_upper_bound(keys.data_key(loglet_id, to_offset + 1))
        it = self.db.iter(opts)
        it.seek(keys.data_key(loglet_id, from_offset))
        while it.valid():
            yield keys.data_offset(it.key()), it.value()
            it.next()

    # --- Persist -> one write set ---

    def ops_for(self, writes: Sequence[Write]) -> Ops:
        ops: list[tuple[bytes, bytes | None | DeleteRange]] = []
        for w in writes:
            lid = w.loglet_id
            match w:
                case PutRecords(first_offset=first, payloads=payloads):
                    ops.extend((keys.data_key(lid, first + i), p) for i, p in enumerate(payloads))
                case PutLocalTail(local_tail=t):
                    ops.append((keys.meta_key(lid, keys.LOCAL_TAIL), keys.U64.pack(t)))
                case PutKnownGlobalTail(known_global_tail=t):
                    ops.append((keys.meta_key(lid, keys.GLOBAL_TAIL), keys.U64.pack(t)))
                case PutSequencer(sequencer=s):
                    ops.append((keys.meta_key(lid, keys.SEQUENCER), keys.NODE_GEN.pack(s.node, s.generation)))
                case PutSealed():
                    ops.append((keys.meta_key(lid, keys.SEALED), b"\x01"))
                case PutTrimPoint(trim_point=p):
                    ops.append((keys.meta_key(lid, keys.TRIM_POINT), keys.U64.pack(p)))
                    ops.append((keys.data_key(lid, 0), DeleteRange(keys.data_key(lid, p + 1))))
                case _:
                    raise TypeError(f"unknown write {w!r}")
        return ops


def _decode_identity(raw: bytes | None) -> StoreIdentity | None:
    return None if raw is None else msgspec.msgpack.decode(raw, type=StoreIdentity)

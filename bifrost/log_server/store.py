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
    StorageError,
    Write,
)
from bifrost.core._types import GenerationalNodeId
from bifrost.log_server import keys
from bifrost.log_server.storage_state import StoreIdentity
from bifrost.log_server.writer import DeleteRange, GroupCommitWriter, Ops


class StoreOpenError(Exception):
    """The store cannot be opened or does not pass its check; one line, naming the file."""


class RocksLogStore:
    def __init__(self, path: Path, *, verify: bool = True, fault_file: Path | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = _open(path)
        self._closed = False
        self._fault_file = fault_file
        self.writer = GroupCommitWriter(self.db, fault_file=fault_file)
        if verify:
            self.verify()

    async def close(self) -> None:
        await self.writer.close()
        if not self._closed:
            self._closed = True
            self.db.close()

    def verify(self) -> int:
        """Read every key with checksums checked (RocksDB checks blocks only when they are read,
        and its iterator ends silently at a bad block): a corrupted store is refused at start,
        not discovered by a reader later. Returns the number of keys read."""
        it = self.db.iter()
        it.seek_to_first()
        n = 0
        while it.valid():
            n += 1
            it.next()
        try:
            it.status()
        except Exception as e:  # rocksdict raises bare Exception with RocksDB's status text
            raise StoreOpenError(
                f"the log-server store at {self.path} is corrupted: {_one_line(e)}"
            ) from None
        return n

    def reopen(self) -> None:
        """Close and open the database again: after a failed WAL write RocksDB refuses every
        write until it is reopened. Unsynced state is rebuilt from its WAL, as after a crash.
        When the open fails (the disk is still full) the store stays closed; call again."""
        self.writer.stop()
        if not self._closed:
            self._closed = True
            self.db.close()
        self.db = _open(self.path)
        self._closed = False
        self.writer = GroupCommitWriter(self.db, fault_file=self._fault_file)

    def probe_write(self) -> None:
        """One synced write and delete of a probe key: raises when the disk still cannot take it."""
        opts = WriteOptions()
        opts.sync = True
        self.db.put(keys.PROBE, b"\x01", opts)
        self.db.delete(keys.PROBE, opts)

    # --- identity ---

    def identity(self) -> StoreIdentity | None:
        return _decode_identity(self.db.get(keys.IDENTITY))

    @staticmethod
    def read_identity(path: Path) -> StoreIdentity | None:
        """The marker of the store at ``path`` without creating or changing anything (None when
        there is no store there, or a store without a marker)."""
        if not path.is_dir() or not any(path.iterdir()):
            return None
        db = _open(path, read_only=True)
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
        try:
            seq_raw = self.db.get(keys.meta_key(loglet_id, keys.SEQUENCER))
            sequencer = None if seq_raw is None else GenerationalNodeId(*keys.NODE_GEN.unpack(seq_raw))
            return LogletState(
                local_tail=self._u64(loglet_id, keys.LOCAL_TAIL, 1),
                sealed=self.db.get(keys.meta_key(loglet_id, keys.SEALED)) is not None,
                sequencer=sequencer,
                trim_point=self._u64(loglet_id, keys.TRIM_POINT, 0),
                known_global_tail=self._u64(loglet_id, keys.GLOBAL_TAIL, 1),
            )
        except Exception as e:  # rocksdict raises bare Exception for I/O errors and corruption
            raise StorageError(_one_line(e)) from None

    def read(self, loglet_id: int, from_offset: int, to_offset: int) -> Iterator[tuple[int, bytes]]:
        opts = ReadOptions()
        opts.set_iterate_upper_bound(keys.data_key(loglet_id, to_offset + 1))
        it = self.db.iter(opts)
        it.seek(keys.data_key(loglet_id, from_offset))
        while it.valid():
            yield keys.data_offset(it.key()), it.value()
            it.next()
        # The iterator also stops at a block it cannot read: only its status tells the two apart.
        try:
            it.status()
        except Exception as e:
            raise StorageError(_one_line(e)) from None

    # --- Persist -> one write set ---

    def ops_for(self, writes: Sequence[Write]) -> Ops:
        ops: list[tuple[bytes, bytes | None | DeleteRange]] = []
        for w in writes:
            lid = w.loglet_id
            match w:
                case PutRecords(first_offset=first, payloads=payloads):
                    ops.extend(zip(keys.data_keys(lid, first, len(payloads)), payloads, strict=True))
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


def _open(path: Path, *, read_only: bool = False) -> Rdict:
    options = Options(raw_mode=True)
    options.set_paranoid_checks(True)
    try:
        if read_only:
            return Rdict(str(path), options, access_type=AccessType.read_only())
        return Rdict(str(path), options)
    except Exception as e:  # rocksdict raises bare Exception for lock, I/O and corruption errors
        raise StoreOpenError(f"cannot open the log-server store at {path}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

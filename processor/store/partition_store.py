"""The partition store: one RocksDB per node holding every partition of that node.

    store = PartitionStore(path)                 # opened once per node
    part = store.partition(3)                    # a handle; keys carry the partition id
    txn = part.transaction()                     # a `Tables` over committed state
    ... apply a batch of records through txn, txn.set_applied_lsn(lsn), txn.set_dedup(...) ...
    txn.commit()                                 # ONE WriteBatch: changes + applied LSN + dedup

A transaction reads through to the database (point gets, bounded iterators) and sees its own
pending writes; nothing it writes is visible to anyone else before `commit()`, which writes all
of it as one RocksDB WriteBatch (atomic: after a crash the store holds all of a batch or none of
it). Because the applied LSN is in the batch it belongs to, the store's applied LSN always
describes exactly the records its contents reflect: restarting at ``applied_lsn + 1`` never
applies a record twice or half. One writer per partition: a partition's processor runs one
transaction at a time (two concurrent transactions would not see each other, and the later
commit would win).

**Durability of a commit** (see `Durability`): the log is the write-ahead log of the partition
store, so a commit needs to be atomic, not durable. The default, `Durability.WAL`, writes the
RocksDB WAL without an fsync per commit: a killed process loses nothing (the WAL is in the OS
page cache), a machine crash may lose the last unsynced batches, and the store then restarts
from an older, consistent applied LSN (point-in-time WAL recovery drops a torn tail) and replays
them from the log. This relies on the log keeping the records above every replica's persisted
applied LSN, which trimming must respect (`PartitionStore.sync` persists the applied LSNs read
before it).

Measured with bench/partition_store.py on this 2-core VM while other work shared it (load 3-5;
ranges over 3 runs), ``commit()`` of a typical invocation-step batch (status put, 2 journal
entries, 1 state put, applied LSN, dedup: 7 writes), beside a 4-KiB write + fsync on the same disk
sampled in the same runs:

    WAL, no sync (default)   p50 0.016-0.037 ms   p99 0.11-4.1 ms
    WAL + fsync per commit   p50 0.35-3.8 ms      p99 8-12 ms      = the fsync floor of the run
    no WAL (Restate's)       p50 0.010-0.018 ms   p99 0.04-0.12 ms
    4-KiB write + fsync      p50 0.27-5.8 ms      p99 7.7-13 ms

With the default, one writer applies 4.7-8.5k one-record batches/s and 8-23k records/s in
batches of 8 or 32: Python-bound (a step's reads, value encoding and keys cost 25-40 us; commit
itself is a few us per record). A synced commit costs a whole fsync and holds the GIL meanwhile
(rocksdict), for no safety the log does not already give; WAL-off saves a few microseconds and
loses every unflushed batch on a plain process kill, turning each restart into a long replay.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path
from typing import Final, TypeVar

from rocksdict import DBRecoveryMode, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from processor.core import (
    AnnounceLeader,
    Dedup,
    InvocationIdBytes,
    InvocationStatus,
    JournalEntry,
    OutboxMessage,
    ProducerId,
    PromiseRow,
    RecordFormatError,
    TimerKey,
    decode,
    encode,
)
from processor.store import keys
from processor.store.errors import (
    StoreAheadOfLog,
    StoreOpenError,
    StoreReadError,
    StoreWriteError,
)

T = TypeVar("T")

_U64_END: Final = 1 << 64
_EMPTY: Final = b""
_first = itemgetter(0)


class Durability(enum.Enum):
    """How a commit reaches the disk (module docstring: what each costs and risks)."""

    WAL = "wal"
    """WAL written, not synced per commit: survives a process crash; a machine crash loses the
    last batches, which are replayed from the log. The default."""
    WAL_SYNC = "wal-sync"
    """WAL written and fsynced by every commit."""
    NO_WAL = "no-wal"
    """Memtable only until RocksDB flushes (Restate's choice): a process crash loses every
    unflushed batch. Safe only while the log keeps everything above the flushed applied LSN."""

    def write_options(self) -> WriteOptions:
        opts = WriteOptions()
        opts.sync = self is Durability.WAL_SYNC
        opts.disable_wal = self is Durability.NO_WAL
        return opts


def check_not_ahead(applied_lsn: int, log_tail: int, *, partition: int) -> None:
    """Refuse a store that has applied records its log does not hold (``log_tail`` is the log's
    next LSN to be written, as `Bifrost.find_tail` returns it; LSNs start at 1)."""
    if applied_lsn >= log_tail:
        ends = "is empty" if log_tail <= 1 else f"ends at {log_tail - 1}"
        raise StoreAheadOfLog(
            f"partition {partition}'s store has applied LSN {applied_lsn} but its log {ends}: the store "
            "belongs to another log or the log lost records; the processor will not run on it "
            "(restore the partition from a snapshot, or remove this node's partition store so it "
            "rebuilds from the log)",
            partition=partition,
            applied_lsn=applied_lsn,
            log_tail=log_tail,
        )


class PartitionStore:
    """One RocksDB (raw mode) for every partition of a node; see the module docstring."""

    def __init__(self, path: Path, durability: Durability = Durability.WAL) -> None:
        self.path = path
        self.durability = durability
        path.mkdir(parents=True, exist_ok=True)
        self._db = _open(path)
        self._write_options = durability.write_options()
        self._partitions: dict[int, PartitionHandle] = {}

    def partition(self, partition_id: int) -> PartitionHandle:
        handle = self._partitions.get(partition_id)
        if handle is None:
            keys.FSM.prefix(partition_id)  # a clear error now for an id the layout cannot hold
            handle = self._partitions[partition_id] = PartitionHandle(self, partition_id)
        return handle

    def sync(self) -> None:
        """Make every commit so far durable: fsync the WAL, or flush the memtable without a WAL.
        Applied LSNs read before the call are persisted once it returns: the point up to which
        a log trim may rely on this store."""
        try:
            if self.durability is Durability.NO_WAL:
                self._db.flush(True)
            else:
                self._db.flush_wal(True)
        except Exception as e:
            raise StoreWriteError(f"partition store at {self.path}: sync failed: {_one_line(e)}") from None

    def close(self) -> None:
        """Flush and close (a clean close leaves nothing to recover, whatever the durability)."""
        self._db.close()

    def __enter__(self) -> PartitionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- database access, every error typed and naming the store ---

    def _get(self, key: bytes) -> bytes | None:
        try:
            return self._db.get(key)
        except Exception as e:  # rocksdict raises bare Exception with RocksDB's status text
            raise StoreReadError(
                f"partition store at {self.path}: cannot read key {key.hex()}: {_one_line(e)}"
            ) from None

    def _rows(self, lower: bytes, upper: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Committed rows in [lower, upper), in key order."""
        opts = ReadOptions()
        opts.set_iterate_upper_bound(upper)
        try:
            it = self._db.iter(opts)
            # seek, not seek_to_first: the latter ignores a lower bound.
            it.seek(lower)
            while it.valid():
                yield it.key(), it.value()
                it.next()
            # The iterator also ends at a block it cannot read: only its status tells the two apart.
            it.status()
        except Exception as e:
            raise StoreReadError(
                f"partition store at {self.path}: cannot scan from key {lower.hex()}: {_one_line(e)}"
            ) from None

    def _write(self, writes: dict[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        try:
            self._db.write(batch, self._write_options)
        except Exception as e:
            raise StoreWriteError(f"partition store at {self.path}: commit failed: {_one_line(e)}") from None

    def _decode(self, value_type: type[T], key: bytes, raw: bytes) -> T:
        try:
            return decode(value_type, raw)
        except RecordFormatError as e:
            raise StoreReadError(f"partition store at {self.path}: key {key.hex()}: {e}") from None


class PartitionHandle:
    """One partition of a `PartitionStore`: transactions, and reads of committed state for the
    processor's start and the invoker (each read is consistent on its own, not with the next)."""

    def __init__(self, store: PartitionStore, partition_id: int) -> None:
        self.store = store
        self.partition_id = partition_id
        self._fsm_keys = {var: keys.FSM.encode(partition_id, var) for var in keys.FsmVar}

    def transaction(self) -> StoreTransaction:
        return StoreTransaction(self.store, self.partition_id, self._fsm_keys)

    # --- reads of committed state, outside any transaction ---

    def applied_lsn(self) -> int:
        return self.transaction().applied_lsn()

    def check_not_ahead(self, log_tail: int) -> int:
        """`check_not_ahead` on this partition's applied LSN; returns the applied LSN."""
        applied = self.applied_lsn()
        check_not_ahead(applied, log_tail, partition=self.partition_id)
        return applied

    def get_status(self, invocation_id: InvocationIdBytes) -> InvocationStatus | None:
        return self.transaction().get_status(invocation_id)

    def journal(
        self, invocation_id: InvocationIdBytes, from_index: int = 0
    ) -> Iterator[tuple[int, JournalEntry]]:
        return self.transaction().journal(invocation_id, from_index)

    def all_state(self, service: str, key: str) -> Iterator[tuple[bytes, bytes]]:
        return self.transaction().all_state(service, key)

    def statuses(self) -> Iterator[tuple[InvocationIdBytes, InvocationStatus]]:
        """Every invocation's committed status (a new leader re-invokes the running ones)."""
        decode_value = self.store._decode
        for k, v in self.store._rows(*keys.STATUS.bounds(self.partition_id)):
            yield keys.STATUS.decode(k)[1], decode_value(InvocationStatus, k, v)

    def timers(self) -> list[TimerKey]:
        return list(self.transaction().timers())

    def outbox(self) -> list[tuple[int, OutboxMessage]]:
        return list(self.transaction().outbox())

    def leader(self) -> AnnounceLeader | None:
        return self.transaction().leader()


class StoreTransaction:
    """`processor.core.Tables` over one partition of the store, committed by `commit()`.

    Scans return iterators over rows already read in full: a scan never hands out part of a
    range and then fails, and no RocksDB iterator outlives the call."""

    def __init__(self, store: PartitionStore, partition_id: int, fsm_keys: dict[keys.FsmVar, bytes]) -> None:
        self._store = store
        self._p = partition_id
        self._fsm_keys = fsm_keys
        # Pending writes by key, None = delete; written in this order by commit().
        self._writes: dict[bytes, bytes | None] = {}
        self._committed = False

    def commit(self) -> None:
        self._check_open()
        if self._writes:
            self._store._write(self._writes)
        self._committed = True

    # --- overlay plumbing ---

    def _read(self, key: bytes) -> bytes | None:
        writes = self._writes
        if key in writes:
            return writes[key]
        return self._store._get(key)

    def _put(self, key: bytes, value: bytes | None) -> None:
        self._check_open()
        self._writes[key] = value

    def _check_open(self) -> None:
        if self._committed:
            raise RuntimeError("transaction already committed")

    def _scan(self, lower: bytes, upper: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Committed rows in [lower, upper) with this transaction's writes laid over them."""
        mine = sorted(((k, v) for k, v in self._writes.items() if lower <= k < upper), key=_first)
        if not mine:
            yield from self._store._rows(lower, upper)
            return
        i, n = 0, len(mine)
        for key, value in self._store._rows(lower, upper):
            while i < n and mine[i][0] < key:
                if mine[i][1] is not None:
                    yield mine[i]  # type: ignore[misc]
                i += 1
            if i < n and mine[i][0] == key:
                if mine[i][1] is not None:
                    yield mine[i]  # type: ignore[misc]
                i += 1
            else:
                yield key, value
        for row in mine[i:]:
            if row[1] is not None:
                yield row  # type: ignore[misc]

    def _delete_range(self, lower: bytes, upper: bytes) -> None:
        self._check_open()
        for key, _ in list(self._scan(lower, upper)):
            self._put(key, None)

    def _counter(self, var: keys.FsmVar) -> int:
        key = self._fsm_keys[var]
        raw = self._read(key)
        value = 1 if raw is None else self._store._decode(int, key, raw) + 1
        self._put(key, encode(value))
        return value

    # --- fsm ---

    def applied_lsn(self) -> int:
        key = self._fsm_keys[keys.FsmVar.APPLIED_LSN]
        raw = self._read(key)
        return 0 if raw is None else self._store._decode(int, key, raw)

    def set_applied_lsn(self, lsn: int) -> None:
        self._put(self._fsm_keys[keys.FsmVar.APPLIED_LSN], encode(lsn))

    def dedup(self, producer: ProducerId) -> Dedup | None:
        key = keys.DEDUP.encode(self._p, producer)
        raw = self._read(key)
        return None if raw is None else self._store._decode(Dedup, key, raw)  # type: ignore[arg-type]

    def set_dedup(self, producer: ProducerId, seq: Dedup) -> None:
        self._put(keys.DEDUP.encode(self._p, producer), encode(seq))

    def leader(self) -> AnnounceLeader | None:
        key = self._fsm_keys[keys.FsmVar.LEADER]
        raw = self._read(key)
        return None if raw is None else self._store._decode(AnnounceLeader, key, raw)

    def set_leader(self, announcement: AnnounceLeader) -> None:
        self._put(self._fsm_keys[keys.FsmVar.LEADER], encode(announcement))

    def next_inbox_seq(self) -> int:
        return self._counter(keys.FsmVar.INBOX_SEQ)

    def next_outbox_index(self) -> int:
        return self._counter(keys.FsmVar.OUTBOX_INDEX)

    # --- invocation status ---

    def get_status(self, invocation_id: InvocationIdBytes) -> InvocationStatus | None:
        key = keys.STATUS.encode(self._p, invocation_id)
        raw = self._read(key)
        return None if raw is None else self._store._decode(InvocationStatus, key, raw)

    def put_status(self, invocation_id: InvocationIdBytes, status: InvocationStatus) -> None:
        self._put(keys.STATUS.encode(self._p, invocation_id), encode(status))

    def delete_status(self, invocation_id: InvocationIdBytes) -> None:
        self._put(keys.STATUS.encode(self._p, invocation_id), None)

    # --- journal ---

    def journal(
        self, invocation_id: InvocationIdBytes, from_index: int = 0
    ) -> Iterator[tuple[int, JournalEntry]]:
        _, upper = keys.JOURNAL.bounds(self._p, invocation_id)
        lower = keys.JOURNAL.encode(self._p, invocation_id, max(from_index, 0))
        decode_entry = self._store._decode
        return iter(
            [
                (keys.JOURNAL.decode(k)[2], decode_entry(JournalEntry, k, v))
                for k, v in self._scan(lower, upper)
            ]
        )

    def put_journal(self, invocation_id: InvocationIdBytes, index: int, entry: JournalEntry) -> None:
        self._put(keys.JOURNAL.encode(self._p, invocation_id, index), encode(entry))

    def delete_journal(self, invocation_id: InvocationIdBytes) -> None:
        self._delete_range(*keys.JOURNAL.bounds(self._p, invocation_id))

    # --- state ---

    def get_state(self, service: str, key: str, name: bytes) -> bytes | None:
        k = keys.STATE.encode(self._p, service, key, name)
        raw = self._read(k)
        return None if raw is None else self._store._decode(bytes, k, raw)

    def put_state(self, service: str, key: str, name: bytes, value: bytes) -> None:
        self._put(keys.STATE.encode(self._p, service, key, name), encode(value))

    def delete_state(self, service: str, key: str, name: bytes) -> None:
        self._put(keys.STATE.encode(self._p, service, key, name), None)

    def delete_all_state(self, service: str, key: str) -> None:
        self._delete_range(*keys.STATE.bounds(self._p, service, key))

    def all_state(self, service: str, key: str) -> Iterator[tuple[bytes, bytes]]:
        lower, upper = keys.STATE.bounds(self._p, service, key)
        # The name is the rest of the key after the (service, key) prefix.
        start = len(lower)
        decode_value = self._store._decode
        return iter([(k[start:], decode_value(bytes, k, v)) for k, v in self._scan(lower, upper)])

    # --- workflow promises ---

    def get_promise(self, service: str, key: str, name: str) -> PromiseRow | None:
        k = keys.PROMISES.encode(self._p, service, key, name)
        raw = self._read(k)
        return None if raw is None else self._store._decode(PromiseRow, k, raw)

    def put_promise(self, service: str, key: str, name: str, row: PromiseRow) -> None:
        self._put(keys.PROMISES.encode(self._p, service, key, name), encode(row))

    def delete_all_promises(self, service: str, key: str) -> None:
        self._delete_range(*keys.PROMISES.bounds(self._p, service, key))

    # --- exclusive locks and inboxes of keyed services ---

    def get_lock(self, service: str, key: str) -> InvocationIdBytes | None:
        k = keys.LOCKS.encode(self._p, service, key)
        raw = self._read(k)
        return None if raw is None else self._store._decode(bytes, k, raw)

    def put_lock(self, service: str, key: str, invocation_id: InvocationIdBytes) -> None:
        self._put(keys.LOCKS.encode(self._p, service, key), encode(invocation_id))

    def delete_lock(self, service: str, key: str) -> None:
        self._put(keys.LOCKS.encode(self._p, service, key), None)

    def inbox_push(self, service: str, key: str, seq: int, invocation_id: InvocationIdBytes) -> None:
        self._put(keys.INBOX.encode(self._p, service, key, seq), encode(invocation_id))

    def inbox_first(self, service: str, key: str) -> tuple[int, InvocationIdBytes] | None:
        rows = self._scan(*keys.INBOX.bounds(self._p, service, key))
        try:
            row = next(rows, None)
        finally:
            rows.close()  # releases the RocksDB iterator now
        if row is None:
            return None
        k, v = row
        return keys.INBOX.decode(k)[3], self._store._decode(bytes, k, v)

    def inbox_delete(self, service: str, key: str, seq: int) -> None:
        self._put(keys.INBOX.encode(self._p, service, key, seq), None)

    # --- timers ---

    def put_timer(self, timer: TimerKey) -> None:
        self._put(keys.timer_key(self._p, timer), _EMPTY)

    def delete_timer(self, timer: TimerKey) -> None:
        self._put(keys.timer_key(self._p, timer), None)

    def timers(self) -> Iterator[TimerKey]:
        return iter([keys.decode_timer_key(k) for k, _ in self._scan(*keys.TIMERS.bounds(self._p))])

    # --- outbox ---

    def put_outbox(self, index: int, message: OutboxMessage) -> None:
        self._put(keys.OUTBOX.encode(self._p, index), encode(message))

    def delete_outbox_up_to(self, index: int) -> None:
        if index < 0:
            return
        lower, upper = keys.OUTBOX.bounds(self._p)
        if index + 1 < _U64_END:
            upper = keys.OUTBOX.encode(self._p, index + 1)
        self._delete_range(lower, upper)

    def outbox(self) -> Iterator[tuple[int, OutboxMessage]]:
        decode_value = self._store._decode
        return iter(
            [
                (keys.OUTBOX.decode(k)[1], decode_value(OutboxMessage, k, v))
                for k, v in self._scan(*keys.OUTBOX.bounds(self._p))
            ]
        )


def _open(path: Path) -> Rdict:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_paranoid_checks(True)
    # After a machine crash, recover the longest consistent prefix of the WAL (a torn tail
    # batch is dropped whole): the log replays what was lost.
    options.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    try:
        return Rdict(str(path), options)
    except Exception as e:  # rocksdict raises bare Exception for lock, I/O and corruption errors
        raise StoreOpenError(f"cannot open the partition store at {path}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

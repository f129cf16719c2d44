"""The partition store's errors: each names the store (its path) and says what to do."""

from __future__ import annotations


class PartitionStoreError(Exception):
    """Base of every partition-store failure."""


class StoreOpenError(PartitionStoreError):
    """The store cannot be opened (locked by another process, unreadable, not a RocksDB)."""


class StoreReadError(PartitionStoreError):
    """A read failed (corrupted block, I/O error, closed store) or found a value this build
    cannot decode. Never a short read: a scan that meets a bad block raises this instead of
    ending early."""


class StoreWriteError(PartitionStoreError):
    """A commit failed; nothing of it is applied (RocksDB writes a batch whole or not at all).
    RocksDB refuses further writes after a failed WAL write: reopen the store."""


class StoreAheadOfLog(PartitionStoreError):
    """The store has applied records its log does not have: it belongs to another log, or the
    log lost acknowledged records. The processor must not start on it."""

    def __init__(self, message: str, *, partition: int, applied_lsn: int, log_tail: int) -> None:
        super().__init__(message)
        self.partition = partition
        self.applied_lsn = applied_lsn
        self.log_tail = log_tail

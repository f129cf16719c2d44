"""The partition store: every partition of a node in one RocksDB, read and written through
`processor.core.Tables` transactions that commit as one WriteBatch (processor/store/keys.py has
the key layout)."""

from processor.store.errors import (
    PartitionStoreError,
    StoreAheadOfLog,
    StoreOpenError,
    StoreReadError,
    StoreWriteError,
)
from processor.store.partition_store import (
    Durability,
    PartitionHandle,
    PartitionStore,
    StoreTransaction,
    check_not_ahead,
)

__all__ = [
    "Durability",
    "PartitionHandle",
    "PartitionStore",
    "PartitionStoreError",
    "StoreAheadOfLog",
    "StoreOpenError",
    "StoreReadError",
    "StoreTransaction",
    "StoreWriteError",
    "check_not_ahead",
]

"""The partition processors' records in the metadata store: leader epochs and the placement.

    pp_epoch_<partition>  -> PartitionEpoch   who claimed leadership of the partition, at which
                                              epoch (a new leader claims epoch + 1 by CAS)
    partition_table       -> PartitionTable   the cluster controller's placement: per partition,
                                              the nodes that run it and the one that leads it

Both change only by compare-and-set. The epoch is the fencing token of a partition's leader: it
claims it here, announces it through the partition's log, and every replica drops what an
older epoch proposes after the announcement (processor/core's dedup).
"""

from __future__ import annotations

from typing import Final

from metadata.core.partition_table import PartitionEpoch, PartitionTable, Placement
from metadata.records import decode, encode
from metadata.store import MetadataStore, read_modify_write

PARTITION_TABLE_KEY: Final = "partition_table"
EPOCH_KEY_PREFIX: Final = "pp_epoch_"

__all__ = ["PartitionEpoch", "PartitionTable", "Placement"]


def epoch_key(partition: int) -> str:
    return f"{EPOCH_KEY_PREFIX}{partition}"


async def claim_epoch(store: MetadataStore, partition: int, node: int, generation: int) -> int:
    """A new epoch (the last one + 1) for this node's leadership of the partition; CAS, so two
    candidates never get the same epoch."""

    def bump(raw: bytes | None) -> bytes:
        last = 0 if raw is None else decode(PartitionEpoch, raw, epoch_key(partition)).epoch
        return encode(PartitionEpoch(last + 1, node, generation))

    written = await read_modify_write(store, epoch_key(partition), bump)
    return decode(PartitionEpoch, written.value, epoch_key(partition)).epoch


async def current_epoch(store: MetadataStore, partition: int) -> PartitionEpoch | None:
    found = await store.get(epoch_key(partition))
    return None if found is None else decode(PartitionEpoch, found.value, epoch_key(partition))


async def load_partition_table(store: MetadataStore) -> tuple[PartitionTable | None, int | None]:
    found = await store.get(PARTITION_TABLE_KEY)
    if found is None:
        return None, None
    return decode(PartitionTable, found.value, PARTITION_TABLE_KEY), found.version


def encode_table(table: PartitionTable) -> bytes:
    return encode(table)

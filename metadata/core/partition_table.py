"""The partition processors' records, as stored in the metadata store (see metadata/partitions.py
for their keys and how they change)."""

from __future__ import annotations

import msgspec


class PartitionEpoch(msgspec.Struct, frozen=True):
    epoch: int
    node: int
    generation: int


class Placement(msgspec.Struct, frozen=True):
    leader: int
    """Plain node id of the node that should lead (0: none yet)."""
    replicas: list[int]
    """Plain node ids of the nodes that run the partition's processor (the leader among them)."""


class PartitionTable(msgspec.Struct, frozen=True):
    partitions: list[Placement]
    """Index = partition id = log id."""

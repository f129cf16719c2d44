"""Where each partition runs and which node leads it: the cluster controller's decision, pure.

    place(previous, partitions, live, replication) -> PartitionTable

Rules, in order of importance:

1. Sticky. A partition keeps every replica that is still live, and its leader while the leader
   is live: moving a leader costs an epoch change and a failover of its invocations.
2. Enough replicas. Missing replicas are filled with live nodes that hold the fewest replicas
   (ties by node id), up to ``replication`` (or as many live nodes as there are).
3. A live leader. When the leader is gone, the replica that leads the fewest partitions takes
   over (ties by node id); a partition with no live node keeps its last placement, so that it
   comes back where its data is.

The function is deterministic: every node computing it from the same inputs gets the same
table, and the controller writes it only when it changed.
"""

from __future__ import annotations

from metadata.core.partition_table import PartitionTable, Placement


def place(
    previous: PartitionTable | None, partitions: int, live: list[int], replication: int
) -> PartitionTable:
    live_sorted = sorted(set(live))
    live_set = set(live_sorted)
    old = list(previous.partitions) if previous is not None else []
    placements: list[Placement] = []
    replica_count = {n: 0 for n in live_sorted}
    leader_count = {n: 0 for n in live_sorted}
    # First pass: keep what is still live, so the counts reflect the sticky part.
    kept: list[tuple[list[int], int]] = []
    for p in range(partitions):
        before = old[p] if p < len(old) else Placement(0, [])
        replicas = [n for n in before.replicas if n in live_set]
        leader = before.leader if before.leader in replicas else 0
        for n in replicas:
            replica_count[n] += 1
        if leader:
            leader_count[leader] += 1
        kept.append((replicas, leader))
    want = min(replication, len(live_sorted))
    for p in range(partitions):
        replicas, leader = kept[p]
        before = old[p] if p < len(old) else Placement(0, [])
        if not live_sorted:
            placements.append(before)
            continue
        while len(replicas) < want:
            candidate = min(
                (n for n in live_sorted if n not in replicas), key=lambda n: (replica_count[n], n)
            )
            replicas.append(candidate)
            replica_count[candidate] += 1
        if not leader:
            leader = min(replicas, key=lambda n: (leader_count[n], n))
            leader_count[leader] += 1
        placements.append(Placement(leader, sorted(replicas)))
    return PartitionTable(placements)

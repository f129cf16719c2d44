"""The controller's placement: sticky, filled up to the replication, a live leader, balanced."""

from metadata.partitions import PartitionTable, Placement
from node.core.placement import place


def test_a_new_cluster_spreads_leaders_and_replicas() -> None:
    table = place(None, 4, [1, 2, 3], replication=2)
    assert all(len(p.replicas) == 2 and p.leader in p.replicas for p in table.partitions)
    leaders = [p.leader for p in table.partitions]
    assert set(leaders) == {1, 2, 3}, leaders
    counts = {n: sum(n in p.replicas for p in table.partitions) for n in (1, 2, 3)}
    assert max(counts.values()) - min(counts.values()) <= 1


def test_a_dead_leader_is_replaced_by_a_replica_and_the_rest_stays() -> None:
    before = PartitionTable([Placement(1, [1, 2]), Placement(2, [2, 3]), Placement(3, [1, 3])])
    after = place(before, 3, [2, 3], replication=2)
    assert after.partitions[0].leader == 2 and 2 in after.partitions[0].replicas
    assert after.partitions[0].replicas == [2, 3]
    assert after.partitions[1] == before.partitions[1], "untouched partitions stay"
    assert after.partitions[2].leader == 3


def test_placement_is_deterministic_and_stable() -> None:
    first = place(None, 8, [3, 1, 2], replication=2)
    assert place(None, 8, [1, 2, 3], replication=2) == first
    assert place(first, 8, [1, 2, 3], replication=2) == first, "nothing changes while nothing changes"


def test_no_live_node_keeps_the_last_placement() -> None:
    before = PartitionTable([Placement(1, [1])])
    assert place(before, 1, [], replication=1) == before


def test_a_single_node_leads_everything() -> None:
    table = place(None, 4, [1], replication=2)
    assert table.partitions == [Placement(1, [1])] * 4

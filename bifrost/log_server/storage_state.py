"""What a log-server's store may be trusted with after a restart: the decision, as a pure function.

Every store carries a marker written once, when the store is created: the cluster id, the node
id and the generation of the process that created it. The nodes configuration records, per
node, the generation its current store was created at and a storage state. Comparing the two at
start tells a whole store from one that was wiped (no marker, though the cluster says this node
had a store) or replaced (a marker from another generation than the one recorded):

    store marker        recorded in nodes config      ->  decision
    other cluster/node  any                               refuse to start
    none                none                              new store: READ_WRITE
    none                a store at generation S           DATA_LOSS (the store was wiped)
    generation g        none                              adopt it: READ_WRITE at g
    generation g        a store at generation g           keep the recorded state
    generation g        a store at another generation     DATA_LOSS (the store was replaced)

A DATA_LOSS node is non-authoritative for every loglet it was a member of: it never counts toward
seals or tail decisions for them until they are rebuilt onto it or leave the chains. When such a
loglet has replication 1, no other node holds its records: the loss cannot be repaired, and the
node refuses to start (restore the directory, or start a new cluster) rather than reuse LSNs.

The marker is written before the new state is recorded, so a crash in between is seen at the
next start as a replaced store (the recorded generation differs): never as a whole one.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from bifrost.core import describe_loglet
from metadata.records import LogServerStorage, StorageState


class StoreIdentity(msgspec.Struct, frozen=True):
    cluster_id: str
    node_id: int
    store_generation: int


@dataclass(frozen=True, slots=True)
class StorageDecision:
    state: LogServerStorage | None
    """What to record in the nodes configuration (None when refusing)."""
    write_marker: StoreIdentity | None = None
    refusal: str | None = None


def decide(
    *,
    path: str,
    marker: StoreIdentity | None,
    recorded: LogServerStorage | None,
    cluster_id: str,
    node_id: int,
    generation: int,
    member_loglets: list[tuple[int, int]],
) -> StorageDecision:
    """``member_loglets``: (loglet id, replication) of every loglet in the chains whose nodeset
    holds this node; ``generation``: this process's generation (a new store is stamped with it)."""
    if marker is not None and (marker.cluster_id != cluster_id or marker.node_id != node_id):
        return StorageDecision(
            None,
            refusal=(
                f"the log-server store at {path} belongs to cluster {marker.cluster_id} node N{marker.node_id}, "
                f"but this node is N{node_id} of cluster {cluster_id}: point base_dir at this node's own data"
            ),
        )
    if recorded is None:
        stamp = marker or StoreIdentity(cluster_id, node_id, generation)
        state = LogServerStorage(StorageState.READ_WRITE, stamp.store_generation)
        return StorageDecision(state, write_marker=None if marker is not None else stamp)
    if marker is not None and marker.store_generation == recorded.store_generation:
        return StorageDecision(recorded)
    if marker is None:
        why = f"the log-server store at {path} is gone (this node had one, created at generation {recorded.store_generation})"
    else:
        why = (
            f"the log-server store at {path} was replaced (created at generation {marker.store_generation}, "
            f"the cluster recorded {recorded.store_generation})"
        )
    sole = sorted(lid for lid, replication in member_loglets if replication == 1)
    if sole:
        return StorageDecision(
            None,
            refusal=(
                f"{why}, and it held the only copy of loglets {', '.join(describe_loglet(lid) for lid in sole)}: "
                "those records are lost. Restore the directory from a backup, or remove the whole base dir "
                "to start a new cluster"
            ),
        )
    stamp = marker or StoreIdentity(cluster_id, node_id, generation)
    lost = sorted({lid for lid, _ in member_loglets} | set(recorded.lost_loglets))
    state = LogServerStorage(
        StorageState.DATA_LOSS if lost else StorageState.READ_WRITE,
        stamp.store_generation,
        lost_loglets=lost,
        reason=why if lost else "",
    )
    return StorageDecision(state, write_marker=None if marker is not None else stamp)

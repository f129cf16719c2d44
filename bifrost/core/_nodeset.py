"""Which nodes a loglet's nodeset gets, and when an open loglet should move to a new one."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ._types import NodeId


def select_nodeset(
    me: NodeId,
    live: list[NodeId],
    replication: int,
    rng: random.Random,
    *,
    target: int = 0,
    spare: Sequence[NodeId] = (),
) -> tuple[NodeId, ...] | None:
    """Nodes for a new loglet: this node first (it will sequence), then live others chosen by
    `rng`, then `spare` ones (down now, stores not known to refuse writes) to fill the size
    max(target, 2R-1, R+1); at least R live ones, else None.

    Spare members matter: a nodeset of exactly R live nodes, made while a third was down, lets
    any one later failure block the log until that node returns -- sealing needs one node, but
    the find-tail's repair needs R copies. With the down node a member, its return is enough,
    and the sequencer, told which members are dead, writes to the live ones meanwhile."""
    pool = sorted(n for n in dict.fromkeys(live) if n != me)
    rng.shuffle(pool)
    chosen = ([me] if me in live else []) + pool
    if len(chosen) < replication:
        return None
    spares = sorted(n for n in dict.fromkeys(spare) if n not in chosen)
    rng.shuffle(spares)
    chosen = (chosen + spares)[: nodeset_size_wanted(replication, target)]
    return tuple(sorted(chosen))


def nodeset_size_wanted(replication: int, target: int = 0) -> int:
    """How many nodes a new loglet's nodeset gets when that many are live (`select_nodeset`)."""
    return max(target, 2 * replication - 1, replication + 1)


def nodeset_needs_change(
    nodeset: tuple[NodeId, ...], live: list[NodeId], replication: int, *, target: int = 0
) -> str | None:
    """Why an open loglet should move to a new nodeset, or None.

    - Fewer than ``replication`` of its nodes are live and writable: no append can commit,
      while a new nodeset of live nodes could take them.
    - It is smaller than wanted and live nodes outside it could fill it: a log created while
      few nodes were up (the first start of a cluster) would otherwise stay without fault
      tolerance -- with nodeset = replication, one dead node blocks its tail for good."""
    live_set = set(live)
    if len(live_set) < replication:
        return None  # no better nodeset exists
    members = set(nodeset)
    if len(members & live_set) < replication:
        return "too few of its nodes are live to take writes"
    wanted = min(nodeset_size_wanted(replication, target), len(live_set | members))
    if len(members) < wanted and live_set - members:
        return f"its nodeset of {len(members)} can grow to {wanted}"
    return None

"""Flat (node-level) quorum math: write quorums and f-majorities over a nodeset.

With replication R over an effective nodeset of N nodes, a *write quorum* is any R nodes; an
*f-majority* is any N - R + 1 nodes: the smallest set that intersects every write quorum.
Commit, repair and trim complete on a write quorum; seal and tail determination on an
f-majority (after an f-majority is sealed no new write quorum can form).

Scopes (zone, region) are not modelled yet; the checker keeps Restate's shape (tag nodes with
attributes, then ask a predicate) so callers will not change when they are.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from ._types import NodeId

A = TypeVar("A")


class FMajorityResult(enum.Enum):
    SUCCESS = "success"
    NONE = "none"

    @property
    def passed(self) -> bool:
        return self is FMajorityResult.SUCCESS


class NodeSetChecker(Generic[A]):
    """Tags the nodes of a nodeset with attributes and answers quorum questions about them.

    Nodes outside the nodeset are ignored when tagged (a reply from a stranger counts for
    nothing). Disabled nodes are removed from the effective nodeset: they can neither help a
    write quorum nor are they needed for an f-majority. Non-authoritative nodes (their store
    lost data) stay in the nodeset, so quorum sizes do not shrink, but tagging them is ignored:
    they never count toward a write quorum or an f-majority.
    """

    __slots__ = ("_attrs", "_effective", "_non_authoritative", "_replication")

    def __init__(
        self,
        nodeset: Iterable[NodeId],
        replication: int,
        default: A,
        disabled: Iterable[NodeId] = (),
        non_authoritative: Iterable[NodeId] = (),
    ) -> None:
        off = set(disabled)
        self._non_authoritative = frozenset(non_authoritative)
        self._effective: tuple[NodeId, ...] = tuple(n for n in dict.fromkeys(nodeset) if n not in off)
        if replication < 1:
            raise ValueError("replication must be >= 1")
        self._replication = replication
        self._attrs: dict[NodeId, A] = {n: default for n in self._effective}

    @property
    def effective_nodeset(self) -> tuple[NodeId, ...]:
        return self._effective

    @property
    def replication(self) -> int:
        return self._replication

    @property
    def fmajority_size(self) -> int:
        return len(self._effective) - self._replication + 1

    def set_attribute(self, node: NodeId, attr: A) -> None:
        if node in self._attrs and node not in self._non_authoritative:
            self._attrs[node] = attr

    def merge_attribute(self, node: NodeId, merge: Callable[[A], A]) -> None:
        if node in self._attrs and node not in self._non_authoritative:
            self._attrs[node] = merge(self._attrs[node])

    def can_reach_fmajority(self) -> bool:
        """Whether the authoritative nodes could ever form an f-majority (if all answered)."""
        if len(self._effective) < self._replication:
            return False
        authoritative = sum(1 for n in self._effective if n not in self._non_authoritative)
        return authoritative >= self.fmajority_size

    def get_attribute(self, node: NodeId) -> A:
        return self._attrs[node]

    def nodes_where(self, pred: Callable[[A], bool]) -> list[NodeId]:
        return [n for n in self._effective if pred(self._attrs[n])]

    def count(self, pred: Callable[[A], bool]) -> int:
        return sum(1 for n in self._effective if pred(self._attrs[n]))

    def check_write_quorum(self, pred: Callable[[A], bool]) -> bool:
        """True iff the nodes matching `pred` could hold R copies (≥ R of them)."""
        return self.count(pred) >= self._replication

    def check_fmajority(self, pred: Callable[[A], bool]) -> FMajorityResult:
        """SUCCESS iff the nodes matching `pred` intersect every possible write quorum.

        An effective nodeset smaller than R has no write quorum at all; every f-majority
        question about it fails, because nothing could ever have been committed on it and a
        seal must not claim otherwise.
        """
        if len(self._effective) < self._replication:
            return FMajorityResult.NONE
        ok = self.count(pred) >= self.fmajority_size
        return FMajorityResult.SUCCESS if ok else FMajorityResult.NONE

"""The compare-and-set decision: does a precondition hold against a key's current state?

Both backends use this one table. The local store evaluates it before writing; etcd evaluates the
same rule server-side in a transaction, and the etcd backend runs it again on the transaction's
atomic read-back to build the refusal, so the two backends refuse with the same ``current_version``.

The whole rule, as data (``APPLY`` / ``REFUSE``)::

    precondition      | key absent | present at v | present at another version
    ------------------+------------+--------------+---------------------------
    none              | APPLY      | APPLY        | APPLY
    does_not_exist    | APPLY      | REFUSE       | REFUSE
    matches(v)        | REFUSE     | APPLY        | REFUSE

A refusal reports the key's version (``None`` when absent) so the caller can retry without an
extra read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from metadata.core.types import Precondition, PreconditionKind, Versioned


class Observation(enum.Enum):
    """What the precondition sees of the key."""

    ABSENT = "absent"
    AT_EXPECTED = "at_expected"  # present, at the version the precondition names (if it names one)
    AT_OTHER = "at_other"


class Verdict(enum.Enum):
    APPLY = "apply"
    REFUSE = "refuse"


TABLE: Final[dict[tuple[PreconditionKind, Observation], Verdict]] = {
    (PreconditionKind.NONE, Observation.ABSENT): Verdict.APPLY,
    (PreconditionKind.NONE, Observation.AT_EXPECTED): Verdict.APPLY,
    (PreconditionKind.NONE, Observation.AT_OTHER): Verdict.APPLY,
    (PreconditionKind.DOES_NOT_EXIST, Observation.ABSENT): Verdict.APPLY,
    (PreconditionKind.DOES_NOT_EXIST, Observation.AT_EXPECTED): Verdict.REFUSE,
    (PreconditionKind.DOES_NOT_EXIST, Observation.AT_OTHER): Verdict.REFUSE,
    (PreconditionKind.MATCHES, Observation.ABSENT): Verdict.REFUSE,
    (PreconditionKind.MATCHES, Observation.AT_EXPECTED): Verdict.APPLY,
    (PreconditionKind.MATCHES, Observation.AT_OTHER): Verdict.REFUSE,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a CAS check: apply, or refuse reporting the key's current version."""

    verdict: Verdict
    current_version: int | None

    @property
    def applies(self) -> bool:
        return self.verdict is Verdict.APPLY


def observe(current: Versioned | None, precondition: Precondition) -> Observation:
    if current is None:
        return Observation.ABSENT
    if precondition.kind is PreconditionKind.MATCHES and current.version != precondition.version:
        return Observation.AT_OTHER
    # Preconditions that name no version treat any present version as "the expected one"; the
    # table gives the same verdict for both present columns there.
    return Observation.AT_EXPECTED


def decide(current: Versioned | None, precondition: Precondition) -> Decision:
    """Whether a write guarded by ``precondition`` applies to a key whose state is ``current``."""
    verdict = TABLE[(precondition.kind, observe(current, precondition))]
    return Decision(verdict, None if current is None else current.version)

"""The metadata store's sans-I/O core: value types, the key rule and the CAS decision.

Nothing here touches a clock, a socket, a thread or a disk (``test_core_purity`` enforces it).
"""

from metadata.core.cas import TABLE, Decision, Observation, Verdict, decide
from metadata.core.keys import MAX_KEY_LENGTH, validate_key
from metadata.core.types import NO_PRECONDITION, Precondition, PreconditionKind, Versioned

__all__ = [
    "MAX_KEY_LENGTH",
    "NO_PRECONDITION",
    "TABLE",
    "Decision",
    "Observation",
    "Precondition",
    "PreconditionKind",
    "Verdict",
    "Versioned",
    "decide",
    "validate_key",
]

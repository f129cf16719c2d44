"""Value types shared by the CAS core, both backends and their callers."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Versioned:
    """A stored value and its version.

    Versions are positive and strictly increase per key across put, delete and re-create: they are
    the store-wide revision of the key's last modification (etcd's ``mod_revision``), so a key that
    is deleted and created again never reuses a version.
    """

    value: bytes
    version: int


class PreconditionKind(enum.Enum):
    NONE = "none"
    DOES_NOT_EXIST = "does_not_exist"
    MATCHES = "matches"


@dataclass(frozen=True, slots=True)
class Precondition:
    """When a put or delete may apply. Build one with ``none()``, ``does_not_exist()`` or ``matches(v)``."""

    kind: PreconditionKind
    version: int | None = None

    def __post_init__(self) -> None:
        # Validated here so the core never holds a precondition it cannot evaluate.
        if self.kind is PreconditionKind.MATCHES:
            if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
                raise ValueError(f"Precondition.matches needs a positive int version, got {self.version!r}")
        elif self.version is not None:
            raise ValueError(f"Precondition {self.kind.value} takes no version, got {self.version!r}")

    @staticmethod
    def none() -> Precondition:
        """Apply whatever the key's current state."""
        return _NONE

    @staticmethod
    def does_not_exist() -> Precondition:
        """Apply only if the key is absent."""
        return _DOES_NOT_EXIST

    @staticmethod
    def matches(version: int) -> Precondition:
        """Apply only if the key exists at exactly ``version``."""
        return Precondition(PreconditionKind.MATCHES, version)

    def __str__(self) -> str:
        if self.kind is PreconditionKind.MATCHES:
            return f"matches({self.version})"
        return self.kind.value


_NONE: Final = Precondition(PreconditionKind.NONE)
_DOES_NOT_EXIST: Final = Precondition(PreconditionKind.DOES_NOT_EXIST)

# The default argument of put/delete (a named constant, not a call in every signature).
NO_PRECONDITION: Final = _NONE

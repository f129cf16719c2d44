"""The metadata component's exceptions: one hierarchy, rooted at ``MetadataError``.

Callers decide what to do from the class alone:

* ``PreconditionFailed``: the write was refused and changed nothing; re-read and decide again.
* ``MetadataUnavailable``: nothing was applied; retrying the same request is safe.
* ``UnknownOutcome``: the write may or may not have been applied; re-read before deciding.
* everything else is misuse (``InvalidKey``, ``ValueTooLarge``) or a broken store.
"""

from __future__ import annotations


class MetadataError(Exception):
    """Base class of every error raised by ``metadata``."""


class PreconditionFailed(MetadataError):
    """A put or delete was refused because the key's version did not satisfy the precondition.

    ``current_version`` is the key's version at the moment of the refusal, ``None`` if the key was
    absent. Nothing was written.
    """

    def __init__(self, current_version: int | None) -> None:
        self.current_version = current_version
        state = "absent" if current_version is None else f"at version {current_version}"
        super().__init__(f"precondition failed: key is {state}")


class MetadataUnavailable(MetadataError):
    """The store could not be reached (or had no leader) and the request was definitely not applied.

    Retrying is safe, including for writes with a precondition.
    """


class UnknownOutcome(MetadataError):
    """A write was sent but its result was lost: it may or may not have been applied.

    Raised, for example, when the etcd leader fails while the write is in flight, when the request
    deadline passes after the write was sent, or when a local synced write fails part-way. The
    caller must not assume either outcome: re-read the key (its version tells whether the write
    landed) before retrying. Retrying a ``Precondition.matches(v)`` write blindly can fail with
    ``PreconditionFailed`` because the first attempt did land.
    """


class InvalidKey(MetadataError):
    """A key is empty, longer than 256 characters, or not printable ASCII without whitespace."""


class ValueTooLarge(MetadataError):
    """A value over ``MAX_VALUE_BYTES`` (metadata.core.keys): refused before anything was sent,
    so nothing was written, on every backend."""


class StoreClosed(MetadataError):
    """The store was closed (or failed and must be reopened); no request is accepted."""


class CorruptStore(MetadataError):
    """The local store holds bytes this build cannot read (unknown format byte, truncated record)."""


class RecordFormatError(MetadataError):
    """A stored record cannot be decoded: unknown format version byte or malformed body."""


class ClusterNameMismatch(MetadataError):
    """A node tried to register in a metadata store that belongs to another cluster."""

    def __init__(self, expected: str, found: str) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"metadata store belongs to cluster {found!r}, not {expected!r}")


class EtcdMemberError(MetadataError):
    """A supervised etcd member failed to start or to become healthy (the message has its log tail)."""

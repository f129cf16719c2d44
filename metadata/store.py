"""The ``MetadataStore`` contract every backend meets, and helpers built only on that contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from metadata.core.types import NO_PRECONDITION, Precondition, Versioned
from metadata.errors import PreconditionFailed


class MetadataStore(Protocol):
    """A small versioned key-value store with compare-and-set writes and linearizable reads.

    Keys are non-empty printable ASCII without whitespace, at most 256 characters (else
    ``InvalidKey``). Versions are positive and strictly increase per key across put, delete and
    re-create; they are never reset, so a version identifies one state of one key forever.

    Values are bytes of at most ``MAX_VALUE_BYTES`` (metadata.core.keys; else ``ValueTooLarge``,
    nothing written).

    Errors: ``PreconditionFailed`` (refused, nothing written), ``MetadataUnavailable`` (not
    applied, safe to retry), ``UnknownOutcome`` (maybe applied: re-read before retrying),
    ``StoreClosed``.
    """

    async def get(self, key: str) -> Versioned | None:
        """The key's current value and version, or ``None`` if absent (a linearizable read)."""
        ...

    async def put(self, key: str, value: bytes, precondition: Precondition = NO_PRECONDITION) -> int:
        """Write ``value`` if ``precondition`` holds; return the new version.

        Raises ``PreconditionFailed(current_version)`` otherwise.
        """
        ...

    async def delete(self, key: str, precondition: Precondition = NO_PRECONDITION) -> None:
        """Remove the key if ``precondition`` holds; deleting an absent key is a no-op."""
        ...

    def watch(self, key: str) -> AsyncIterator[Versioned | None]:
        """Follow one key: first its current state (``None`` if absent), then every later change.

        Each new version is yielded once, in version order; a delete yields ``None``. No change
        is skipped, except where a backend documents otherwise (etcd after history compaction);
        the last state is always delivered. The iterator ends when the store is closed. Close
        it (``contextlib.aclosing``) when done watching.
        """
        ...

    async def close(self) -> None:
        """Release the store; pending watches end. Idempotent."""
        ...


async def read_modify_write(store: MetadataStore, key: str, fn: Callable[[bytes | None], bytes]) -> Versioned:
    """Replace the key's value with ``fn(current value or None)`` atomically; return what was written.

    Runs get → ``fn`` → put guarded by the version that was read, and starts over when another
    writer got in between, so ``fn`` may run several times and must have no side effects. Each
    round has a winner, so N concurrent callers finish within N rounds. Exceptions raised by
    ``fn`` propagate (nothing is written); ``UnknownOutcome`` propagates too, because whether the
    write landed can only be told by the caller, who knows what ``fn`` meant.
    """
    while True:
        current = await store.get(key)
        if current is None:
            new_value = fn(None)
            precondition = Precondition.does_not_exist()
        else:
            new_value = fn(current.value)
            precondition = Precondition.matches(current.version)
        try:
            version = await store.put(key, new_value, precondition)
        except PreconditionFailed:
            continue
        return Versioned(new_value, version)

"""The rule for metadata keys, shared by every backend so a key valid in one is valid in all."""

from __future__ import annotations

from typing import Final

from metadata.errors import InvalidKey

MAX_KEY_LENGTH: Final = 256

# Printable ASCII without space: safe in etcd paths, file names, logs and CLI arguments alike.
_FIRST_ALLOWED: Final = 0x21
_LAST_ALLOWED: Final = 0x7E


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid metadata key, else raise ``InvalidKey`` saying why."""
    if not isinstance(key, str):
        raise InvalidKey(f"metadata key must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidKey("metadata key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"metadata key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}")
    for position, char in enumerate(key):
        if not _FIRST_ALLOWED <= ord(char) <= _LAST_ALLOWED:
            raise InvalidKey(
                f"metadata key {key!r} has {char!r} at position {position}: "
                "only printable ASCII without whitespace is allowed"
            )
    return key

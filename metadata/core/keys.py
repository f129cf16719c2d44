"""The rules for metadata keys and values, shared by every backend so what one accepts all do.

Values are at most ``MAX_VALUE_BYTES``: etcd refuses requests over ``--max-request-bytes``
(1.5 MiB by default) and gRPC messages over its receive limit, and a refusal that arrives as a
broken call looks like an unknown outcome. Checking the size before sending makes "too large" a
definite answer with nothing written, the same on the local store.
"""

from __future__ import annotations

from typing import Final

from metadata.errors import InvalidKey, ValueTooLarge

MAX_KEY_LENGTH: Final = 256
MAX_VALUE_BYTES: Final = 1024 * 1024

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


def validate_value(value: object) -> bytes:
    """Return ``value`` if it is bytes of at most ``MAX_VALUE_BYTES``, else raise."""
    if not isinstance(value, bytes):
        raise TypeError(f"metadata values are bytes, got {type(value).__name__}")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueTooLarge(
            f"metadata value of {len(value)} bytes is too large: the limit is {MAX_VALUE_BYTES} bytes; "
            "nothing was written"
        )
    return value

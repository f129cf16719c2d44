"""Key layout and value encoding of the local (RocksDB) metadata store, in one place.

Every RocksDB key starts with a 2-byte kind prefix. A prefix, once assigned, is never reused.

* ``kv`` + key (ASCII): one metadata entry. Value: format byte, 8-byte big-endian version, value.
* ``mt`` + name: store-wide facts. ``mt`` + ``revision``: format byte, 8-byte big-endian store
  revision (the version given to the last modification; the next one gets revision + 1).
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from metadata.core.types import Versioned
from metadata.errors import CorruptStore


class KeyKind(bytes, enum.Enum):
    ENTRY = b"kv"
    META = b"mt"


FORMAT_V1: Final = 1

REVISION_KEY: Final = KeyKind.META.value + b"revision"

_HEADER: Final = struct.Struct(">BQ")  # format byte, then version/revision


def entry_key(key: str) -> bytes:
    return KeyKind.ENTRY.value + key.encode("ascii")


def key_of_entry(raw_key: bytes) -> str:
    return raw_key[len(KeyKind.ENTRY.value) :].decode("ascii")


def encode_entry(entry: Versioned) -> bytes:
    return _HEADER.pack(FORMAT_V1, entry.version) + entry.value


def decode_entry(raw: bytes) -> Versioned:
    _, version = _unpack_header(raw, "entry")
    return Versioned(raw[_HEADER.size :], version)


def encode_revision(revision: int) -> bytes:
    return _HEADER.pack(FORMAT_V1, revision)


def decode_revision(raw: bytes) -> int:
    _, revision = _unpack_header(raw, "revision")
    if len(raw) != _HEADER.size:
        raise CorruptStore(f"revision record has {len(raw)} bytes, expected {_HEADER.size}")
    return revision


def _unpack_header(raw: bytes, what: str) -> tuple[int, int]:
    if len(raw) < _HEADER.size:
        raise CorruptStore(f"{what} record is {len(raw)} bytes, shorter than its {_HEADER.size}-byte header")
    fmt, number = _HEADER.unpack_from(raw)
    if fmt != FORMAT_V1:
        raise CorruptStore(f"{what} record has format version {fmt}; this build reads only {FORMAT_V1}")
    return fmt, number

"""Key layout of the local loglet's RocksDB (raw mode). Prefixes are never reused.

    b"d" + loglet_id (u64 BE) + offset (u64 BE) -> record payload
    b"s" + loglet_id                             -> b"\x01" once sealed
    b"t" + loglet_id                             -> trim point (u64 BE)

Big-endian integers make RocksDB's byte order the numeric order, so a loglet's records are one
contiguous, ordered key range.
"""

from __future__ import annotations

import struct

DATA = b"d"
SEAL = b"s"
TRIM = b"t"

_U64 = struct.Struct(">Q")
_DATA_KEY = struct.Struct(">cQQ")


def data_key(loglet_id: int, offset: int) -> bytes:
    return _DATA_KEY.pack(DATA, loglet_id, offset)


def data_key_offset(key: bytes) -> int:
    return _DATA_KEY.unpack(key)[2]


def data_upper_bound(loglet_id: int) -> bytes:
    """First key after every record of the loglet."""
    return DATA + _U64.pack(loglet_id + 1)


def seal_key(loglet_id: int) -> bytes:
    return SEAL + _U64.pack(loglet_id)


def trim_key(loglet_id: int) -> bytes:
    return TRIM + _U64.pack(loglet_id)


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(raw: bytes) -> int:
    return _U64.unpack(raw)[0]

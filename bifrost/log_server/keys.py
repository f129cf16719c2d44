"""Key layout of the log-server's RocksDB (raw mode). A prefix, once assigned, is never reused.

    b"i"                                          -> the store's identity (StoreIdentity, msgpack)
    b"p"                                          -> transient: the write probe of disk recovery
    b"d" + loglet_id (u64 BE) + offset (u64 BE)  -> record payload
    b"m" + loglet_id (u64 BE) + field (1 byte)   -> loglet metadata:
        b"t" local tail (u64 BE)     b"g" known global tail (u64 BE)
        b"s" first sequencer (u64 node, u64 generation)
        b"S" sealed (b"\\x01")       b"p" trim point (u64 BE)

Big-endian integers make byte order numeric order: one loglet's records are one ordered range.
"""

from __future__ import annotations

import struct

IDENTITY = b"i"
PROBE = b"p"
DATA = b"d"
META = b"m"

LOCAL_TAIL = b"t"
GLOBAL_TAIL = b"g"
SEQUENCER = b"s"
SEALED = b"S"
TRIM_POINT = b"p"

_DATA = struct.Struct(">cQQ")
_META = struct.Struct(">cQc")
U64 = struct.Struct(">Q")
NODE_GEN = struct.Struct(">QQ")


def data_key(loglet_id: int, offset: int) -> bytes:
    return _DATA.pack(DATA, loglet_id, offset)


def data_keys(loglet_id: int, first_offset: int, count: int) -> list[bytes]:
    """``data_key`` of ``count`` consecutive offsets (a store's records), built at once."""
    prefix = DATA + U64.pack(loglet_id)
    pack = U64.pack
    return [prefix + pack(off) for off in range(first_offset, first_offset + count)]


def data_offset(key: bytes) -> int:
    return _DATA.unpack(key)[2]


def meta_key(loglet_id: int, field: bytes) -> bytes:
    return _META.pack(META, loglet_id, field)

"""How Bifrost stores a record in a loglet: a small tag before the caller's bytes.

    u8 format (1) | u64 appender id | u64 sequence number | payload

The appender id names one appending process for one log (random per Bifrost instance); the
sequence number counts its records. Within a segment a record is written once (the sequencer
drops resent batches); across a seal the appender re-appends what was not acknowledged, and the
copy carries the same tag: a reader that remembers the highest sequence number seen per
appender can drop it (``Bifrost.read(..., dedup=True)``), without knowing what the payload means.
"""

from __future__ import annotations

import struct
from typing import Final

from bifrost.errors import BifrostError

_TAG: Final = struct.Struct(">BQQ")
TAG_BYTES: Final = _TAG.size
_FORMAT: Final = 1


class RecordFormatError(BifrostError):
    """Stored bytes that are not a tagged Bifrost record."""


def tag(appender: int, seq: int, payload: bytes) -> bytes:
    return _TAG.pack(_FORMAT, appender, seq) + payload


def untag(raw: bytes) -> tuple[int, int, bytes]:
    """(appender id, sequence number, payload)."""
    if len(raw) < TAG_BYTES or raw[0] != _FORMAT:
        raise RecordFormatError(f"a record of {len(raw)} bytes has no Bifrost tag (format byte {raw[:1]!r})")
    _, appender, seq = _TAG.unpack_from(raw)
    return appender, seq, raw[TAG_BYTES:]

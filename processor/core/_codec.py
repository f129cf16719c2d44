"""The one encoding of partition log records and partition store values: a format byte, then
msgpack (msgspec, array form).

A record that does not decode is a typed ``RecordFormatError`` naming what is wrong: the
partition processor stops on it rather than skip a command (skipping one would let replicas
diverge). A new format byte is for changes an old build must refuse.
"""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec

from processor.core._commands import Envelope

FORMAT_V1: Final = 1

T = TypeVar("T")

_ENCODER: Final = msgspec.msgpack.Encoder()
_ENVELOPE: Final = msgspec.msgpack.Decoder(Envelope)
_DECODERS: dict[type, msgspec.msgpack.Decoder] = {}


class RecordFormatError(Exception):
    """Bytes that are not a record of this build's format."""


def encode(value: object) -> bytes:
    return bytes((FORMAT_V1,)) + _ENCODER.encode(value)


def encode_envelope(envelope: Envelope) -> bytes:
    return encode(envelope)


def decode_envelope(data: bytes) -> Envelope:
    return _decode(_ENVELOPE, data, "log record")


def decode(value_type: type[T], data: bytes) -> T:
    decoder = _DECODERS.get(value_type)
    if decoder is None:
        decoder = _DECODERS[value_type] = msgspec.msgpack.Decoder(value_type)
    # A union (Dedup) has no __name__: name it by its members.
    return _decode(decoder, data, getattr(value_type, "__name__", str(value_type)))


def _decode(decoder: msgspec.msgpack.Decoder, data: bytes, what: str):  # type: ignore[no-untyped-def]  # noqa: ANN202
    if not data:
        raise RecordFormatError(f"cannot decode a {what}: empty")
    if data[0] != FORMAT_V1:
        raise RecordFormatError(f"cannot decode a {what}: format {data[0]}, this build reads {FORMAT_V1}")
    try:
        return decoder.decode(memoryview(data)[1:])
    except msgspec.DecodeError as e:
        raise RecordFormatError(f"cannot decode a {what}: {e}") from None

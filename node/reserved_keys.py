"""Metadata keys the system owns, and the one record type each must decode as.

The nodes configuration, the logs' configuration and each log's chain are written by the nodes
themselves (by compare-and-set); a hand-written value there can leave nodes unable to start or
a log unusable. ``metadata put`` (the CLI and the gRPC MetadataPut) refuses these keys unless
forced, and a forced value is written only if it decodes as the key's record (a chain must also
be the chain of the log its key names). The partition processor's keys are reserved now, with
no record type yet, so nothing can be forced into them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from bifrost.chain_store import CHAIN_KEY_PREFIX, LOGS_CONFIG_KEY, LogsConfig, decode_chain
from bifrost.core import Chain
from metadata import RecordFormatError
from metadata.partitions import PartitionEpoch, PartitionTable
from metadata.records import NODES_CONFIG_KEY, NodesConfig, decode, encode


class ReservedKeyError(Exception):
    """A put to a reserved key was refused; the message says why and how to force it."""


@dataclass(frozen=True, slots=True)
class ReservedKey:
    pattern: re.Pattern[str]
    what: str
    record_type: type[msgspec.Struct] | None
    # Decodes a stored value of this key (raising RecordFormatError naming the key).
    decoder: Callable[[str, bytes], msgspec.Struct] | None


def _plain(record_type: type[msgspec.Struct]) -> Callable[[str, bytes], msgspec.Struct]:
    return lambda key, value: decode(record_type, value, key)


RESERVED: tuple[ReservedKey, ...] = (
    ReservedKey(
        re.compile(re.escape(NODES_CONFIG_KEY)), "the nodes configuration", NodesConfig, _plain(NodesConfig)
    ),
    ReservedKey(
        re.compile(re.escape(LOGS_CONFIG_KEY)), "the logs' configuration", LogsConfig, _plain(LogsConfig)
    ),
    ReservedKey(re.compile(re.escape(CHAIN_KEY_PREFIX) + r".*"), "a log's chain", Chain, decode_chain),
    ReservedKey(
        re.compile(r"pp_epoch_.*"), "a partition's leader epoch", PartitionEpoch, _plain(PartitionEpoch)
    ),
    ReservedKey(
        re.compile(r"partition_table"), "the partition table", PartitionTable, _plain(PartitionTable)
    ),
    ReservedKey(re.compile(r"schema"), "the schema", None, None),
)


def reserved(key: str) -> ReservedKey | None:
    return next((r for r in RESERVED if r.pattern.fullmatch(key)), None)


def check_put(key: str, value: bytes, force: bool) -> None:
    """Raise ReservedKeyError unless ``value`` may be written under ``key``."""
    entry = reserved(key)
    if entry is None:
        return
    if entry.decoder is None or entry.record_type is None:
        raise ReservedKeyError(
            f"key {key!r} is reserved for {entry.what} (partition processor); it cannot be written by hand"
        )
    name = entry.record_type.__name__
    if not force:
        raise ReservedKeyError(
            f"key {key!r} holds {entry.what}, written by the nodes themselves; to replace it anyway "
            f"give --force and a value that decodes as {name}"
        )
    try:
        decode(entry.record_type, value)
    except RecordFormatError as e:
        raise ReservedKeyError(
            f"refusing --force: the value for {key!r} is not a valid {name} ({e})"
        ) from None
    try:
        entry.decoder(key, value)
    except RecordFormatError as e:
        raise ReservedKeyError(f"refusing --force: {e}") from None


def from_json(key: str, text: str) -> bytes | None:
    """The stored encoding of a record given as JSON for a reserved ``key``; None if the key is
    not reserved or the text is not that record's JSON (it is then sent as it is)."""
    entry = reserved(key)
    if entry is None or entry.record_type is None:
        return None
    try:
        return encode(msgspec.json.decode(text, type=entry.record_type))
    except (msgspec.MsgspecError, ValueError):
        return None


def to_json(key: str, value: bytes) -> str | None:
    """A reserved key's stored value as JSON (what ``from_json`` reads back), None if not
    reserved or not decodable."""
    entry = reserved(key)
    if entry is None or entry.decoder is None:
        return None
    try:
        return msgspec.json.encode(entry.decoder(key, value)).decode()
    except RecordFormatError:  # a bad stored value is shown raw instead
        return None

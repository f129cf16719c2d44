"""Where the log chains live in the metadata store, and their encoding.

    bifrost_logs        -> LogsConfig (which logs exist, replication, nodeset size)
    log_chain_<log_id>  -> Chain (absent until the log's first segment is created)

Both change only by compare-and-set on their version. Encoding: metadata.records' versioned
msgpack (a format byte, then the msgspec Struct).
"""

from __future__ import annotations

import msgspec

from bifrost.core import Chain
from metadata import MetadataStore, Precondition, PreconditionFailed, RecordFormatError
from metadata.records import decode, encode

LOGS_CONFIG_KEY = "bifrost_logs"
CHAIN_KEY_PREFIX = "log_chain_"


class LogsConfig(msgspec.Struct, frozen=True):
    log_ids: list[int]
    replication: int
    # 0 = as many as the replication needs (at least 2R-1 when the cluster has them).
    nodeset_size: int = 0


def chain_key(log_id: int) -> str:
    return f"{CHAIN_KEY_PREFIX}{log_id}"


def decode_chain(key: str, value: bytes) -> Chain:
    """The chain stored under ``key``; RecordFormatError naming the key if the value is not a
    chain, or is the chain of another log."""
    chain = decode(Chain, value, key)
    if chain_key(chain.log_id) != key:
        raise RecordFormatError(
            f"metadata key {key!r} must hold its own log's chain, not log {chain.log_id}'s"
        )
    return chain


async def load_logs_config(store: MetadataStore) -> LogsConfig | None:
    found = await store.get(LOGS_CONFIG_KEY)
    return None if found is None else decode(LogsConfig, found.value, LOGS_CONFIG_KEY)


async def provision_logs(store: MetadataStore, num_logs: int, replication: int) -> LogsConfig:
    """Create the logs once per cluster; later calls (and racing nodes) get what is there."""
    # Log ids count from 0, as partition ids do (partition n uses log n), as in Restate.
    wanted = LogsConfig(list(range(num_logs)), replication)
    try:
        await store.put(LOGS_CONFIG_KEY, encode(wanted), Precondition.does_not_exist())
        return wanted
    except PreconditionFailed:
        existing = await load_logs_config(store)
        assert existing is not None
        return existing


async def load_chain(store: MetadataStore, log_id: int) -> tuple[Chain | None, int | None]:
    key = chain_key(log_id)
    found = await store.get(key)
    if found is None:
        return None, None
    return decode_chain(key, found.value), found.version


async def cas_chain(store: MetadataStore, chain: Chain, expected_version: int | None) -> int:
    """Write the chain iff it is still at ``expected_version`` (None: iff it does not exist).
    Raises PreconditionFailed when another writer got there first."""
    pre = (
        Precondition.does_not_exist() if expected_version is None else Precondition.matches(expected_version)
    )
    return await store.put(chain_key(chain.log_id), encode(chain), pre)

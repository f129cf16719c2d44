"""Typed values stored in the metadata store, their one encoding, and the keys they live under.

Encoding: one format byte (``RECORD_FORMAT_V1``), then the record as a msgpack map (msgspec).
Maps, not arrays, so a later build may add optional fields that older builds ignore; a new
format byte is for changes that old readers must refuse.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec

from metadata.errors import ClusterNameMismatch, RecordFormatError
from metadata.store import MetadataStore, read_modify_write

RECORD_FORMAT_V1: Final = 1

NODES_CONFIG_KEY: Final = "nodes_config"


class StorageState(enum.Enum):
    """What a log-server's store can be trusted with (Restate's log-server storage states).

    READ_WRITE and DATA_LOSS nodes join new nodesets. A DATA_LOSS node may have lost records of
    the loglets listed with it: it never counts toward a seal or tail decision for them (its
    "I don't have it" is not evidence), until they are rebuilt onto it or leave the chains; a
    loglet created later is not listed, and its store holds what it acknowledged of it.
    READ_ONLY: the store still holds its data but cannot write (a disk fault).
    """

    PROVISIONING = "provisioning"
    READ_WRITE = "read-write"
    READ_ONLY = "read-only"
    DATA_LOSS = "data-loss"
    DISABLED = "disabled"


class LogServerStorage(msgspec.Struct, frozen=True):
    state: StorageState
    # Generation of the node process that created the log-server's current store (its marker
    # says the same): a store whose marker disagrees was replaced behind our back.
    store_generation: int
    # Loglet ids whose records this store may have lost (DATA_LOSS only).
    lost_loglets: list[int] = []
    reason: str = ""


class NodeConfig(msgspec.Struct, frozen=True):
    """One node of the cluster. ``generation`` is bumped by CAS at every start (fencing)."""

    name: str
    generation: int
    roles: list[str]
    address: str  # host (name or IP) other nodes reach this node at
    ports: dict[str, int]  # port name (as in node.ports.Ports) -> port
    # Plain node id (N1, N2, ...), assigned once at first registration and kept for life; the
    # log refers to nodes by it. 0 in a record that was never registered.
    node_id: int = 0
    # None until the node's log-server first reports its store (or for nodes without one).
    log_server: LogServerStorage | None = None


class NodesConfig(msgspec.Struct, frozen=True):
    cluster_name: str
    nodes: dict[str, NodeConfig]
    # Random, created when the cluster is provisioned; every store of every node records it, so
    # a store from another cluster (or a metadata store that was re-created) is recognised.
    cluster_id: str = ""

    def by_id(self, node_id: int) -> NodeConfig | None:
        for node in self.nodes.values():
            if node.node_id == node_id:
                return node
        return None


def new_cluster_id() -> str:
    return secrets.token_hex(16)


R = TypeVar("R", bound=msgspec.Struct)

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODERS: dict[type, msgspec.msgpack.Decoder] = {}


def encode(record: msgspec.Struct) -> bytes:
    return bytes((RECORD_FORMAT_V1,)) + _ENCODER.encode(record)


def decode(record_type: type[R], data: bytes, key: str | None = None) -> R:
    """Decode bytes written by ``encode``; raise ``RecordFormatError`` saying what is wrong (and,
    given the metadata ``key`` the bytes were read from, naming it)."""
    try:
        return _decode(record_type, data)
    except RecordFormatError as e:
        if key is None:
            raise
        raise RecordFormatError(f"metadata key {key!r} holds a bad value: {e}") from e


def _decode(record_type: type[R], data: bytes) -> R:
    name = record_type.__name__
    if not data:
        raise RecordFormatError(f"cannot decode {name}: empty value (no format byte)")
    if data[0] != RECORD_FORMAT_V1:
        raise RecordFormatError(
            f"cannot decode {name}: unknown record format version {data[0]} "
            f"(this build reads version {RECORD_FORMAT_V1}); was it written by a newer durastate?"
        )
    decoder = _DECODERS.get(record_type)
    if decoder is None:
        decoder = _DECODERS[record_type] = msgspec.msgpack.Decoder(record_type)
    try:
        return decoder.decode(memoryview(data)[1:])
    except msgspec.DecodeError as error:
        raise RecordFormatError(f"cannot decode {name}: {error}") from error


async def register_node(store: MetadataStore, node: NodeConfig, cluster_name: str) -> int:
    """Record ``node`` in the nodes config with its next generation; return that generation.

    ``node.generation`` is ignored: a new node gets 1, a known one its previous generation + 1.
    Other nodes are left untouched, and concurrent registrations never lose each other's update
    (read-modify-write under CAS). Raises ``ClusterNameMismatch`` if the store already belongs to
    another cluster.
    """

    def bump(raw: bytes | None) -> bytes:
        if raw is None:
            config = NodesConfig(cluster_name=cluster_name, nodes={}, cluster_id=new_cluster_id())
        else:
            config = decode(NodesConfig, raw, NODES_CONFIG_KEY)
            if config.cluster_name != cluster_name:
                raise ClusterNameMismatch(expected=cluster_name, found=config.cluster_name)
        previous = config.nodes.get(node.name)
        if previous is None:
            generation, node_id = 1, max((n.node_id for n in config.nodes.values()), default=0) + 1
        else:
            generation, node_id = previous.generation + 1, previous.node_id
        nodes = dict(config.nodes)
        nodes[node.name] = msgspec.structs.replace(
            node,
            generation=generation,
            node_id=node_id,
            log_server=previous.log_server if previous is not None else None,
        )
        return encode(msgspec.structs.replace(config, nodes=nodes))

    written = await read_modify_write(store, NODES_CONFIG_KEY, bump)
    return decode(NodesConfig, written.value).nodes[node.name].generation


async def update_node(
    store: MetadataStore, name: str, change: Callable[[NodeConfig], NodeConfig]
) -> NodesConfig:
    """Apply ``change`` to one node's record under CAS (other nodes untouched); return the result."""

    def apply(raw: bytes | None) -> bytes:
        if raw is None:
            raise RecordFormatError(f"{NODES_CONFIG_KEY} is missing: node {name} is not registered")
        config = decode(NodesConfig, raw, NODES_CONFIG_KEY)
        if name not in config.nodes:
            raise RecordFormatError(f"{NODES_CONFIG_KEY} has no node {name!r}")
        nodes = dict(config.nodes)
        nodes[name] = change(nodes[name])
        return encode(msgspec.structs.replace(config, nodes=nodes))

    written = await read_modify_write(store, NODES_CONFIG_KEY, apply)
    return decode(NodesConfig, written.value)

"""durastate's control-plane metadata: a versioned key-value store with compare-and-set.

Backends: ``LocalMetadataStore`` (RocksDB, single node) and ``EtcdMetadataStore`` (an etcd
cluster, whose members ``EtcdMember`` supervises). Both meet ``MetadataStore`` and share the CAS
rule in ``metadata.core``. Typed values and their keys live in ``metadata.records``.

The backends are imported on first use, so importing the core (or this package for its types)
does not load RocksDB, gRPC or aetcd's protobuf files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from metadata.core.types import Precondition, PreconditionKind, Versioned
from metadata.errors import (
    ClusterNameMismatch,
    CorruptStore,
    EtcdMemberError,
    InvalidKey,
    MetadataError,
    MetadataUnavailable,
    PreconditionFailed,
    RecordFormatError,
    StoreClosed,
    UnknownOutcome,
    ValueTooLarge,
)
from metadata.records import NODES_CONFIG_KEY, NodeConfig, NodesConfig, decode, encode, register_node
from metadata.store import MetadataStore, read_modify_write

if TYPE_CHECKING:
    from metadata.etcd import EtcdMetadataStore
    from metadata.etcd_member import EtcdMember
    from metadata.local import LocalMetadataStore

_LAZY = {
    "LocalMetadataStore": "metadata.local",
    "EtcdMetadataStore": "metadata.etcd",
    "EtcdMember": "metadata.etcd_member",
}

__all__ = [
    "NODES_CONFIG_KEY",
    "ClusterNameMismatch",
    "CorruptStore",
    "EtcdMember",
    "EtcdMemberError",
    "EtcdMetadataStore",
    "InvalidKey",
    "LocalMetadataStore",
    "MetadataError",
    "MetadataStore",
    "MetadataUnavailable",
    "NodeConfig",
    "NodesConfig",
    "Precondition",
    "PreconditionFailed",
    "PreconditionKind",
    "RecordFormatError",
    "StoreClosed",
    "UnknownOutcome",
    "ValueTooLarge",
    "Versioned",
    "decode",
    "encode",
    "read_modify_write",
    "register_node",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metadata' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

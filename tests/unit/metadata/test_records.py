"""Typed metadata records: the versioned encoding and node registration with generations."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from metadata import (
    NODES_CONFIG_KEY,
    ClusterNameMismatch,
    LocalMetadataStore,
    NodeConfig,
    NodesConfig,
    RecordFormatError,
    decode,
    encode,
    register_node,
)
from metadata.records import RECORD_FORMAT_V1


def node(name: str, address: str = "10.0.0.1", generation: int = 0) -> NodeConfig:
    return NodeConfig(
        name=name,
        generation=generation,
        roles=["metadata", "worker", "log-server"],
        address=address,
        ports={"ingress": 8080, "admin": 9070, "node": 5122},
    )


def test_round_trip():
    config = NodesConfig(cluster_name="prod", nodes={"n1": node("n1", generation=3), "n2": node("n2")})
    data = encode(config)
    assert data[0] == RECORD_FORMAT_V1
    assert decode(NodesConfig, data) == config
    assert decode(NodeConfig, encode(node("n1"))) == node("n1")


def test_unknown_format_version_is_a_clear_error():
    data = bytes([RECORD_FORMAT_V1 + 1]) + encode(node("n1"))[1:]
    with pytest.raises(RecordFormatError, match=r"unknown record format version 2"):
        decode(NodeConfig, data)


def test_empty_and_malformed_values_are_clear_errors():
    with pytest.raises(RecordFormatError, match="empty"):
        decode(NodesConfig, b"")
    with pytest.raises(RecordFormatError, match="NodesConfig"):
        decode(NodesConfig, bytes([RECORD_FORMAT_V1]) + b"\xc1garbage")
    with pytest.raises(RecordFormatError):
        decode(NodesConfig, encode(node("n1")))  # a NodeConfig is not a NodesConfig


def test_fields_added_by_a_newer_build_are_ignored():
    class NodeConfigV2(msgspec.Struct, frozen=True):
        name: str
        generation: int
        roles: list[str]
        address: str
        ports: dict[str, int]
        zone: str = "eu-1"

    newer = NodeConfigV2("n1", 2, ["worker"], "h", {"node": 1})
    assert decode(NodeConfig, encode(newer)) == NodeConfig("n1", 2, ["worker"], "h", {"node": 1})


def test_register_node_bumps_generations(tmp_path, run):
    async def body() -> None:
        store = LocalMetadataStore.open(tmp_path / "meta")
        try:
            assert await register_node(store, node("n1", generation=99), "prod") == 1
            assert await register_node(store, node("n2"), "prod") == 1
            assert await register_node(store, node("n1", address="10.0.0.9"), "prod") == 2
            assert await register_node(store, node("n1", address="10.0.0.9"), "prod") == 3

            stored = await store.get(NODES_CONFIG_KEY)
            assert stored is not None
            config = decode(NodesConfig, stored.value)
            assert config.cluster_name == "prod"
            # Plain node ids are assigned once, in registration order, and kept across restarts.
            assert config.nodes["n1"] == msgspec.structs.replace(
                node("n1", address="10.0.0.9", generation=3), node_id=1
            )
            assert config.nodes["n2"] == msgspec.structs.replace(node("n2", generation=1), node_id=2)

            with pytest.raises(ClusterNameMismatch):
                await register_node(store, node("n3"), "staging")
            assert "n3" not in decode(NodesConfig, (await store.get(NODES_CONFIG_KEY)).value).nodes
        finally:
            await store.close()

    run(body())


def test_concurrent_registrations_lose_nothing(tmp_path, run):
    async def body() -> None:
        store = LocalMetadataStore.open(tmp_path / "meta")
        try:
            names = [f"n{i}" for i in range(5)]
            # Each node starts twice, all at once: every start gets its own generation.
            generations = await asyncio.gather(*(register_node(store, node(n), "prod") for n in names * 2))
            by_node: dict[str, list[int]] = {}
            for name, generation in zip(names * 2, generations, strict=True):
                by_node.setdefault(name, []).append(generation)
            assert all(sorted(gens) == [1, 2] for gens in by_node.values())
            config = decode(NodesConfig, (await store.get(NODES_CONFIG_KEY)).value)
            assert {n: c.generation for n, c in config.nodes.items()} == dict.fromkeys(names, 2)
        finally:
            await store.close()

    run(body())

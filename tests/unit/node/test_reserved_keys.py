"""Reserved metadata keys: refused unless forced with a value of the key's type."""

import pytest

from bifrost.chain_store import LogsConfig, chain_key
from bifrost.core import Chain
from bifrost.core._types import GenerationalNodeId, LogletParams, loglet_id
from metadata.records import NodeConfig, NodesConfig, encode
from node.reserved_keys import ReservedKeyError, check_put, from_json, reserved, to_json

CHAIN = Chain.new(1, LogletParams(loglet_id(1, 0), GenerationalNodeId(1, 1), 1, (1,)))
NODES = NodesConfig("c", {"n1": NodeConfig("n1", 1, ["log-server"], "127.0.0.1", {"data": 1}, 1)})


@pytest.mark.parametrize(
    "key",
    ["nodes_config", "bifrost_logs", "log_chain_1", "log_chain_x", "pp_epoch_3", "partition_table", "schema"],
)
def test_internal_keys_are_reserved(key: str) -> None:
    assert reserved(key) is not None
    with pytest.raises(ReservedKeyError, match=f"'{key}'"):
        check_put(key, b"garbage", force=False)


@pytest.mark.parametrize("key", ["greeting", "nodes_config2", "my_log_chain_1", "schemas", "x"])
def test_other_keys_are_free(key: str) -> None:
    assert reserved(key) is None
    check_put(key, b"anything", force=False)


def test_force_writes_only_a_value_of_the_keys_type() -> None:
    check_put("log_chain_1", encode(CHAIN), force=True)
    check_put("nodes_config", encode(NODES), force=True)
    check_put("bifrost_logs", encode(LogsConfig([1, 2], 1)), force=True)
    with pytest.raises(ReservedKeyError, match="not a valid Chain"):
        check_put("log_chain_1", b"\x01garbage", force=True)
    with pytest.raises(ReservedKeyError, match="not a valid NodesConfig"):
        check_put("nodes_config", encode(CHAIN), force=True)
    with pytest.raises(ReservedKeyError, match="own log's chain, not log 1's"):
        check_put(chain_key(2), encode(CHAIN), force=True)
    with pytest.raises(ReservedKeyError, match="cannot be written by hand"):
        check_put("schema", b"{}", force=True)


def test_json_round_trip_of_a_reserved_value() -> None:
    text = to_json("log_chain_1", encode(CHAIN))
    assert text is not None
    assert from_json("log_chain_1", text) == encode(CHAIN)
    assert to_json("log_chain_1", b"garbage") is None
    assert to_json("greeting", b"x") is None
    assert from_json("log_chain_1", "not json") is None

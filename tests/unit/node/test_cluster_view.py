"""The nodes configuration as one node follows it: admission of data-port peers, and a bad value
written into the store is skipped while the last good one stays in force."""

import asyncio
from pathlib import Path

from bifrost.core._types import GenerationalNodeId
from bifrost.net.core import Refusal
from metadata.local import LocalMetadataStore
from metadata.records import NODES_CONFIG_KEY, LogServerStorage, NodeConfig, NodesConfig, StorageState, encode
from node.log_role import ClusterView


def config(generation: int) -> NodesConfig:
    return NodesConfig(
        "c",
        {
            "n1": NodeConfig("n1", 1, ["log-server"], "127.0.0.1", {"data": 1}, 1),
            "n2": NodeConfig("n2", generation, ["log-server"], "127.0.0.1", {"data": 2}, 2),
        },
    )


def test_admission_follows_the_known_generations() -> None:
    view = ClusterView(config(3))
    assert view.admit(GenerationalNodeId(2, 3)) is None
    assert view.admit(GenerationalNodeId(2, 4)) is None, "a restart the view has not seen yet"
    assert view.admit(GenerationalNodeId(2, 2)) is Refusal.STALE_GENERATION
    assert view.admit(GenerationalNodeId(7, 1)) is Refusal.UNKNOWN_NODE


def test_follow_skips_a_bad_value_and_keeps_going(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalMetadataStore.open(tmp_path)
        await store.put(NODES_CONFIG_KEY, encode(config(1)))
        view = ClusterView(config(1))
        task = asyncio.ensure_future(view.follow(store))
        try:
            await store.put(NODES_CONFIG_KEY, b"\x01garbage")
            await store.put(NODES_CONFIG_KEY, b"")
            assert view.nodes == config(1)
            await store.put(NODES_CONFIG_KEY, encode(config(2)))
            async with asyncio.timeout(10):
                while view.nodes != config(2):
                    assert view.nodes == config(1), "only a good value may replace the last good one"
                    assert not task.done(), "the watch died on a bad value"
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await store.close()

    asyncio.run(main())


def test_which_stores_may_join_new_nodesets() -> None:
    def with_state(state: StorageState | None) -> ClusterView:
        storage = None if state is None else LogServerStorage(state, 1, lost_loglets=[5])
        node = NodeConfig("n1", 1, ["log-server"], "127.0.0.1", {"data": 1}, 1, log_server=storage)
        return ClusterView(NodesConfig("c", {"n1": node}))

    assert with_state(None).writable(1), "not reported yet"
    assert with_state(StorageState.READ_WRITE).writable(1)
    # Untrusted for loglet 5 only; a new loglet is not one it lost.
    assert with_state(StorageState.DATA_LOSS).writable(1)
    assert with_state(StorageState.DATA_LOSS).non_authoritative(5) == frozenset({1})
    assert not with_state(StorageState.READ_ONLY).writable(1), "a disk that fails writes"
    assert not with_state(StorageState.DISABLED).writable(1)
    assert not with_state(StorageState.PROVISIONING).writable(1)

"""Wiring of the log on one node: the log-server role, the data-port network, failure detection
by heartbeats, and the Bifrost facade. Membership and addresses come from NodesConfig.

The data port admits a peer only with the cluster secret and an identity the nodes config
knows (a generation below the known one is a stale process; a higher one is a restart this
node has not seen yet). A heartbeat counts only for the identity of the connection it came on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bifrost.bifrost import Bifrost
from bifrost.chain_store import provision_logs
from bifrost.core._types import GenerationalNodeId
from bifrost.log_server.store import RocksLogStore
from bifrost.log_server.writer import WriterStats
from bifrost.net.core import Refusal
from bifrost.net.messaging import ConnectionLimits, DataPortAuth
from bifrost.replicated.log_server import LogServerService
from bifrost.replicated.messages import Heartbeat, WireCodec
from bifrost.replicated.provider import ReplicatedProvider
from bifrost.replicated.runtime import Network, now_ms
from metadata import MetadataStore, MetadataUnavailable, RecordFormatError, UnknownOutcome
from metadata.records import NODES_CONFIG_KEY, NodeConfig, NodesConfig, decode
from node import secret
from node.config import NodeConfig as NodeSettings
from node.core import Alive, Dead, FailureDetector, Tick
from node.core import Heartbeat as HeartbeatIn

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 0.2
# A peer silent for this long is dead: appends to its sequencer stop waiting and reconfigure.
FAILURE_TIMEOUT_MS = 1000
SUSPECT_MS = 2000
WATCHDOG_INTERVAL_S = 1.0


class ClusterView:
    """The latest NodesConfig this node has seen, kept fresh by a metadata watch."""

    def __init__(self, initial: NodesConfig) -> None:
        self.nodes = initial

    def by_id(self, node_id: int) -> NodeConfig | None:
        for node in self.nodes.nodes.values():
            if node.node_id == node_id:
                return node
        return None

    def name_of(self, node_id: int) -> str:
        node = self.by_id(node_id)
        return node.name if node is not None else f"N{node_id}"

    def data_address(self, node_id: int) -> tuple[str, int] | None:
        node = self.by_id(node_id)
        if node is None or "data" not in node.ports:
            return None
        return node.address, node.ports["data"]

    def log_servers(self) -> list[int]:
        return sorted(n.node_id for n in self.nodes.nodes.values() if "log-server" in n.roles)

    def admit(self, peer: GenerationalNodeId) -> Refusal | None:
        """Whether a process claiming to be ``peer`` may use the data port."""
        node = self.by_id(peer.node)
        if node is None:
            return Refusal.UNKNOWN_NODE
        if peer.generation < node.generation:
            return Refusal.STALE_GENERATION
        return None

    async def follow(self, store: MetadataStore) -> None:
        """Keep ``nodes`` current. A stored value that does not decode is logged and skipped: the
        last good configuration stays in force."""
        while True:
            try:
                async for found in store.watch(NODES_CONFIG_KEY):
                    if found is None:
                        continue
                    try:
                        self.nodes = decode(NodesConfig, found.value, NODES_CONFIG_KEY)
                    except RecordFormatError as e:
                        log.error("ignoring a bad nodes config in the metadata store", extra={"error": str(e)})
            except (MetadataUnavailable, UnknownOutcome) as e:
                log.info("nodes config watch interrupted", extra={"error": str(e)})
                await asyncio.sleep(0.5)


class LogRole:
    def __init__(
        self, cfg: NodeSettings, store: MetadataStore, me: GenerationalNodeId, view: ClusterView
    ) -> None:
        self._cfg = cfg
        self._store = store
        self.me = me
        self.view = view
        self._log_store: RocksLogStore | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.detector = FailureDetector(
            [n for n in view.log_servers() if n != me.node], now_ms(), FAILURE_TIMEOUT_MS, SUSPECT_MS
        )
        log_server = None
        if "log-server" in cfg.roles:
            self._log_store = RocksLogStore(cfg.base_dir / "log-server")
            log_server = LogServerService(me.node, self._log_store)
        self.network = Network(
            DataPortAuth(secret.for_node(cfg), me, view.admit),
            WireCodec(),
            view.data_address,
            lambda peer, reply, rid, msg: self.provider.handle_request(peer, reply, rid, msg),
            ConnectionLimits.for_process(cfg.bifrost.max_record_bytes),
        )
        self.provider = ReplicatedProvider(
            me,
            self.network,
            log_server,
            self._is_dead,
            self._is_stale,
            self._on_node_message,
            names_loglet=lambda params: self.bifrost.names_loglet(params),
        )
        self.bifrost = Bifrost(
            store, self.provider, self._live_log_servers, max_record_bytes=cfg.bifrost.max_record_bytes
        )

    @property
    def log_store(self) -> RocksLogStore | None:
        return self._log_store

    def log_store_writer_stats(self) -> WriterStats | None:
        return self._log_store.writer.stats if self._log_store is not None else None

    def _is_dead(self, node: int) -> bool:
        return node != self.me.node and not self.detector.is_alive(node)

    def _is_stale(self, process: GenerationalNodeId) -> bool:
        node = self.view.by_id(process.node)
        return node is not None and node.generation > process.generation

    def _live_log_servers(self) -> list[int]:
        return [n for n in self.view.log_servers() if n == self.me.node or self.detector.is_alive(n)]

    async def start(self) -> None:
        await self.network.start(self._cfg.address, self._cfg.ports.data)
        await provision_logs(self._store, self._cfg.bifrost.num_logs, self._cfg.bifrost.replication)
        self._tasks = [
            asyncio.ensure_future(self.view.follow(self._store)),
            asyncio.ensure_future(self._heartbeats()),
            asyncio.ensure_future(self._watchdog()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bifrost.close()
        await self.provider.close()
        await self.network.close()
        if self._log_store is not None:
            await self._log_store.close()

    # --- failure detection ---

    async def _heartbeats(self) -> None:
        beat = Heartbeat(self.me.node, self.me.generation)
        while True:
            for node in self.view.log_servers():
                if node != self.me.node:
                    self.network.notify(node, beat)
            self._apply(self.detector.step(Tick(now_ms())))
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _watchdog(self) -> None:
        """Logs nobody appends to still need a live sequencer (readers and the next appender
        would otherwise wait on a dead one): the lowest live node reconfigures them."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            live = self._live_log_servers()
            if not live or min(live) != self.me.node:
                continue
            try:
                config = await self.bifrost.logs_config()
                for log_id in config.log_ids:
                    chain, version = await self.bifrost.chain(log_id)
                    if chain is None or chain.tail.params is None:
                        continue
                    if self.bifrost.sequencer_is_gone(chain.tail.params):
                        log.info("watchdog reconfigures a log with a dead sequencer", extra={"log": log_id})
                        await self.bifrost.reconfigure(log_id, expected_version=version)
            except Exception as e:  # the watchdog must outlive any one failed round
                log.info("watchdog round failed", extra={"error": repr(e)})

    def _on_node_message(self, peer: GenerationalNodeId, reply: Any, request_id: int, message: Any) -> None:
        if isinstance(message, Heartbeat):
            if (message.node_id, message.generation) != (peer.node, peer.generation):
                self.network.refusals.count(
                    "heartbeat-not-from-its-node", f"{peer} sent a heartbeat for N{message.node_id}:{message.generation}"
                )
                return
            self._apply(self.detector.step(HeartbeatIn(message.node_id, message.generation, now_ms())))

    def _apply(self, changes: list[Alive | Dead]) -> None:
        for change in changes:
            alive = isinstance(change, Alive)
            log.info("peer " + ("alive" if alive else "dead"), extra={"peer": self.view.name_of(change.node)})
            self.provider.node_liveness_changed(change.node, alive)

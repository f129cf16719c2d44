"""Wiring of the log on one node: the log-server role, the data-port network, failure detection
by heartbeats, and the Bifrost facade. Membership and addresses come from NodesConfig.

The data port admits a peer only with the cluster secret and an identity the nodes config
knows (a generation below the known one is a stale process; a higher one is a restart this
node has not seen yet). A heartbeat counts only for the identity of the connection it came on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from bifrost.bifrost import Bifrost
from bifrost.chain_store import load_chain, load_logs_config, provision_logs
from bifrost.core._types import GenerationalNodeId
from bifrost.errors import UnknownLog
from bifrost.log_server.storage_state import decide
from bifrost.log_server.store import RocksLogStore, StoreOpenError
from bifrost.log_server.writer import WriterStats
from bifrost.net.core import Refusal
from bifrost.net.messaging import ConnectionLimits, DataPortAuth
from bifrost.policy import (
    FAILURE_TIMEOUT_MS,
    HEARTBEAT_INTERVAL_S,
    SUSPECT_MS,
    WATCH_RETRY_S,
    WATCHDOG_INTERVAL_S,
    WATCHDOG_TAKEOVER_S,
)
from bifrost.replicated.log_server import LogServerService
from bifrost.replicated.messages import Heartbeat, NodeNotice, WireCodec
from bifrost.replicated.provider import ReplicatedProvider
from bifrost.replicated.rebuild import rebuild_sealed_loglet
from bifrost.replicated.runtime import Network, now_ms
from metadata import MetadataStore, MetadataUnavailable, RecordFormatError, UnknownOutcome
from metadata.records import NODES_CONFIG_KEY, NodeConfig, NodesConfig, StorageState, decode, update_node
from node import secret
from node.config import NodeConfig as NodeSettings
from node.core import Alive, Dead, FailureDetector, Tick
from node.core import Heartbeat as HeartbeatIn

log = logging.getLogger(__name__)


def slow_fsync_file(base_dir: Path) -> Path:
    """Test hook of the chaos harness: a number of milliseconds in this file slows every sync of
    the log-server by that much (see bifrost/log_server/writer.py)."""
    return base_dir / "faults" / "slow-fsync-ms"


class StorageRefused(Exception):
    """This node's log-server store cannot be used; the message says why and what to do."""


class ClusterView:
    """The latest NodesConfig this node has seen, kept fresh by a metadata watch."""

    def __init__(self, initial: NodesConfig) -> None:
        self._nodes = initial
        self._lost: dict[int, frozenset[int]] = _lost_index(initial)

    @property
    def nodes(self) -> NodesConfig:
        return self._nodes

    @nodes.setter
    def nodes(self, nodes: NodesConfig) -> None:
        self._nodes = nodes
        self._lost = _lost_index(nodes)

    def by_id(self, node_id: int) -> NodeConfig | None:
        return self._nodes.by_id(node_id)

    def non_authoritative(self, loglet_id: int) -> frozenset[int]:
        """Nodes whose stores may have lost records of this loglet (DATA_LOSS, listed)."""
        return self._lost.get(loglet_id, frozenset())

    def storage_state(self, node_id: int) -> StorageState | None:
        node = self.by_id(node_id)
        return None if node is None or node.log_server is None else node.log_server.state

    def writable(self, node_id: int) -> bool:
        """May join new nodesets: a store that takes writes (or one not reported yet by an older
        build). A DATA_LOSS store does: it is untrusted only for the loglets listed as lost, and
        a new loglet is not one of them, so a node rebuilding after a wipe already carries new
        writes (otherwise a fault during a long rebuild left one writable node)."""
        state = self.storage_state(node_id)
        return state is None or state in (StorageState.READ_WRITE, StorageState.DATA_LOSS)

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
                        log.error(
                            "ignoring a bad nodes config in the metadata store", extra={"error": str(e)}
                        )
            except (MetadataUnavailable, UnknownOutcome) as e:
                log.info("nodes config watch interrupted", extra={"error": str(e)})
                await asyncio.sleep(WATCH_RETRY_S)


def _lost_index(nodes: NodesConfig) -> dict[int, frozenset[int]]:
    index: dict[int, set[int]] = {}
    for node in nodes.nodes.values():
        st = node.log_server
        if st is not None and st.state is StorageState.DATA_LOSS:
            for lid in st.lost_loglets:
                index.setdefault(lid, set()).add(node.node_id)
    return {lid: frozenset(ns) for lid, ns in index.items()}


async def member_loglets(store: MetadataStore, node_id: int) -> list[tuple[int, int]]:
    """(loglet id, replication) of every loglet in any chain whose nodeset holds the node."""
    config = await load_logs_config(store)
    if config is None:
        return []
    found = []
    for log_id in config.log_ids:
        try:
            chain, _ = await load_chain(store, log_id)
        except RecordFormatError as e:
            # A chain that does not decode (written by hand) names no members we could trust;
            # the log itself reports the bad key when used.
            log.error("cannot read a log's chain to find this node's loglets", extra={"error": str(e)})
            continue
        for seg in chain.segments if chain is not None else ():
            if seg.params is not None and node_id in seg.params.nodeset:
                found.append((seg.params.loglet_id, seg.params.replication))
    return found


async def check_storage(cfg: NodeSettings, store: MetadataStore) -> None:
    """Refuse (StorageRefused) before this node registers or opens anything for writing, when
    its log-server store cannot be used: a refused start must change nothing durable."""
    if "log-server" not in cfg.roles:
        return
    found = await store.get(NODES_CONFIG_KEY)
    nodes = decode(NodesConfig, found.value, NODES_CONFIG_KEY) if found is not None else None
    me = nodes.nodes.get(cfg.node_name) if nodes is not None else None
    if nodes is None or me is None:
        return  # a new node: its store is new too
    try:
        marker = RocksLogStore.read_identity(cfg.base_dir / "log-server")
    except StoreOpenError as e:
        raise StorageRefused(str(e)) from None
    decision = decide(
        path=str(cfg.base_dir / "log-server"),
        marker=marker,
        recorded=me.log_server,
        cluster_id=nodes.cluster_id,
        node_id=me.node_id,
        generation=me.generation + 1,
        member_loglets=await member_loglets(store, me.node_id),
    )
    if decision.refusal is not None:
        raise StorageRefused(decision.refusal)


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
        self._notice_handlers: dict[str, Callable[[GenerationalNodeId, bytes], None]] = {}
        self.detector = FailureDetector(
            [n for n in view.log_servers() if n != me.node], now_ms(), FAILURE_TIMEOUT_MS, SUSPECT_MS
        )
        log_server = None
        if "log-server" in cfg.roles:
            try:
                self._log_store = RocksLogStore(
                    cfg.base_dir / "log-server", fault_file=slow_fsync_file(cfg.base_dir)
                )
            except StoreOpenError as e:
                raise StorageRefused(str(e)) from None
            log_server = LogServerService(me.node, self._log_store)
        self.log_server = log_server
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
            non_authoritative=view.non_authoritative,
            names_loglet=lambda params: self.bifrost.names_loglet(params),
        )
        self.bifrost = Bifrost(
            store,
            self.provider,
            self._live_log_servers,
            max_record_bytes=cfg.bifrost.max_record_bytes,
            all_live_nodes=self._live_nodes,
            spare_nodes=self._spare_log_servers,
        )

    @property
    def log_store(self) -> RocksLogStore | None:
        return self._log_store

    def storage_state(self) -> str:
        """This node's log-server state as it stands now (a local disk fault shows at once)."""
        if self.log_server is not None and self.log_server.fault is not None:
            return StorageState.READ_ONLY.value
        state = self.view.storage_state(self.me.node)
        return (state or StorageState.READ_WRITE).value

    def health(self) -> str | None:
        """Why this node is degraded, or None when it is fully healthy."""
        if self.log_server is not None and self.log_server.fault is not None:
            return f"log-server read-only: {self.log_server.fault}"
        mine = self.view.nodes.nodes.get(self._cfg.node_name)
        st = mine.log_server if mine is not None else None
        if st is None or st.state is StorageState.READ_WRITE:
            return None
        if st.state is StorageState.DATA_LOSS:
            return (
                f"log-server {st.state.value}: {st.reason}; rebuilding {len(st.lost_loglets)} loglet(s) "
                "from the other nodes"
            )
        return f"log-server {st.state.value}: {st.reason}"

    def log_store_writer_stats(self) -> WriterStats | None:
        return self._log_store.writer.stats if self._log_store is not None else None

    def _is_dead(self, node: int) -> bool:
        return node != self.me.node and not self.detector.is_alive(node)

    def _is_stale(self, process: GenerationalNodeId) -> bool:
        node = self.view.by_id(process.node)
        return node is not None and node.generation > process.generation

    def _live_log_servers(self) -> list[int]:
        """Live log-servers that may join new nodesets (their stores take writes)."""
        return [n for n in self._live_nodes() if self._writable(n)]

    def _spare_log_servers(self) -> list[int]:
        """Log-servers down now whose stores were taking writes when last reported."""
        return [n for n in self.view.log_servers() if not self.is_live(n) and self.view.writable(n)]

    def is_live(self, node: int) -> bool:
        """This node, or a peer the failure detector hears from."""
        return node == self.me.node or self.detector.is_alive(node)

    def _live_nodes(self) -> list[int]:
        return [n for n in self.view.log_servers() if n == self.me.node or self.detector.is_alive(n)]

    def _writable(self, node: int) -> bool:
        # This node knows its own disk faults first (its metadata may sit on the same full disk).
        if node == self.me.node and self.log_server is not None and self.log_server.fault is not None:
            return False
        return self.view.writable(node)

    async def start(self) -> None:
        # Before serving anything: whether this node's store can be trusted decides what it may
        # answer to seals and tail queries.
        await self._reconcile_storage()
        await self.network.start(self._cfg.address, self._cfg.ports.data)
        await provision_logs(self._store, self._cfg.bifrost.num_logs, self._cfg.bifrost.replication)
        self._tasks = [
            asyncio.ensure_future(self.view.follow(self._store)),
            asyncio.ensure_future(self._heartbeats()),
            asyncio.ensure_future(self._watchdog()),
            asyncio.ensure_future(self._rebuild()),
        ]

    async def _reconcile_storage(self) -> None:
        if self._log_store is None:
            return
        nodes = self.view.nodes
        me = nodes.nodes[self._cfg.node_name]
        decision = decide(
            path=str(self._cfg.base_dir / "log-server"),
            marker=self._log_store.identity(),
            recorded=me.log_server,
            cluster_id=nodes.cluster_id,
            node_id=self.me.node,
            generation=self.me.generation,
            member_loglets=await member_loglets(self._store, self.me.node),
        )
        if decision.refusal is not None:
            raise StorageRefused(decision.refusal)
        if decision.write_marker is not None:
            self._log_store.write_identity(decision.write_marker)
        if decision.state != me.log_server:
            state = decision.state
            self.view.nodes = await update_node(
                self._store, self._cfg.node_name, lambda n: msgspec.structs.replace(n, log_server=state)
            )
            assert state is not None
            log.warning(
                "log-server storage state",
                extra={
                    "state": state.state.value,
                    "lost_loglets": len(state.lost_loglets),
                    "reason": state.reason,
                },
            )

    async def stop(self) -> None:
        if self.log_server is not None:
            self.log_server.close()
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
        would otherwise wait on a dead one); open loglets with a member that lost its data, or
        whose nodeset cannot take writes or could be larger, must move to a new nodeset. The
        lowest live writable node reconfigures them; the others step in for a dead sequencer
        after WATCHDOG_TAKEOVER_S. Each log is checked in a task of its own, so one stuck
        reconfiguration (it gives up after 20 s) holds up no other log."""
        running: dict[int, asyncio.Task[None]] = {}
        gone_since: dict[int, tuple[int, float]] = {}  # log -> (its tail loglet, first seen gone)
        try:
            while True:
                await asyncio.sleep(WATCHDOG_INTERVAL_S)
                live = self._live_log_servers()
                lowest = bool(live) and min(live) == self.me.node
                try:
                    config = await self.bifrost.logs_config()
                except Exception as e:  # the watchdog must outlive any one failed round
                    log.info("watchdog round failed", extra={"error": repr(e)})
                    continue
                for log_id in config.log_ids:
                    task = running.get(log_id)
                    if task is None or task.done():
                        running[log_id] = asyncio.ensure_future(self._watch_log(log_id, lowest, gone_since))
        finally:
            for task in running.values():
                task.cancel()

    async def _watch_log(self, log_id: int, lowest: bool, gone_since: dict[int, tuple[int, float]]) -> None:
        try:
            chain, version = await self.bifrost.chain(log_id)
            if chain is None or chain.tail.params is None:
                return
            params = chain.tail.params
            if self.bifrost.sequencer_is_gone(params):
                loglet, since = gone_since.get(log_id, (params.loglet_id, time.monotonic()))
                if loglet != params.loglet_id:
                    since = time.monotonic()
                gone_since[log_id] = (params.loglet_id, since)
                if not lowest and time.monotonic() - since < WATCHDOG_TAKEOVER_S:
                    return
                why = "its sequencer is gone"
            elif not lowest:
                return
            elif self.view.non_authoritative(params.loglet_id):
                why = "a member lost its data"
            elif change := await self.bifrost.nodeset_needs_change(params):
                why = change
            else:
                return
            log.info("watchdog reconfigures a log", extra={"log": log_id, "why": why})
            await self.bifrost.reconfigure(log_id, expected_version=version)
        except Exception as e:  # retried next round
            log.info("watchdog: log not reconfigured", extra={"log": log_id, "error": repr(e)})

    async def _rebuild(self) -> None:
        """While this node's store is DATA_LOSS: copy each lost loglet back once its chain has
        sealed it, drop the ones no chain holds any more, and report READ_WRITE when none is
        left (then this node joins new nodesets again)."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            mine = self.view.nodes.nodes.get(self._cfg.node_name)
            st = mine.log_server if mine is not None else None
            if st is None or st.state is not StorageState.DATA_LOSS:
                continue
            for lid in list(st.lost_loglets):
                try:
                    if await self._rebuild_one(lid):
                        await self._update_lost(lambda lost, lid=lid: [x for x in lost if x != lid])
                except Exception as e:  # retried next round; the others go on
                    log.info("rebuild of a lost loglet failed", extra={"loglet": lid, "error": repr(e)})

    async def _rebuild_one(self, lid: int) -> bool:
        """True once the loglet needs nothing more from this node (rebuilt, or gone from its chain)."""
        log_id = lid >> 32
        try:
            chain, _ = await self.bifrost.chain(log_id, refresh=True)
        except UnknownLog:
            return True
        seg = chain.segment_of(lid) if chain is not None else None
        if chain is None or seg is None:
            return True  # trimmed away (or never created): nothing to hold
        end_lsn = chain.end_lsn(seg)
        if end_lsn is None:
            return False  # still the open tail: the watchdog seals it first
        assert seg.params is not None
        copied = await rebuild_sealed_loglet(self.provider, seg.params, seg.offset(end_lsn))
        log.info("rebuilt a lost loglet", extra={"loglet": lid, "records": copied})
        return True

    async def _update_lost(self, change: Callable[[list[int]], list[int]]) -> None:
        def apply(n: NodeConfig) -> NodeConfig:
            st = n.log_server
            if st is None or st.state is not StorageState.DATA_LOSS:
                return n
            lost = change(list(st.lost_loglets))
            state = StorageState.DATA_LOSS if lost else StorageState.READ_WRITE
            return msgspec.structs.replace(
                n,
                log_server=msgspec.structs.replace(
                    st, state=state, lost_loglets=lost, reason=st.reason if lost else ""
                ),
            )

        self.view.nodes = await update_node(self._store, self._cfg.node_name, apply)

    def on_notice(self, topic: str, handler: Callable[[GenerationalNodeId, bytes], None]) -> None:
        """Route NodeNotice messages of ``topic`` (other components' node-to-node messages)."""
        self._notice_handlers[topic] = handler

    def notify(self, node: int, topic: str, body: bytes) -> None:
        self.network.notify(node, NodeNotice(topic, body))

    def _on_node_message(self, peer: GenerationalNodeId, reply: Any, request_id: int, message: Any) -> None:
        if isinstance(message, NodeNotice):
            handler = self._notice_handlers.get(message.topic)
            if handler is not None:
                handler(peer, message.body)
            return
        if isinstance(message, Heartbeat):
            if (message.node_id, message.generation) != (peer.node, peer.generation):
                self.network.refusals.count(
                    "heartbeat-not-from-its-node",
                    f"{peer} sent a heartbeat for N{message.node_id}:{message.generation}",
                )
                return
            self._apply(self.detector.step(HeartbeatIn(message.node_id, message.generation, now_ms())))

    def _apply(self, changes: list[Alive | Dead]) -> None:
        for change in changes:
            alive = isinstance(change, Alive)
            log.info("peer " + ("alive" if alive else "dead"), extra={"peer": self.view.name_of(change.node)})
            self.provider.node_liveness_changed(change.node, alive)

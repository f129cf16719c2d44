"""The node process: start the roles in dependency order, serve, stop cleanly on SIGTERM.

Start order: metadata (own etcd member, then the store) -> register in NodesConfig with a
generation bumped by CAS -> gRPC server -> HTTP ingress and admin. The HTTP servers come last, so
a health answer means the node is registered and serving.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from bifrost.core._types import GenerationalNodeId
from metadata import (
    ClusterNameMismatch,
    EtcdMemberError,
    MetadataError,
    MetadataStore,
    MetadataUnavailable,
    UnknownOutcome,
)
from metadata.etcd import EtcdMetadataStore
from metadata.etcd_member import EtcdMember
from metadata.local import LocalMetadataStore
from metadata.records import NODES_CONFIG_KEY, NodesConfig, decode, register_node
from metadata.records import NodeConfig as NodeRecord
from node.config import NodeConfig
from node.grpc_service import NodeServicer, start_grpc_server
from node.http import start_http_servers
from node.log_role import ClusterView, LogRole, StorageRefused, check_storage
from node.worker_role import WorkerRole

log = logging.getLogger(__name__)

# A fresh 3-node cluster has no metadata quorum until its peers start: wait for them this long.
METADATA_READY_TIMEOUT_S = 90.0
# etcd's defaults (heartbeat 100 ms, election 1 s) are made for WANs; members on one host or LAN
# elect a new leader in about half the time with these, and the log's reconfiguration waits on
# the metadata store's leader. Pre-vote: a member whose log is behind (just back from a restart
# or a partition) cannot win, and without it each of its campaigns still bumped the term and
# reset the others' timers -- after a leader's node died, 5 split rounds (4 s) went by before
# the up-to-date member was elected (chaos, etcd 3.4, where pre-vote is off by default).
ETCD_TIMING = ("--heartbeat-interval", "50", "--election-timeout", "500", "--pre-vote")


class NodeStartError(Exception):
    """The node could not start; the message says which step failed and why."""


@dataclass(slots=True)
class Metadata:
    store: MetadataStore
    leader: Callable[[], Awaitable[str | None]]


def etcd_initial_cluster(cfg: NodeConfig) -> dict[str, str]:
    return cfg.metadata.etcd_initial_cluster or {cfg.node_name: f"http://{cfg.address}:{cfg.ports.etcd_peer}"}


def etcd_endpoints(cfg: NodeConfig) -> list[str]:
    own = f"{cfg.address}:{cfg.ports.etcd_client}"
    if not cfg.runs_etcd_member():
        return list(cfg.metadata.etcd_endpoints)
    # The node's own member first: it is the one that is up whenever this node is.
    return [own] + [e for e in cfg.metadata.etcd_endpoints if e != own]


async def open_metadata(cfg: NodeConfig, stack: AsyncExitStack) -> Metadata:
    if cfg.metadata.backend == "local":
        _refuse_lost_local_metadata(cfg)
        store = LocalMetadataStore.open(cfg.base_dir / "metadata")
        stack.push_async_callback(store.close)

        async def local_leader() -> str:
            return cfg.node_name

        return Metadata(store, local_leader)

    if cfg.runs_etcd_member():
        member = EtcdMember(
            name=cfg.node_name,
            data_dir=cfg.base_dir / "etcd",
            client_port=cfg.ports.etcd_client,
            peer_port=cfg.ports.etcd_peer,
            initial_cluster=etcd_initial_cluster(cfg),
            host=cfg.address,
            log_path=cfg.base_dir / "etcd.log",
            extra_args=ETCD_TIMING,
        )
        peers = [e for e in cfg.metadata.etcd_endpoints if e != f"{cfg.address}:{cfg.ports.etcd_client}"]
        if await member.rejoin_if_wiped(peers, METADATA_READY_TIMEOUT_S):
            log.warning(
                "etcd member data was gone: re-added the member to the cluster", extra={"peers": peers}
            )
        await member.start()
        stack.push_async_callback(member.stop)
        log.info("etcd member started", extra={"pid": member.pid, "client": member.client_endpoint})
        await member.wait_healthy(METADATA_READY_TIMEOUT_S)
    etcd = EtcdMetadataStore(etcd_endpoints(cfg))
    stack.push_async_callback(etcd.close)
    return Metadata(etcd, etcd.leader_name)


def _refuse_lost_local_metadata(cfg: NodeConfig) -> None:
    """The local metadata store holds the cluster's identity, its nodes and every log's chain:
    without it the log-server's records cannot be found again. Starting would create a new
    cluster over old data and reuse LSNs that were acknowledged, so refuse instead."""
    metadata_dir = cfg.base_dir / "metadata"
    log_dir = cfg.base_dir / "log-server"
    if metadata_dir.exists() or not log_dir.exists() or not any(log_dir.iterdir()):
        return
    raise NodeStartError(
        f"the metadata store {metadata_dir} is missing but the log-server store {log_dir} holds data: "
        f"restore {metadata_dir} from a backup, or remove the whole base dir {cfg.base_dir} to start "
        "a new cluster (its data is then lost)"
    )


async def register(cfg: NodeConfig, store: MetadataStore) -> int:
    record = NodeRecord(
        name=cfg.node_name,
        generation=0,
        roles=list(cfg.roles),
        address=cfg.address,
        ports=cfg.ports.as_dict(),
    )
    deadline = time.monotonic() + METADATA_READY_TIMEOUT_S
    while True:
        try:
            return await register_node(store, record, cfg.cluster_name)
        except ClusterNameMismatch as e:
            raise NodeStartError(f"the metadata store belongs to another cluster: {e}") from e
        except (MetadataUnavailable, UnknownOutcome) as e:
            # Re-running the bump after an unknown outcome may skip a generation: harmless, they
            # only need to grow.
            if time.monotonic() > deadline:
                raise NodeStartError(f"metadata store not reachable to register the node: {e}") from e
            log.info("waiting for the metadata store", extra={"error": str(e)})
            await asyncio.sleep(0.5)


async def current_nodes(store: MetadataStore) -> NodesConfig:
    found = await store.get(NODES_CONFIG_KEY)
    if found is None:
        raise NodeStartError("the nodes config vanished right after registering")
    return decode(NodesConfig, found.value)


async def run(cfg: NodeConfig, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        cfg.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            metadata = await open_metadata(cfg, stack)
        except (EtcdMemberError, MetadataError) as e:
            raise NodeStartError(str(e).strip().splitlines()[0]) from None
        try:
            await check_storage(cfg, metadata.store)
        except StorageRefused as e:
            raise NodeStartError(str(e)) from None
        generation = await register(cfg, metadata.store)
        nodes = await current_nodes(metadata.store)
        me = GenerationalNodeId(nodes.nodes[cfg.node_name].node_id, generation)
        try:
            log_role = LogRole(cfg, metadata.store, me, ClusterView(nodes))
            stack.push_async_callback(log_role.stop)
            await log_role.start()
        except StorageRefused as e:
            raise NodeStartError(str(e)) from None
        worker = None
        if "worker" in cfg.roles:
            worker = WorkerRole(cfg, metadata.store, me, log_role)
            stack.push_async_callback(worker.stop)
            await worker.start()
        servicer = NodeServicer(cfg, metadata.store, generation, metadata.leader, log_role)
        server, _health = await start_grpc_server(cfg, servicer)
        stack.push_async_callback(server.stop, 2.0)
        submitter = worker.submitter if worker is not None else None
        invoker_stats = worker.invoker_stats if worker is not None else None
        for runner in await start_http_servers(cfg, log_role, metadata.store, submitter, invoker_stats):
            stack.push_async_callback(runner.cleanup)
        log.info(
            "node ready",
            extra={
                "generation": generation,
                "node_id": me.node,
                "roles": ",".join(cfg.roles),
                **cfg.ports.as_dict(),
            },
        )
        await stop.wait()
        log.info("stopping")
        if submitter is not None:
            submitter.close()  # waiting ingress requests answer now, not at the HTTP servers' timeout
    log.info("stopped")

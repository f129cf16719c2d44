"""N in-process nodes of the replicated loglet: each with its own RocksDB log-server and its own
data port on loopback, talking over real TCP. Node 1 sequences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bifrost.core._types import GenerationalNodeId, LogletParams
from bifrost.log_server.store import RocksLogStore
from bifrost.net.messaging import DataPortAuth
from bifrost.replicated.log_server import LogServerService
from bifrost.replicated.messages import WireCodec
from bifrost.replicated.provider import ReplicatedProvider
from bifrost.replicated.runtime import Network
from node.ports import free_ports

SECRET = b"replicated-env-secret-0123456789"


async def any_params(params: LogletParams) -> bool:
    """These tests have no chains: every loglet's params are trusted."""
    return True


class Env:
    def __init__(self) -> None:
        self.providers: dict[int, ReplicatedProvider] = {}
        self.stores: dict[int, RocksLogStore] = {}
        self.networks: dict[int, Network] = {}
        self.ports: dict[int, int] = {}
        self.dead: set[int] = set()

    def params(self, loglet_id: int, replication: int, sequencer: int = 1) -> LogletParams:
        return LogletParams(
            loglet_id, GenerationalNodeId(sequencer, 1), replication, tuple(sorted(self.providers))
        )

    async def stop_node(self, node: int) -> None:
        await self.providers[node].close()
        await self.networks[node].close()
        await self.stores[node].close()
        self.dead.add(node)


@asynccontextmanager
async def replicated_env(tmp_path: Path, nodes: int) -> AsyncIterator[Env]:
    env = Env()
    ports = free_ports(nodes)
    for i in range(1, nodes + 1):
        env.ports[i] = ports[i - 1]
    try:
        for i in range(1, nodes + 1):
            store = RocksLogStore(tmp_path / f"n{i}")
            service = LogServerService(i, store)
            holder: dict[str, ReplicatedProvider] = {}
            me = GenerationalNodeId(i, 1)
            network = Network(
                DataPortAuth(SECRET, me, lambda peer: None),
                WireCodec(),
                lambda n: ("127.0.0.1", env.ports[n]) if n in env.ports else None,
                lambda peer, reply, rid, msg, h=holder: h["p"].handle_request(peer, reply, rid, msg),
            )
            provider = ReplicatedProvider(
                me, network, service, lambda n: n in env.dead, names_loglet=any_params
            )
            holder["p"] = provider
            await network.start("127.0.0.1", env.ports[i])
            env.providers[i], env.stores[i], env.networks[i] = provider, store, network
        yield env
    finally:
        for i in list(env.providers):
            if i not in env.dead:
                await env.stop_node(i)

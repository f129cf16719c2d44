"""The node's gRPC server: standard health service plus ``durastate.node.v1.NodeService``.

Handlers translate between protobuf messages and the components; refusals (a failed precondition)
are values in the response, transport-level trouble becomes a gRPC status with a message.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from metadata import (
    InvalidKey,
    MetadataStore,
    MetadataUnavailable,
    Precondition,
    PreconditionFailed,
    UnknownOutcome,
)
from node.config import NodeConfig
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc

log = logging.getLogger(__name__)

# Standard health checks answer SERVING for the whole server and for this service name.
NODE_SERVICE = "durastate.node.v1.NodeService"


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(
        self,
        cfg: NodeConfig,
        store: MetadataStore,
        generation: int,
        metadata_leader: Callable[[], Awaitable[str | None]],
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._generation = generation
        self._metadata_leader = metadata_leader
        self._started = time.monotonic()

    async def GetNodeInfo(
        self, request: node_pb2.GetNodeInfoRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeInfo:
        try:
            leader = await self._metadata_leader() or ""
        except Exception as e:  # the node still answers when its metadata cluster is unhappy
            log.info("metadata leader unknown", extra={"error": repr(e)})
            leader = ""
        return node_pb2.NodeInfo(
            name=self._cfg.node_name,
            generation=self._generation,
            roles=list(self._cfg.roles),
            ports=self._cfg.ports.as_dict(),
            uptime_s=time.monotonic() - self._started,
            pid=os.getpid(),
            metadata_backend=self._cfg.metadata.backend,
            metadata_leader=leader,
            cluster_name=self._cfg.cluster_name,
            address=self._cfg.address,
        )

    async def MetadataGet(
        self, request: node_pb2.MetadataGetRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.MetadataGetResponse:
        try:
            found = await self._store.get(request.key)
        except InvalidKey as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except (MetadataUnavailable, UnknownOutcome) as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"metadata store unavailable: {e}")
        if found is None:
            return node_pb2.MetadataGetResponse(found=False)
        return node_pb2.MetadataGetResponse(found=True, value=found.value, version=found.version)

    async def MetadataPut(
        self, request: node_pb2.MetadataPutRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.MetadataPutResponse:
        match request.precondition:
            case node_pb2.PRECONDITION_NONE:
                pre = Precondition.none()
            case node_pb2.PRECONDITION_DOES_NOT_EXIST:
                pre = Precondition.does_not_exist()
            case node_pb2.PRECONDITION_MATCHES_VERSION:
                pre = Precondition.matches(request.expected_version)
            case other:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown precondition kind {other}")
        try:
            version = await self._store.put(request.key, request.value, pre)
        except PreconditionFailed as e:
            resp = node_pb2.MetadataPutResponse(status=node_pb2.METADATA_PRECONDITION_FAILED)
            if e.current_version is not None:
                resp.current_version = e.current_version
            return resp
        except InvalidKey as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except MetadataUnavailable as e:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"metadata store unavailable, nothing written: {e}"
            )
        except UnknownOutcome as e:
            # ABORTED tells the client the write may have happened: it must re-read, not blindly retry.
            await context.abort(grpc.StatusCode.ABORTED, f"outcome unknown, re-read the key: {e}")
        return node_pb2.MetadataPutResponse(status=node_pb2.METADATA_OK, version=version)


async def start_grpc_server(
    cfg: NodeConfig, servicer: NodeServicer
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    server = grpc.aio.server()
    node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{cfg.address}:{cfg.ports.node}")
    if bound == 0:
        raise OSError(f"cannot bind the node port {cfg.address}:{cfg.ports.node}")
    await server.start()
    for name in ("", NODE_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer

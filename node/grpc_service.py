"""The node's gRPC server: standard health service plus ``durastate.node.v1.NodeService``.

Handlers translate between protobuf messages and the components; refusals (a failed precondition)
are values in the response, transport-level trouble becomes a gRPC status with a message.
NodeService calls need the cluster token (node/grpc_auth.py); any error a handler did not map
becomes ``INTERNAL`` with a one-line message (the traceback goes to the node's log only).
Messages may be as large as the largest append batch (bifrost/limits.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bifrost.bifrost import LogEntry, LogRecord
from bifrost.core import Chain
from bifrost.errors import InvalidLsn, LogSealed, LogUnavailable, RecordTooLarge, UnknownLog
from bifrost.limits import RECORD_OVERHEAD_BYTES, grpc_message_bytes, log_read_batch_bytes
from metadata import (
    InvalidKey,
    MetadataStore,
    MetadataUnavailable,
    Precondition,
    PreconditionFailed,
    RecordFormatError,
    UnknownOutcome,
    ValueTooLarge,
)
from node import metrics, secret
from node.config import NodeConfig
from node.grpc_auth import TokenAuthInterceptor
from node.log_role import LogRole
from node.read_batches import ready_batches
from node.reserved_keys import ReservedKeyError, check_put
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc

log = logging.getLogger(__name__)

# Standard health checks answer SERVING for the whole server and for this service name.
NODE_SERVICE = "durastate.node.v1.NodeService"


_LOG_ERRORS: dict[type[Exception], grpc.StatusCode] = {
    UnknownLog: grpc.StatusCode.NOT_FOUND,
    InvalidLsn: grpc.StatusCode.INVALID_ARGUMENT,
    RecordTooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    ValueError: grpc.StatusCode.INVALID_ARGUMENT,
    LogUnavailable: grpc.StatusCode.UNAVAILABLE,
    LogSealed: grpc.StatusCode.FAILED_PRECONDITION,
    # A stored chain or logs configuration that does not decode: the message names the key.
    RecordFormatError: grpc.StatusCode.FAILED_PRECONDITION,
    MetadataUnavailable: grpc.StatusCode.UNAVAILABLE,
    UnknownOutcome: grpc.StatusCode.UNAVAILABLE,
}

# Server-side HTTP/2 setup must finish this fast (a connection that never does holds a socket).
_HANDSHAKE_TIMEOUT_MS = 10_000


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class InternalErrorInterceptor(grpc.aio.ServerInterceptor):
    """Any exception a NodeService handler lets escape becomes INTERNAL with one line."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(f"/{NODE_SERVICE}/"):
            return handler
        method = details.method
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await inner(request, context)
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except Exception as e:
                    log.exception("gRPC handler failed", extra={"method": method})
                    await context.abort(grpc.StatusCode.INTERNAL, one_line(e))

            return handler._replace(unary_unary=unary)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for item in inner_stream(request, context):
                        yield item
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except Exception as e:
                    log.exception("gRPC handler failed", extra={"method": method})
                    await context.abort(grpc.StatusCode.INTERNAL, one_line(e))

            return handler._replace(unary_stream=stream)
        return handler


@asynccontextmanager
async def log_errors(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Bifrost's errors as gRPC statuses with the error's own message."""
    try:
        yield
    except tuple(_LOG_ERRORS) as e:
        code = next(c for t, c in _LOG_ERRORS.items() if isinstance(e, t))
        await context.abort(code, str(e))


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(
        self,
        cfg: NodeConfig,
        store: MetadataStore,
        generation: int,
        metadata_leader: Callable[[], Awaitable[str | None]],
        log_role: LogRole,
    ) -> None:
        self._log = log_role
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
                if request.expected_version < 1:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "expected version must be >= 1 (versions start at 1)",
                    )
                pre = Precondition.matches(request.expected_version)
            case other:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown precondition kind {other}")
        try:
            check_put(request.key, request.value, request.force)
        except ReservedKeyError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        try:
            version = await self._store.put(request.key, request.value, pre)
        except PreconditionFailed as e:
            resp = node_pb2.MetadataPutResponse(status=node_pb2.METADATA_PRECONDITION_FAILED)
            if e.current_version is not None:
                resp.current_version = e.current_version
            return resp
        except (InvalidKey, ValueTooLarge) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except MetadataUnavailable as e:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"metadata store unavailable, nothing written: {e}"
            )
        except UnknownOutcome as e:
            # ABORTED tells the client the write may have happened: it must re-read, not blindly retry.
            await context.abort(grpc.StatusCode.ABORTED, f"outcome unknown, re-read the key: {e}")
        return node_pb2.MetadataPutResponse(status=node_pb2.METADATA_OK, version=version)

    # --- the log ---

    async def LogAppend(
        self, request: node_pb2.LogAppendRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.LogAppendResponse:
        async with log_errors(context):
            first = await self._log.bifrost.append(request.log_id, list(request.records))
        return node_pb2.LogAppendResponse(first_lsn=first)

    async def LogRead(
        self, request: node_pb2.LogReadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[node_pb2.LogEntries]:
        bifrost = self._log.bifrost
        async with log_errors(context):
            to_lsn = None
            if not request.follow:
                tail, _ = await bifrost.find_tail(request.log_id)
                to_lsn = tail - 1
                if to_lsn < request.from_lsn:
                    return
            entries = bifrost.read(request.log_id, request.from_lsn, to_lsn)
            budget = log_read_batch_bytes(self._cfg.bifrost.max_record_bytes)
            # A message per record cost both ends far more than the record (node/read_batches.py).
            async for batch in ready_batches(entries, _entry_cost, budget):
                yield node_pb2.LogEntries(entries=[_log_entry(e) for e in batch])

    async def LogTail(
        self, request: node_pb2.LogTailRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.LogTailResponse:
        async with log_errors(context):
            tail, sealed = await self._log.bifrost.find_tail(request.log_id)
        return node_pb2.LogTailResponse(next_lsn=tail, sealed=sealed)

    async def LogChain(
        self, request: node_pb2.LogChainRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.LogChainResponse:
        async with log_errors(context):
            chain, version = await self._log.bifrost.chain(request.log_id, refresh=True)
        return self._chain_response(chain, version)

    def _chain_response(self, chain: Chain | None, version: int | None) -> node_pb2.LogChainResponse:
        resp = node_pb2.LogChainResponse(version=version or 0)
        if chain is None:
            return resp
        name = self._log.view.name_of
        for i, seg in enumerate(chain.segments):
            last = i == len(chain.segments) - 1
            if seg.params is None:
                resp.segments.append(node_pb2.LogSegment(base_lsn=seg.base_lsn, index=seg.index, sealed=True))
                continue
            resp.segments.append(
                node_pb2.LogSegment(
                    base_lsn=seg.base_lsn,
                    index=seg.index,
                    sequencer=name(seg.params.sequencer.node),
                    nodeset=[name(n) for n in seg.params.nodeset],
                    replication=seg.params.replication,
                    sealed=not last,
                    loglet_id=f"{chain.log_id}_{seg.index}",
                )
            )
        return resp

    async def LogTrim(
        self, request: node_pb2.LogTrimRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.LogTrimResponse:
        async with log_errors(context):
            await self._log.bifrost.trim(request.log_id, request.up_to_lsn)
        return node_pb2.LogTrimResponse()

    async def LogSeal(
        self, request: node_pb2.LogAdminRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.LogTailResponse:
        async with log_errors(context):
            tail = await self._log.bifrost.seal(request.log_id)
        return node_pb2.LogTailResponse(next_lsn=tail, sealed=True)

    async def LogReconfigure(
        self, request: node_pb2.LogAdminRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.LogChainResponse:
        async with log_errors(context):
            await self._log.bifrost.reconfigure(request.log_id)
            chain, version = await self._log.bifrost.chain(request.log_id, refresh=True)
        return self._chain_response(chain, version)


def _entry_cost(entry: LogEntry) -> int:
    return (len(entry.payload) if isinstance(entry, LogRecord) else 0) + RECORD_OVERHEAD_BYTES


def _log_entry(entry: LogEntry) -> node_pb2.LogEntry:
    if isinstance(entry, LogRecord):
        return node_pb2.LogEntry(lsn=entry.lsn, payload=entry.payload)
    return node_pb2.LogEntry(lsn=entry.from_lsn, trim_gap_to=entry.to_lsn)


async def start_grpc_server(
    cfg: NodeConfig, servicer: NodeServicer
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    limit = grpc_message_bytes(cfg.bifrost.max_record_bytes)
    server = grpc.aio.server(
        interceptors=[
            TokenAuthInterceptor(secret.for_node(cfg), lambda reason: metrics.EDGE.count("grpc", reason)),
            InternalErrorInterceptor(),
        ],
        options=[
            # gRPC sets SO_REUSEPORT by default: a second node (or a restart racing its dying
            # predecessor) would then share the port silently instead of failing to bind.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.server_handshake_timeout_ms", _HANDSHAKE_TIMEOUT_MS),
        ],
    )
    node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(f"{cfg.address}:{cfg.ports.node}")
    except RuntimeError:  # grpcio >= 1.60 raises instead of returning 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind the node port {cfg.address}:{cfg.ports.node}")
    await server.start()
    for name in ("", NODE_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer

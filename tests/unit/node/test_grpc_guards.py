"""The node gRPC server's interceptors on a real in-process server: the cluster token, and any
error a handler lets escape turned into one-line INTERNAL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from node.client import LogClient, NodeClient, NodeError, Unauthenticated
from node.grpc_auth import TokenAuthInterceptor
from node.grpc_service import InternalErrorInterceptor
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc

SECRET = b"g" * 32


class Broken(node_pb2_grpc.NodeServiceServicer):
    async def GetNodeInfo(
        self, request: node_pb2.GetNodeInfoRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.NodeInfo:
        raise RuntimeError("boom\n  with a second line")

    async def LogTail(
        self, request: node_pb2.LogTailRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.LogTailResponse:
        return node_pb2.LogTailResponse(next_lsn=7)

    async def LogRead(
        self, request: node_pb2.LogReadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[node_pb2.LogEntries]:
        yield node_pb2.LogEntries(entries=[node_pb2.LogEntry(lsn=1, payload=b"a")])
        raise KeyError("mid-stream")


def with_server(body: Callable[[str], None]) -> None:
    """Run the blocking client ``body(address)`` in a thread against a server on this loop."""

    async def main() -> None:
        server = grpc.aio.server(interceptors=[TokenAuthInterceptor(SECRET), InternalErrorInterceptor()])
        node_pb2_grpc.add_NodeServiceServicer_to_server(Broken(), server)
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            await asyncio.to_thread(body, f"127.0.0.1:{port}")
        finally:
            await server.stop(0)

    asyncio.run(main())


def test_calls_need_the_token_and_health_does_not() -> None:
    with_server(_token_checks)


def _token_checks(address: str) -> None:
    with NodeClient(address, secret=SECRET) as client:
        assert LogClient(client).tail(1) == (7, False)
    with (
        NodeClient(address, secret=b"w" * 32) as client,
        pytest.raises(Unauthenticated, match="wrong cluster token"),
    ):
        LogClient(client).tail(1)
    with NodeClient(address, secret=b"w" * 32) as client, pytest.raises(Unauthenticated):
        list(LogClient(client).read(1, 1, follow=False))
    with grpc.insecure_channel(address) as channel:
        assert health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        ).status == (health_pb2.HealthCheckResponse.SERVING)


def test_an_escaped_error_is_one_line_internal() -> None:
    with_server(_internal_errors)


def _internal_errors(address: str) -> None:
    with NodeClient(address, secret=SECRET) as client:
        with pytest.raises(NodeError) as e:
            client.node_info()
        assert str(e.value).endswith("INTERNAL: RuntimeError: boom with a second line")
        got = []
        with pytest.raises(NodeError, match="INTERNAL: KeyError: 'mid-stream'"):
            for entry in LogClient(client).read(1, 1, follow=False):
                got.append(entry.lsn)
        assert got == [1]

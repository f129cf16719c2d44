"""A small synchronous client of a node's gRPC service, for the CLI and for tests.

Every call carries the cluster token (node/grpc_auth.py) made from the secret given, or found for
the address (node/secret.py: a local cluster loaded in this process, the environment, or the
single node's default file). Every failure is one of the exceptions below, with a one-line
message; none is a bare ``grpc.RpcError``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from bifrost.limits import DEFAULT_MAX_RECORD_BYTES, grpc_message_bytes
from node import secret as cluster_secret
from node.grpc_auth import call_metadata
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc


class NodeUnreachable(Exception):
    """The node did not answer (down, starting, or partitioned)."""


class Refused(Exception):
    """The node refused: the thing asked for does not exist (an unknown log) or the request is
    impossible in its current state (appending to a sealed log)."""


class VersionMismatch(Exception):
    def __init__(self, current_version: int | None) -> None:
        self.current_version = current_version
        where = (
            "the key does not exist" if current_version is None else f"current version is {current_version}"
        )
        super().__init__(f"precondition failed: {where}")


class InvalidRequest(Exception):
    """The node refused the request as malformed (bad key, bad precondition)."""


class OutcomeUnknown(Exception):
    """The write may or may not have been applied: re-read the key before deciding anything."""


class Unauthenticated(Exception):
    """The node refused our cluster token: no secret, or not this cluster's."""


class NodeError(Exception):
    """The node failed the request for another reason (its message says which)."""


@dataclass(frozen=True, slots=True)
class Value:
    value: bytes
    version: int


# Statuses that mean the request was not applied and may be sent again.
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def translate(address: str, e: grpc.RpcError) -> Exception:
    """The client exception for a failed call (one line, the node's own message)."""
    code, details = e.code(), " ".join((e.details() or "").split())
    if code in _RETRYABLE:
        return NodeUnreachable(f"{address}: {code.name}: {details}")
    if code == grpc.StatusCode.ABORTED:
        return OutcomeUnknown(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(details)
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
        return Refused(details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(
            f"{address} refused the call: {details}; give the cluster secret with --secret-file, "
            "--base-dir or DURASTATE_SECURITY_SECRET"
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return InvalidRequest(f"{address}: {details}")
    return NodeError(f"{address}: {code.name}: {details}")


class NodeClient:
    def __init__(
        self,
        address: str,
        timeout_s: float = 5.0,
        secret: bytes | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.address = address
        self._timeout = timeout_s
        self._secret = secret if secret is not None else cluster_secret.for_address(address, os.environ)
        limit = grpc_message_bytes(max_record_bytes)
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # gRPC's default backoff grows to minutes while a node is down; a restarted node
                # answers within seconds, and a client should see that within a second.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._stub = node_pb2_grpc.NodeServiceStub(self._channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return call_metadata(self._secret)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: object, timeout: float | None = None) -> object:
        try:
            return getattr(self._stub, method)(
                request, timeout=timeout or self._timeout, metadata=self.metadata()
            )
        except grpc.RpcError as e:
            raise translate(self.address, e) from None

    def node_info(self, timeout: float | None = None) -> node_pb2.NodeInfo:
        return self._call("GetNodeInfo", node_pb2.GetNodeInfoRequest(), timeout)  # type: ignore[return-value]

    def get(self, key: str) -> Value | None:
        resp = self._call("MetadataGet", node_pb2.MetadataGetRequest(key=key))
        assert isinstance(resp, node_pb2.MetadataGetResponse)
        return Value(resp.value, resp.version) if resp.found else None

    def put(
        self,
        key: str,
        value: bytes,
        expect_version: int | None = None,
        must_not_exist: bool = False,
        force: bool = False,
    ) -> int:
        req = node_pb2.MetadataPutRequest(key=key, value=value, force=force)
        if must_not_exist:
            req.precondition = node_pb2.PRECONDITION_DOES_NOT_EXIST
        elif expect_version is not None:
            req.precondition = node_pb2.PRECONDITION_MATCHES_VERSION
            req.expected_version = expect_version
        resp = self._call("MetadataPut", req)
        assert isinstance(resp, node_pb2.MetadataPutResponse)
        if resp.status == node_pb2.METADATA_PRECONDITION_FAILED:
            raise VersionMismatch(resp.current_version if resp.HasField("current_version") else None)
        return resp.version


class LogClient:
    """The log through one node. Appends block until committed (the node retries meanwhile)."""

    def __init__(self, node: NodeClient, timeout_s: float = 60.0) -> None:
        self._node = node
        self._timeout = timeout_s

    def append(self, log_id: int, records: list[bytes]) -> int:
        resp = self._node._call(
            "LogAppend", node_pb2.LogAppendRequest(log_id=log_id, records=records), self._timeout
        )
        return resp.first_lsn  # type: ignore[attr-defined]

    def tail(self, log_id: int) -> tuple[int, bool]:
        resp = self._node._call("LogTail", node_pb2.LogTailRequest(log_id=log_id), self._timeout)
        return resp.next_lsn, resp.sealed  # type: ignore[attr-defined]

    def chain(self, log_id: int) -> node_pb2.LogChainResponse:
        return self._node._call("LogChain", node_pb2.LogChainRequest(log_id=log_id), self._timeout)  # type: ignore[return-value]

    def trim(self, log_id: int, up_to_lsn: int) -> None:
        self._node._call(
            "LogTrim", node_pb2.LogTrimRequest(log_id=log_id, up_to_lsn=up_to_lsn), self._timeout
        )

    def seal(self, log_id: int) -> int:
        return self._node._call("LogSeal", node_pb2.LogAdminRequest(log_id=log_id), self._timeout).next_lsn  # type: ignore[attr-defined]

    def reconfigure(self, log_id: int) -> node_pb2.LogChainResponse:
        return self._node._call("LogReconfigure", node_pb2.LogAdminRequest(log_id=log_id), self._timeout)  # type: ignore[return-value]

    def read(self, log_id: int, from_lsn: int, follow: bool) -> Iterator[node_pb2.LogEntry]:
        stream = self._node._stub.LogRead(
            node_pb2.LogReadRequest(log_id=log_id, from_lsn=from_lsn, follow=follow),
            timeout=None if follow else self._timeout,
            metadata=self._node.metadata(),
        )
        try:
            for batch in stream:
                yield from batch.entries
        except grpc.RpcError as e:
            raise translate(self._node.address, e) from None


def put_with_retry(
    client: NodeClient,
    key: str,
    value: bytes,
    expect_version: int | None,
    deadline_s: float,
    force: bool = False,
) -> int:
    """Put, retrying while the metadata store is unavailable (nothing written) until the deadline.

    An unconditional put is also retried after an unknown outcome: writing the same value twice
    is harmless. A conditional one is not, since its first attempt may have won.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return client.put(key, value, expect_version, force=force)
        except NodeUnreachable:
            if time.monotonic() > deadline:
                raise
        except OutcomeUnknown:
            if expect_version is not None or time.monotonic() > deadline:
                raise
        time.sleep(0.2)

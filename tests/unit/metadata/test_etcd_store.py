"""What only the etcd backend has: failure classification, endpoint rotation, cluster introspection."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from metadata import EtcdMember, EtcdMetadataStore, MetadataUnavailable, Versioned
from metadata.etcd import FailureKind, classify_rpc_error
from node.ports import LOOPBACK, free_ports

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("code", "details", "write", "expected"),
    [
        (UNAVAILABLE, "etcdserver: no leader", True, FailureKind.NOT_APPLIED),
        (UNAVAILABLE, "failed to connect to all addresses; last error: ...", True, FailureKind.NOT_APPLIED),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests", True, FailureKind.NOT_APPLIED),
        (UNAVAILABLE, "etcdserver: leader changed", True, FailureKind.UNKNOWN),
        (UNAVAILABLE, "etcdserver: request timed out, possibly due to previous leader failure", True,
         FailureKind.UNKNOWN),
        (UNAVAILABLE, "Socket closed", True, FailureKind.UNKNOWN),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", True, FailureKind.UNKNOWN),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", False, FailureKind.NOT_APPLIED),
        (UNAVAILABLE, "etcdserver: leader changed", False, FailureKind.NOT_APPLIED),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large", True, FailureKind.FATAL),
        # gRPC's own size refusal is definite too, never an unknown outcome.
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (4089446 vs. 2097152)", True,
         FailureKind.FATAL),
        (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied", False, FailureKind.FATAL),
    ],
)  # fmt: skip
def test_failure_classification(code, details, write, expected):
    assert classify_rpc_error(code, details, write=write) is expected


@pytest.mark.parametrize("endpoints", [[], ["no-port"], ["host:"], [":2379"], ["h:99999"], "h:1"])
def test_bad_endpoints_are_refused(endpoints):
    with pytest.raises(ValueError):
        EtcdMetadataStore(endpoints)


def test_nothing_listening_is_unavailable_within_the_deadline(run):
    (port,) = free_ports(1)

    async def body() -> None:
        store = EtcdMetadataStore([f"{LOOPBACK}:{port}"], request_timeout_s=0.5)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(MetadataUnavailable):
                await store.put("k", b"v")
            with pytest.raises(MetadataUnavailable):
                await store.get("k")
            assert loop.time() - started < 5.0
        finally:
            await store.close()

    run(body())


def test_a_dead_first_endpoint_is_skipped(etcd_endpoint, run):
    (dead,) = free_ports(1)

    async def body() -> None:
        store = EtcdMetadataStore([f"{LOOPBACK}:{dead}", etcd_endpoint], prefix="/rotation/")
        try:
            version = await store.put("k", b"v")
            assert await store.get("k") == Versioned(b"v", version)
        finally:
            await store.close()

    run(body())


def test_leader_and_member_names_of_a_single_member(etcd_endpoint, run):
    async def body() -> None:
        store = EtcdMetadataStore([etcd_endpoint])
        try:
            assert await store.member_names() == ["solo"]
            assert await store.leader_name() == "solo"
        finally:
            await store.close()

    run(body())


def test_member_refuses_a_wrong_peer_url(tmp_path):
    with pytest.raises(ValueError):
        EtcdMember("m1", tmp_path / "d", 1, 2, {"m1": "http://127.0.0.1:3"})
    with pytest.raises(ValueError):
        EtcdMember("m1", tmp_path / "d", 1, 2, {"m2": "http://127.0.0.1:2"})


def test_member_command_line(tmp_path):
    member = EtcdMember(
        "m1", tmp_path / "d", 2379, 2380, {"m1": "http://127.0.0.1:2380", "m2": "http://127.0.0.1:2390"}
    )
    command = member.command()
    assert command[0].endswith("setpriv")
    assert command[1:4] == ["--pdeathsig", "KILL", "--"]
    joined = " ".join(command)
    assert "--initial-cluster m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2390" in joined
    assert "--initial-cluster-state new" in joined
    assert "--listen-client-urls http://127.0.0.1:2379" in joined
    assert member.client_endpoint == "127.0.0.1:2379"
    (tmp_path / "d" / "member").mkdir(parents=True)
    assert "--initial-cluster-state existing" in " ".join(member.command())

"""Ids in Restate's formats: captured vectors, round trips (Hypothesis), error texts, partition math."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.ids import (
    MAX_PARTITIONS,
    AwakeableId,
    BadId,
    DeploymentId,
    InvocationId,
    idempotent_uuid,
    new_invocation_id,
    partition_for_key,
    partition_key_of,
    partition_key_range,
    random_uuid,
    workflow_uuid,
)

U64 = st.integers(0, 2**64 - 1)
U128 = st.integers(0, 2**128 - 1)
PARTITIONS = st.integers(1, MAX_PARTITIONS)
BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

# restate-protocol.md §8.1: raw StartMessage.id <-> the id the real server printed.
CAPTURED_RAW = bytes.fromhex("38c53fa9caf15a44fdec968e16bbed2dca023e89c8ee73f2")
CAPTURED_ID = "inv_15RQUtD4KGmc7nv7IKqoqTgCMj4UOIwL37"


def test_captured_invocation_id():
    invocation = InvocationId.from_bytes(CAPTURED_RAW)
    assert invocation.partition_key == 0x38C53FA9CAF15A44
    assert str(invocation) == CAPTURED_ID
    assert InvocationId.parse(CAPTURED_ID) == invocation
    assert InvocationId.parse(CAPTURED_ID).to_bytes() == CAPTURED_RAW


def test_captured_awakeable_ids():
    # §8.2, captured from the real server: signal 17 of some invocation.
    captured = AwakeableId.parse("sign_1qRSqDnaNntql5m5EQYQ4yAlTeViq_QQ5AAAAEQ")
    assert captured.signal_index == 17
    assert str(captured) == "sign_1qRSqDnaNntql5m5EQYQ4yAlTeViq_QQ5AAAAEQ"
    # Minted by the official SDK's VM for the invocation above (tests/unit/processor/sdk_flows.py).
    minted = AwakeableId.parse("sign_1OMU_qcrxWkT97JaOFrvtLcoCPonI7nPyAAAAEQ")
    assert minted == AwakeableId(InvocationId.from_bytes(CAPTURED_RAW), 17)


def test_example_deployment_id_round_trips():
    assert str(DeploymentId.parse("dp_14Xqyw8usZusyoXOSF1gRy1")) == "dp_14Xqyw8usZusyoXOSF1gRy1"


@given(U64, U128)
def test_invocation_id_round_trips(partition_key: int, uuid: int):
    invocation = InvocationId(partition_key, uuid)
    text = str(invocation)
    assert len(text) == 38 and text.startswith("inv_1") and set(text[5:]) <= set(BASE62)
    assert InvocationId.parse(text) == invocation
    assert InvocationId.from_bytes(invocation.to_bytes()) == invocation
    assert len(invocation.to_bytes()) == 24


@given(U64, U128, st.integers(0, 2**32 - 1))
def test_awakeable_id_round_trips(partition_key: int, uuid: int, index: int):
    awakeable = AwakeableId(InvocationId(partition_key, uuid), index)
    text = str(awakeable)
    assert text.startswith("sign_1") and "=" not in text
    assert AwakeableId.parse(text) == awakeable


@given(st.integers(1, 2**128 - 1))
def test_deployment_id_round_trips(value: int):
    text = str(DeploymentId(value))
    assert len(text) == 26
    assert DeploymentId.parse(text) == DeploymentId(value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("garbage", "bad format"),  # the ingress's captured answer (§6.3)
        ("", "bad length"),
        ("inv_", "bad length"),
        ("foo_1abc", "unrecognized resource type: foo"),
        ("inv_2" + CAPTURED_ID[5:], "unrecognized codec version"),
        ("dp_14Xqyw8usZusyoXOSF1gRy1", "id doesn't match the expected type"),
        (CAPTURED_ID[:-1], "bad length"),
        (CAPTURED_ID + "0", "bad length"),
        ("inv_1" + "!" + CAPTURED_ID[6:], "base62 decode error"),
        ("inv_1" + "Z" * 11 + CAPTURED_ID[16:], "base62 decode error"),  # more than a u64
    ],
)
def test_bad_invocation_ids(text: str, reason: str):
    with pytest.raises(BadId) as caught:
        InvocationId.parse(text)
    assert str(caught.value) == f"bad invocation id '{text}': {reason}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("garbage", "bad format"),
        # A broken sign_1 id reads as Restate's fallback parser reports it (§6.3).
        ("sign_1qRSqDnaNntql5m5EQYQ4yAlTeViq_QQ5AAAAE", "id doesn't match the expected type"),
        ("sign_1!!!", "id doesn't match the expected type"),
        ("prom_1qRSqDnaNntql5m5E", "bad length"),
        ("prom_1***", "base64 decode error"),
        (
            "prom_1qRSqDnaNntql5m5EQYQ4yAlTeViq_QQ5AAAAEQ",
            "awakeable ids of protocol v1-v3 (prom_1) are not supported",
        ),
        (CAPTURED_ID, "id doesn't match the expected type"),
    ],
)
def test_bad_awakeable_ids(text: str, reason: str):
    with pytest.raises(BadId) as caught:
        AwakeableId.parse(text)
    assert str(caught.value) == f"bad awakeable id '{text}': {reason}"


def test_bad_deployment_ids():
    for text, reason in [
        ("dp_1" + "0" * 22, "bad format"),
        ("dp_1abc", "bad length"),
        (CAPTURED_ID, "mismatch"),
    ]:
        with pytest.raises(BadId, match="bad deployment id") as caught:
            DeploymentId.parse(text)
        assert caught.value.reason.startswith(reason[:8]) or reason == "mismatch"


def test_deterministic_uuids_hash_the_comma_separated_fields():
    def first16(text: bytes) -> int:
        return int.from_bytes(hashlib.sha256(text).digest()[:16], "big")

    assert workflow_uuid("Signup", "alice") == first16(b"wf,Signup,alice")
    assert workflow_uuid("Signup", "alice", scope="s") == first16(b"wf,s,Signup,alice")
    assert idempotent_uuid("Greeter", "greet", "k1") == first16(b"ik,Greeter,greet,k1")
    assert idempotent_uuid("Counter", "add", "k1", key="c") == first16(b"ik,Counter,c,add,k1")
    assert idempotent_uuid("Greeter", "greet", "k1") != idempotent_uuid("Greeter", "greet", "k2")


def test_random_uuid_is_a_ulid_of_the_given_time_and_rng():
    uuid = random_uuid(random.Random(7), now_ms=1_700_000_000_123)
    assert uuid >> 80 == 1_700_000_000_123
    assert uuid == random_uuid(random.Random(7), now_ms=1_700_000_000_123)
    assert uuid != random_uuid(random.Random(8), now_ms=1_700_000_000_123)
    with pytest.raises(ValueError, match="48-bit"):
        random_uuid(random.Random(7), now_ms=2**48)


def test_partition_key_is_a_stable_hash_of_the_key():
    # Fixed forever: partition keys are stored inside ids, so the hash may never change.
    assert partition_key_of("alice") == int.from_bytes(
        hashlib.blake2b(b"alice", digest_size=8).digest(), "big"
    )
    assert partition_key_of("alice") == 0x4DEAEC0CCE54DA89
    assert partition_key_of("") == 0xE4A6A0577479B2B4


def test_new_invocation_id_rules():
    rng = random.Random(1)
    now = 1_700_000_000_000
    run = new_invocation_id(
        service="Signup", handler="run", key="alice", workflow_run=True, rng=rng, now_ms=now
    )
    again = new_invocation_id(
        service="Signup", handler="run", key="alice", workflow_run=True, rng=rng, now_ms=now
    )
    assert run == again == InvocationId(partition_key_of("alice"), workflow_uuid("Signup", "alice"))
    keyed = new_invocation_id(service="Counter", handler="add", key="alice", rng=rng, now_ms=now)
    assert keyed.partition_key == run.partition_key and keyed.uuid >> 80 == now
    idem = new_invocation_id(service="Greeter", handler="greet", idempotency_key="k", rng=rng, now_ms=now)
    assert idem == InvocationId(partition_key_of("k"), idempotent_uuid("Greeter", "greet", "k"))
    plain = {new_invocation_id(service="Greeter", handler="greet", rng=rng, now_ms=now) for _ in range(50)}
    assert len({i.partition_key for i in plain}) == 50
    seeded = [new_invocation_id(service="G", handler="g", rng=random.Random(3), now_ms=now) for _ in range(2)]
    assert seeded[0] == seeded[1]
    with pytest.raises(ValueError, match="needs its key"):
        new_invocation_id(service="Signup", handler="run", workflow_run=True, rng=rng, now_ms=now)


@given(U64, PARTITIONS)
def test_a_key_falls_in_its_partitions_range(partition_key: int, partitions: int):
    partition = partition_for_key(partition_key, partitions)
    assert 0 <= partition < partitions
    first, last = partition_key_range(partition, partitions)
    assert first <= partition_key <= last


@given(PARTITIONS)
def test_ranges_tile_the_key_space_evenly(partitions: int):
    edges = sorted({0, 1, partitions - 2, partitions - 1} & set(range(partitions)))
    ranges = [partition_key_range(i, partitions) for i in edges]
    assert ranges[0][0] == 0 and ranges[-1][1] == 2**64 - 1
    sizes = {last - first + 1 for first, last in ranges}
    assert max(sizes) - min(sizes) <= 1
    for i in {0, partitions // 2, partitions - 1}:
        first, last = partition_key_range(i, partitions)
        assert partition_for_key(first, partitions) == i == partition_for_key(last, partitions)
        if i + 1 < partitions:
            assert partition_key_range(i + 1, partitions)[0] == last + 1


def test_every_range_of_a_small_table():
    ranges = [partition_key_range(i, 3) for i in range(3)]
    assert ranges == [
        (0, 6148914691236517205),
        (6148914691236517206, 12297829382473034410),
        (12297829382473034411, 2**64 - 1),
    ]
    assert partition_for_key(0, 1) == 0 and partition_key_range(0, 1) == (0, 2**64 - 1)


def test_partition_argument_errors():
    with pytest.raises(ValueError, match="num_partitions"):
        partition_for_key(1, 0)
    with pytest.raises(ValueError, match="num_partitions"):
        partition_for_key(1, MAX_PARTITIONS + 1)
    with pytest.raises(ValueError, match="u64"):
        partition_for_key(2**64, 4)
    with pytest.raises(ValueError, match="partition id"):
        partition_key_range(4, 4)
    with pytest.raises(ValueError, match="24 bytes"):
        InvocationId.from_bytes(b"\x00" * 23)

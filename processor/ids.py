"""Identifiers in Restate's formats, and how invocations map to partition keys and partitions.

Invocation id (restate-protocol.md §8.1). 24 raw bytes: the partition key (u64) then a uuid
(u128), both big-endian; this is ``StartMessage.id``. Printed as ``inv_1`` + 11 base62 digits of
the partition key + 22 of the uuid (38 characters), alphabet ``0-9a-zA-Z``, left-padded with
``0``. Restate's quirk: the integer put in base62 is the value with its bytes reversed (it
byte-swaps with ``to_be()`` on a little-endian machine), so we reverse too; the captured pair
``38c53fa9…c8ee73f2`` <-> ``inv_15RQUtD4KGmc7nv7IKqoqTgCMj4UOIwL37`` is the test of that.

Uuids: a workflow ``run`` and any request with an idempotency key get a deterministic uuid (the
first 16 bytes of SHA-256 over ``wf|ik [,scope] ,service [,key] [,handler ,idempotency key]``,
as Restate), so a retried or duplicated request lands on the same invocation. Anything else gets
a ULID (48-bit millisecond time, 80 random bits) drawn from an injected ``random.Random`` at a
time given by the caller, so cores that mint ids stay deterministic.

Partition keys: keyed targets (objects, workflows) hash the key alone, as Restate does, so one
key of every service lives on one partition; unkeyed requests with an idempotency key hash that
key; the rest are random. The hash is BLAKE2b with an 8-byte digest (stdlib): its output is fixed
by RFC 7693 on every platform and Python version, which matters because partition keys are
stored inside ids forever, it needs no dependency, and it costs about a microsecond for a short
key, once per invocation (not xxh3 as in Restate: byte parity with Restate's ids is not needed,
only stability). Partitions split the u64
key space into equal ranges, numbered from 0 as in Restate (the first ranges are one key longer
when the count does not divide 2^64).

Parse errors read like the ingress's (§6.3): ``bad invocation id 'garbage': bad format``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
from dataclasses import dataclass
from typing import Final

_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT: Final = {c: i for i, c in enumerate(_ALPHABET)}
_U64: Final = (1 << 64) - 1
_U128: Final = (1 << 128) - 1
_PK_WIDTH: Final = 11  # base62 digits of a u64
_UUID_WIDTH: Final = 22  # base62 digits of a u128
# Every prefix Restate knows; another one is "unrecognized", a known one of the wrong kind a "mismatch".
_RESOURCE_TYPES: Final = frozenset({"inv", "dp", "sub", "prom", "sign", "snap", "mut", "vq"})
_HASH_SEPARATOR: Final = b","
MAX_PARTITIONS: Final = 0xFFFF  # partition ids are u16 in Restate


class BadId(ValueError):
    """An id string that does not parse; ``str()`` is the ingress's 400 body text."""

    def __init__(self, kind: str, text: str, reason: str) -> None:
        super().__init__(f"bad {kind} id '{text}': {reason}")
        self.kind = kind
        self.text = text
        self.reason = reason


class _Reject(Exception):
    """Internal: why an id string failed, before we know which kind of id it was meant to be."""


# --- base62 with Restate's byte order -------------------------------------------------------


def _swap(value: int, width: int) -> int:
    return int.from_bytes(value.to_bytes(width, "big"), "little")


def _base62(value: int, width_bytes: int, digits: int) -> str:
    n = _swap(value, width_bytes)
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(digits, "0")


def _unbase62(text: str, width_bytes: int) -> int:
    n = 0
    for c in text.lstrip("0"):
        digit = _DIGIT.get(c)
        if digit is None:
            raise _Reject("base62 decode error")
        n = n * 62 + digit
    if n >> (8 * width_bytes):
        raise _Reject("base62 decode error")
    return _swap(n, width_bytes)


def _split(text: str, expected: str) -> str:
    """Check ``{expected}_1`` the way Restate's id decoder does; return what follows it."""
    if not text:
        raise _Reject("bad length")
    prefix, sep, rest = text.partition("_")
    if not sep:
        raise _Reject("bad format")
    if prefix not in _RESOURCE_TYPES:
        raise _Reject(f"unrecognized resource type: {prefix}")
    if not rest:
        raise _Reject("bad length")
    if rest[0] != "1":
        raise _Reject("unrecognized codec version")
    if prefix != expected:
        raise _Reject("id doesn't match the expected type")
    return rest[1:]


def _take(rest: str, width: int) -> tuple[str, str]:
    if len(rest) < width:
        raise _Reject("bad length")
    return rest[:width], rest[width:]


# --- invocation ids ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class InvocationId:
    partition_key: int
    uuid: int

    RAW_SIZE = 24

    def __post_init__(self) -> None:
        if not 0 <= self.partition_key <= _U64 or not 0 <= self.uuid <= _U128:
            raise ValueError("partition_key must fit in u64 and uuid in u128")

    @classmethod
    def from_bytes(cls, raw: bytes) -> InvocationId:
        """From the 24 bytes of ``StartMessage.id``."""
        if len(raw) != cls.RAW_SIZE:
            raise ValueError(f"an invocation id has {cls.RAW_SIZE} bytes, got {len(raw)}")
        return cls(int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))

    def to_bytes(self) -> bytes:
        return self.partition_key.to_bytes(8, "big") + self.uuid.to_bytes(16, "big")

    def __str__(self) -> str:
        return "inv_1" + _base62(self.partition_key, 8, _PK_WIDTH) + _base62(self.uuid, 16, _UUID_WIDTH)

    @classmethod
    def parse(cls, text: str) -> InvocationId:
        """Parse ``inv_1…``; raise ``BadId`` with the ingress's wording."""
        try:
            rest = _split(text, "inv")
            pk_text, rest = _take(rest, _PK_WIDTH)
            uuid_text, rest = _take(rest, _UUID_WIDTH)
            if rest:
                raise _Reject("bad length")
            return cls(_unbase62(pk_text, 8), _unbase62(uuid_text, 16))
        except _Reject as reject:
            raise BadId("invocation", text, str(reject)) from None


def workflow_uuid(service: str, key: str, scope: str | None = None) -> int:
    """The uuid of a workflow's ``run`` invocation: one per (service, key)."""
    return _digest_uuid(b"wf", scope, service, key)


def idempotent_uuid(
    service: str, handler: str, idempotency_key: str, key: str | None = None, scope: str | None = None
) -> int:
    """The uuid of a request with an idempotency key: one per (service, key, handler, idempotency key)."""
    return _digest_uuid(b"ik", scope, service, key, handler, idempotency_key)


def _digest_uuid(tag: bytes, scope: str | None, *fields: str | None) -> int:
    h = hashlib.sha256(tag)
    if scope is not None:
        h.update(_HASH_SEPARATOR + scope.encode())
    for field in fields:
        if field is not None:
            h.update(_HASH_SEPARATOR + field.encode())
    return int.from_bytes(h.digest()[:16], "big")


def _ulid(rng: random.Random, now_ms: int) -> int:
    if not 0 <= now_ms < 1 << 48:
        raise ValueError(f"now_ms {now_ms} does not fit the 48-bit ULID time field")
    while True:
        value = (now_ms << 80) | rng.getrandbits(80)
        if value:
            return value


def random_uuid(rng: random.Random, now_ms: int) -> int:
    """A fresh uuid in ULID layout, from the injected ``rng`` and the caller's clock reading."""
    return _ulid(rng, now_ms)


def partition_key_of(key: str) -> int:
    """The partition key of an object/workflow key (or of an unkeyed request's idempotency key)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def new_invocation_id(
    *,
    service: str,
    handler: str,
    rng: random.Random,
    now_ms: int,
    key: str | None = None,
    idempotency_key: str | None = None,
    workflow_run: bool = False,
) -> InvocationId:
    """The id of a new invocation of ``service/handler``, by Restate's rules (see module doc).

    ``key`` is the object/workflow key (``None`` for plain services); ``workflow_run`` marks a
    workflow's main handler, whose id depends on the key alone.
    """
    found = _deterministic_id(service, handler, key, idempotency_key, workflow_run)
    if found is not None:
        return found
    uuid = random_uuid(rng, now_ms)  # drawn before the partition key, as always: seeded ids stay put
    partition_key = partition_key_of(key) if key is not None else rng.getrandbits(64)
    return InvocationId(partition_key, uuid)


def call_invocation_id(
    *,
    parent: bytes,
    command_index: int,
    service: str,
    handler: str,
    key: str | None = None,
    idempotency_key: str | None = None,
    workflow_run: bool = False,
) -> InvocationId:
    """The id of the invocation that command ``command_index`` of invocation ``parent`` (its 24
    raw bytes) calls or sends to.

    The partition state machine derives it while applying the command, so every replica must
    get the same id with no randomness: the rules of ``new_invocation_id``, except that where
    that draws a random uuid and partition key, both come from SHA-256 over ``"cl"``, the
    parent's bytes and the index (the partition key is spread like a random one would be).
    """
    found = _deterministic_id(service, handler, key, idempotency_key, workflow_run)
    if found is not None:
        return found
    digest = hashlib.sha256(b"cl" + parent + command_index.to_bytes(4, "big")).digest()
    partition_key = partition_key_of(key) if key is not None else int.from_bytes(digest[16:24], "big")
    return InvocationId(partition_key, int.from_bytes(digest[:16], "big"))


def deterministic_id(
    service: str, handler: str, key: str | None, idempotency_key: str | None, workflow_run: bool
) -> InvocationId | None:
    """The id of a workflow's run, or of an idempotent request, from its target alone (for
    attach and output by target); ``None`` for anything else."""
    return _deterministic_id(service, handler, key, idempotency_key, workflow_run)


def _deterministic_id(
    service: str, handler: str, key: str | None, idempotency_key: str | None, workflow_run: bool
) -> InvocationId | None:
    """The id fixed by the request itself (a workflow run, an idempotency key), else ``None``."""
    if workflow_run:
        if key is None:
            raise ValueError("a workflow run needs its key")
        return InvocationId(partition_key_of(key), workflow_uuid(service, key))
    if idempotency_key is not None:
        partition_key = partition_key_of(key if key is not None else idempotency_key)
        return InvocationId(partition_key, idempotent_uuid(service, handler, idempotency_key, key))
    return None


# --- partitions ----------------------------------------------------------------------------


def _check_partitions(num_partitions: int) -> None:
    if not 1 <= num_partitions <= MAX_PARTITIONS:
        raise ValueError(f"num_partitions must be in [1, {MAX_PARTITIONS}], got {num_partitions}")


def partition_for_key(partition_key: int, num_partitions: int) -> int:
    """The partition (0-based) whose key range holds ``partition_key``."""
    _check_partitions(num_partitions)
    if not 0 <= partition_key <= _U64:
        raise ValueError(f"partition key {partition_key} does not fit in u64")
    return (partition_key * num_partitions) >> 64


def partition_key_range(partition_id: int, num_partitions: int) -> tuple[int, int]:
    """The inclusive key range ``(first, last)`` of a partition; the ranges tile [0, 2^64)."""
    _check_partitions(num_partitions)
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition id {partition_id} is not in [0, {num_partitions})")
    first = -((-partition_id << 64) // num_partitions)  # ceil(i * 2^64 / n)
    after = -((-(partition_id + 1) << 64) // num_partitions)
    return first, after - 1


# --- awakeable ids -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwakeableId:
    """``sign_1`` + base64url (no padding) of the owner's 24-byte id and the signal index (u32 BE)."""

    invocation_id: InvocationId
    signal_index: int

    def __post_init__(self) -> None:
        if not 0 <= self.signal_index <= 0xFFFF_FFFF:
            raise ValueError("signal_index must fit in u32")

    def __str__(self) -> str:
        raw = self.invocation_id.to_bytes() + self.signal_index.to_bytes(4, "big")
        return "sign_1" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def parse(cls, text: str) -> AwakeableId:
        """Parse ``sign_1…``; raise ``BadId`` with the ingress's wording.

        Restate falls back to the v1-v3 ``prom_1`` form and reports that parser's error, so a
        broken ``sign_1`` id reads "id doesn't match the expected type"; we word errors the same
        way. Valid ``prom_1`` ids name journal entries of protocols we do not run: refused.
        """
        try:
            return cls._parse(text, "sign")
        except _Reject:
            pass
        try:
            cls._parse(text, "prom")
        except _Reject as reject:
            raise BadId("awakeable", text, str(reject)) from None
        raise BadId("awakeable", text, "awakeable ids of protocol v1-v3 (prom_1) are not supported")

    @classmethod
    def _parse(cls, text: str, prefix: str) -> AwakeableId:
        rest = _split(text, prefix)
        if "+" in rest or "/" in rest:
            raise _Reject("base64 decode error")
        try:
            raw = base64.b64decode(rest + "=" * (-len(rest) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise _Reject("base64 decode error") from None
        if len(raw) != InvocationId.RAW_SIZE + 4:
            raise _Reject("bad length")
        return cls(InvocationId.from_bytes(raw[:24]), int.from_bytes(raw[24:], "big"))


# --- deployment ids ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class DeploymentId:
    """``dp_1`` + 22 base62 digits of a ULID (same byte-order quirk as invocation ids)."""

    value: int

    def __post_init__(self) -> None:
        if not 0 < self.value <= _U128:
            raise ValueError("a deployment id is a non-zero u128")

    @classmethod
    def random(cls, rng: random.Random, now_ms: int) -> DeploymentId:
        return cls(_ulid(rng, now_ms))

    def __str__(self) -> str:
        return "dp_1" + _base62(self.value, 16, _UUID_WIDTH)

    @classmethod
    def parse(cls, text: str) -> DeploymentId:
        try:
            value_text, rest = _take(_split(text, "dp"), _UUID_WIDTH)
            if rest:
                raise _Reject("bad length")
            value = _unbase62(value_text, 16)
        except _Reject as reject:
            raise BadId("deployment", text, str(reject)) from None
        if value == 0:
            raise BadId("deployment", text, "bad format")
        return cls(value)

"""The clustered metadata store: etcd v3 over gRPC (aetcd's generated stubs, called directly).

Mapping onto etcd:

* a key is ``prefix + key``; a version is the key's ``mod_revision`` (etcd's cluster-wide revision
  of its last change), so versions never repeat, even across delete and re-create;
* put/delete are one transaction: compare (none → no compare; does_not_exist →
  ``create_revision == 0``; matches(v) → ``mod_revision == v``), on success the write, on failure
  a read of the key, so a refusal carries the version it lost against with no second round trip;
* get is a linearizable range read; watch is etcd's watch started right after the initial read's
  revision, resumed from the last delivered revision on any endpoint after a failure.

Failures are sorted into what the caller can act on (see ``classify_rpc_error``): the store
tries its endpoints in order, starting with the last one that answered, until the request
deadline; requests that were definitely not applied move on to the next endpoint and end as
``MetadataUnavailable``; a write whose fate is unknown (leader lost or deadline passed after it
was sent) raises ``UnknownOutcome`` at once.

Every KV and watch request carries etcd's ``hasleader`` metadata, so a member that has lost its
leader refuses at once (not applied) instead of holding the request until it times out.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
from aetcd import rpc

from metadata.core.cas import decide
from metadata.core.keys import validate_key, validate_value
from metadata.core.types import NO_PRECONDITION, Precondition, PreconditionKind, Versioned
from metadata.errors import (
    MetadataError,
    MetadataUnavailable,
    PreconditionFailed,
    StoreClosed,
    UnknownOutcome,
)

_REQUIRE_LEADER: Final = (("hasleader", "true"),)

_CHANNEL_OPTIONS: Final = (
    # Reconnect to a restarted member within ~0.1-1 s instead of gRPC's default 1-120 s backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a silently dead member under a long watch. etcd refuses pings more often than every
    # 5 s (--grpc-keepalive-min-time) and pings without an open stream, hence these values.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
)

# Below this much time left, an attempt could not complete: stop rather than send a write that
# would surely end as UnknownOutcome.
_MIN_ATTEMPT_S: Final = 0.05
# One endpoint's share of a read's deadline.
_READ_ATTEMPT_S: Final = 0.5

# etcd/gRPC messages that prove the request was rejected before it reached raft.
_NOT_APPLIED_DETAILS: Final = (
    "etcdserver: no leader",  # the hasleader interceptor, before the request is handled
    "etcdserver: too many requests",
    "etcdserver: not capable",
    "failed to connect to all addresses",  # gRPC had no connection to send on
    "dns resolution failed",
)

_TRANSIENT_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)


class FailureKind(enum.Enum):
    NOT_APPLIED = "not_applied"  # try the next endpoint; safe to retry
    UNKNOWN = "unknown"  # a write that may have been applied
    FATAL = "fatal"  # a request etcd will never accept (a bug or misconfiguration)


# Size refusals: definite (nothing applied) and permanent, never an unknown outcome. Values are
# checked against MAX_VALUE_BYTES before sending; these catch an etcd run with a lower limit.
_TOO_LARGE_DETAILS: Final = ("request is too large", "larger than max")


def classify_rpc_error(code: grpc.StatusCode, details: str, *, write: bool) -> FailureKind:
    """Sort a failed etcd call into what the caller may do next.

    Reads are idempotent, so any transient failure is NOT_APPLIED. A write is NOT_APPLIED only
    when the message proves it never reached raft; any other transient failure (``leader
    changed``, ``request timed out, possibly due to previous leader failure``, a deadline, a
    reset connection) may hide a commit, so it is UNKNOWN.
    """
    if code is grpc.StatusCode.UNKNOWN and "deadline exceeded" in details.lower():
        # etcd's server side ran out of the call's deadline first and says so as UNKNOWN.
        code = grpc.StatusCode.DEADLINE_EXCEEDED
    if code not in _TRANSIENT_CODES or any(m in details.lower() for m in _TOO_LARGE_DETAILS):
        return FailureKind.FATAL
    if not write:
        return FailureKind.NOT_APPLIED
    lowered = details.lower()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED) and any(
        marker in lowered for marker in _NOT_APPLIED_DETAILS
    ):
        return FailureKind.NOT_APPLIED
    return FailureKind.UNKNOWN


def _backoff_s(attempt: int) -> float:
    return min(0.05 * (2**attempt), 1.0)


@dataclass(slots=True)
class _Connection:
    endpoint: str
    channel: grpc.aio.Channel
    kv: Any
    watch: Any
    maintenance: Any
    cluster: Any


class EtcdMetadataStore:
    """``MetadataStore`` on an etcd v3 cluster.

    ``endpoints`` are ``"host:port"`` client addresses of the members; ``request_timeout_s`` is
    the overall deadline of one get/put/delete across all endpoint attempts. Channels are
    opened lazily on the running loop, so the store may be built outside a coroutine but must
    then be used from one event loop only.

    Watch: every change is delivered, except when etcd has compacted the history the watch
    needs to resume from (after a long disconnection); it then yields the key's current state,
    coalescing the versions in between.
    """

    def __init__(
        self, endpoints: Sequence[str], prefix: str = "/durastate/", request_timeout_s: float = 2.0
    ) -> None:
        if isinstance(endpoints, str) or not endpoints:
            raise ValueError("EtcdMetadataStore needs a non-empty list of 'host:port' endpoints")
        self._endpoints = [_check_endpoint(endpoint) for endpoint in endpoints]
        if not prefix.isascii():
            raise ValueError(f"etcd key prefix must be ASCII, got {prefix!r}")
        if request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be positive, got {request_timeout_s}")
        self._prefix = prefix.encode("ascii")
        self._timeout_s = request_timeout_s
        self._connect_timeout_s = max(0.1, request_timeout_s / 4)
        self._connections: dict[int, _Connection] = {}
        self._preferred = 0
        self._closed = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._watch_calls: set[Any] = set()

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    @property
    def prefix(self) -> str:
        return self._prefix.decode("ascii")

    async def get(self, key: str) -> Versioned | None:
        current, _ = await self._range(self._full_key(key))
        return current

    async def put(self, key: str, value: bytes, precondition: Precondition = NO_PRECONDITION) -> int:
        full = self._full_key(key)
        validate_value(value)
        request = _guarded(
            full, precondition, rpc.RequestOp(request_put=rpc.PutRequest(key=full, value=value))
        )
        response = await self._unary(f"put {key!r}", _txn, request, write=True)
        if not response.succeeded:
            raise _refusal(response, precondition)
        return int(response.header.revision)

    async def delete(self, key: str, precondition: Precondition = NO_PRECONDITION) -> None:
        full = self._full_key(key)
        request = _guarded(
            full, precondition, rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=full))
        )
        response = await self._unary(f"delete {key!r}", _txn, request, write=True)
        if not response.succeeded:
            raise _refusal(response, precondition)

    async def watch(self, key: str) -> AsyncIterator[Versioned | None]:
        full = self._full_key(key)
        current, revision = await self._range(full)
        yield current
        last = current
        next_revision = revision + 1
        failures = 0
        while True:
            call = await self._open_watch(full, next_revision, failures)
            if call is None:
                return
            try:
                while True:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        break
                    failures = 0
                    if response.compact_revision:
                        # The history we would resume from is gone: deliver the current state
                        # instead (the one case where intermediate versions are coalesced).
                        current, revision = await self._range(full)
                        next_revision = revision + 1
                        if current != last:
                            last = current
                            yield current
                        break
                    if response.canceled:
                        break
                    for event in response.events:
                        last = _from_event(event)
                        next_revision = event.kv.mod_revision + 1
                        yield last
            except grpc.aio.AioRpcError:
                pass  # the member failed or lost its leader: resume elsewhere from next_revision
            except MetadataUnavailable:
                pass  # the compaction re-read failed: retry it through a new watch
            except StoreClosed:
                return
            except asyncio.CancelledError:
                if self._ended_by_close():
                    return
                raise
            finally:
                call.cancel()
                self._watch_calls.discard(call)
            if self._closed:
                return
            failures += 1

    async def leader_name(self) -> str | None:
        """Name of the member the cluster currently follows, or ``None`` if it has no leader."""
        status = await self._unary("status", _status, rpc.StatusRequest(), write=False, require_leader=False)
        if not status.leader:
            return None
        for member in (await self._member_list()).members:
            if member.ID == status.leader:
                return member.name or None
        return None

    async def member_names(self) -> list[str]:
        """Names of the cluster's members (a member that never started has an empty name)."""
        return [member.name for member in (await self._member_list()).members]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for call in list(self._watch_calls):
            call.cancel()
        # Let requests already under way finish (each is bounded by its deadline) so that a
        # write is not torn away from its answer by the channel closing.
        await self._idle.wait()
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.channel.close()

    def _full_key(self, key: str) -> bytes:
        return self._prefix + validate_key(key).encode("ascii")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the etcd metadata store is closed")

    def _ended_by_close(self) -> bool:
        # close() cancels watch calls, which surfaces as CancelledError in the reader; only a
        # task that nobody asked to cancel may swallow it.
        task = asyncio.current_task()
        return self._closed and (task is None or task.cancelling() == 0)

    def _rotation(self) -> list[int]:
        count = len(self._endpoints)
        return [(self._preferred + offset) % count for offset in range(count)]

    def _connection(self, index: int) -> _Connection:
        connection = self._connections.get(index)
        if connection is None:
            endpoint = self._endpoints[index]
            channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
            connection = _Connection(
                endpoint=endpoint,
                channel=channel,
                kv=rpc.KVStub(channel),
                watch=rpc.WatchStub(channel),
                maintenance=rpc.MaintenanceStub(channel),
                cluster=rpc.ClusterStub(channel),
            )
            self._connections[index] = connection
        return connection

    async def _range(self, full: bytes) -> tuple[Versioned | None, int]:
        response = await self._unary("get", _range, rpc.RangeRequest(key=full), write=False)
        return _from_kvs(response.kvs), int(response.header.revision)

    async def _member_list(self) -> Any:
        return await self._unary(
            "member list", _member_list, rpc.MemberListRequest(), write=False, require_leader=False
        )

    async def _unary(
        self,
        what: str,
        method: Callable[[_Connection], Any],
        request: Any,
        *,
        write: bool,
        require_leader: bool = True,
    ) -> Any:
        self._check_open()
        self._inflight += 1
        self._idle.clear()
        try:
            return await self._attempt_all(what, method, request, write=write, require_leader=require_leader)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _attempt_all(
        self,
        what: str,
        method: Callable[[_Connection], Any],
        request: Any,
        *,
        write: bool,
        require_leader: bool,
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        problems: list[str] = []
        metadata = _REQUIRE_LEADER if require_leader else None
        for round_no in itertools.count():
            for index in self._rotation():
                self._check_open()
                remaining = deadline - loop.time()
                if remaining < _MIN_ATTEMPT_S:
                    break
                connection = self._connection(index)
                # A dead endpoint is skipped at once in the first round; later rounds give each
                # endpoint a moment to (re)connect.
                ready = await _wait_ready(
                    connection.channel, min(remaining, self._connect_timeout_s), fail_fast=round_no == 0
                )
                if not ready:
                    problems.append(f"{connection.endpoint}: not connected")
                    continue
                # Reads may give up on one endpoint early (a member cut off from its leader holds a
                # read until the deadline) and ask the next; a write keeps the whole budget,
                # because a write cut short is an unknown outcome, not a retry.
                budget = deadline - loop.time() if write else min(deadline - loop.time(), _READ_ATTEMPT_S)
                try:
                    response = await method(connection)(
                        request, timeout=max(budget, _MIN_ATTEMPT_S), metadata=metadata
                    )
                except grpc.aio.AioRpcError as error:
                    code, details = error.code(), error.details() or ""
                    kind = classify_rpc_error(code, details, write=write)
                    if kind is FailureKind.NOT_APPLIED:
                        problems.append(f"{connection.endpoint}: {code.name} {details}")
                        continue
                    if kind is FailureKind.UNKNOWN:
                        raise UnknownOutcome(
                            f"etcd {what} via {connection.endpoint} failed after it was sent "
                            f"({code.name}: {details}); it may or may not have been applied"
                        ) from error
                    raise MetadataError(
                        f"etcd refused {what} via {connection.endpoint}: {code.name}: {details}"
                    ) from error
                self._preferred = index
                return response
            remaining = deadline - loop.time()
            if remaining < _MIN_ATTEMPT_S:
                recent = (
                    "; ".join(problems[-2 * len(self._endpoints) :]) or "no attempt fitted in the deadline"
                )
                raise MetadataUnavailable(
                    f"etcd {what} not applied: no endpoint of {self._endpoints} answered within "
                    f"{self._timeout_s}s ({recent})"
                )
            await asyncio.sleep(min(remaining - _MIN_ATTEMPT_S, _backoff_s(round_no)))
        raise AssertionError("unreachable")

    async def _open_watch(self, full: bytes, start_revision: int, failures: int) -> Any | None:
        """A watch call on the first endpoint that accepts one, or ``None`` once the store is closed."""
        if failures:
            await asyncio.sleep(_backoff_s(failures - 1))
        for round_no in itertools.count():
            for index in self._rotation():
                if self._closed:
                    return None
                connection = self._connection(index)
                if not await _wait_ready(
                    connection.channel, self._connect_timeout_s, fail_fast=round_no == 0
                ):
                    continue
                call = connection.watch.Watch(metadata=_REQUIRE_LEADER)
                self._watch_calls.add(call)
                create = rpc.WatchCreateRequest(key=full, start_revision=start_revision)
                try:
                    await call.write(rpc.WatchRequest(create_request=create))
                except (grpc.aio.AioRpcError, asyncio.CancelledError) as error:
                    call.cancel()
                    self._watch_calls.discard(call)
                    if isinstance(error, asyncio.CancelledError) and not self._ended_by_close():
                        raise
                    continue
                return call
            if self._closed:
                return None
            await asyncio.sleep(_backoff_s(round_no))
        raise AssertionError("unreachable")


async def _wait_ready(channel: grpc.aio.Channel, timeout_s: float, *, fail_fast: bool) -> bool:
    """Whether the channel is connected within ``timeout_s`` (so a request sent now is on the wire)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    state = channel.get_state(try_to_connect=True)
    while state is not grpc.ChannelConnectivity.READY:
        if state is grpc.ChannelConnectivity.SHUTDOWN:
            return False
        if fail_fast and state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            return False
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except TimeoutError:
            return False
        state = channel.get_state(try_to_connect=True)
    return True


def _check_endpoint(endpoint: str) -> str:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"etcd endpoint must be 'host:port', got {endpoint!r}")
    return endpoint


def _guarded(full: bytes, precondition: Precondition, operation: Any) -> Any:
    return rpc.TxnRequest(
        compare=_compares(full, precondition),
        success=[operation],
        failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=full))],
    )


def _compares(full: bytes, precondition: Precondition) -> list[Any]:
    match precondition.kind:
        case PreconditionKind.NONE:
            return []
        case PreconditionKind.DOES_NOT_EXIST:
            # An absent key compares as create_revision 0 (etcd evaluates missing keys as zero).
            return [
                rpc.Compare(key=full, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
            ]
        case PreconditionKind.MATCHES:
            return [
                rpc.Compare(
                    key=full,
                    target=rpc.Compare.MOD,
                    result=rpc.Compare.EQUAL,
                    mod_revision=precondition.version,
                )
            ]
    raise AssertionError(f"unhandled precondition {precondition}")


def _refusal(response: Any, precondition: Precondition) -> PreconditionFailed:
    # The failure branch read the key atomically with the failed compare; the core turns that
    # state into the same refusal the local store would give.
    current = _from_kvs(response.responses[0].response_range.kvs)
    decision = decide(current, precondition)
    if decision.applies:
        raise MetadataError(
            f"etcd refused a write guarded by {precondition}, but its read-back {current} satisfies it"
        )
    return PreconditionFailed(decision.current_version)


def _from_kvs(kvs: Sequence[Any]) -> Versioned | None:
    if not kvs:
        return None
    kv = kvs[0]
    return Versioned(bytes(kv.value), int(kv.mod_revision))


def _from_event(event: Any) -> Versioned | None:
    if event.type == rpc.Event.DELETE:
        return None
    return Versioned(bytes(event.kv.value), int(event.kv.mod_revision))


def _txn(connection: _Connection) -> Any:
    return connection.kv.Txn


def _range(connection: _Connection) -> Any:
    return connection.kv.Range


def _status(connection: _Connection) -> Any:
    return connection.maintenance.Status


def _member_list(connection: _Connection) -> Any:
    return connection.cluster.MemberList

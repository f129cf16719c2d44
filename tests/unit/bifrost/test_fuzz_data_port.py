"""Fuzzing the data port of one node: handshake, frame decoder, codec and every message handler.

The node is a real ``LogRole`` (log-server over RocksDB, provider, heartbeat handling, Bifrost
over a local metadata store holding one log's chain) that is not listening: each fuzzed
connection is its accepted-connection protocol fed through a fake transport. Inputs:

- raw bytes and frames from peers that never authenticate (Hypothesis and seeded random);
- after an authentic handshake, structurally valid messages of every wire type, built by
  Hypothesis from the msgspec types themselves (``strategy_for``), biased towards the node's
  real loglet and identities so that stores, seals, trims and appends really happen;
- after an authentic handshake, malformed frames: random bytes, truncated messages, integers
  out of range, oversized length headers.

Checked after every batch: no exception escaped a handler or the event loop, no core FAILED, and
unauthenticated or malformed input changed nothing in the log-server's RocksDB. Valid
messages from an authenticated peer may change state: that is what they are for.

Short run in the default suite; the long run (>= 100k frames) is marked slow:

    PYTHONHASHSEED=0 python3 -m pytest -m slow -s tests/unit/bifrost/test_fuzz_data_port.py
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bifrost.chain_store import cas_chain, provision_logs
from bifrost.core import Chain, RequestHeader, SequencerState, Store
from bifrost.core._types import GenerationalNodeId, LogletParams, loglet_id
from bifrost.log_server.writer import GroupCommitWriter
from bifrost.net.core import NONCE_BYTES, Authenticated, DataReceived, Handshake, Role, SendBytes, Start
from bifrost.net.framing import encode_frame
from bifrost.replicated.messages import Heartbeat, WireCodec, WireMessage
from metadata.local import LocalMetadataStore
from metadata.records import NodeConfig, NodesConfig
from node.config import NodeConfig as NodeSettings
from node.config import SecurityConfig
from node.log_role import ClusterView, LogRole

SECRET_HEX = "5e" * 32
SECRET = bytes.fromhex(SECRET_HEX)
ME = GenerationalNodeId(1, 1)
PEER = GenerationalNodeId(2, 1)
PARAMS = LogletParams(loglet_id(1, 0), ME, 1, (1,))
CODEC = WireCodec()
MAX_INT = 2**63 - 1


class FakeTransport(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self.protocol: asyncio.Protocol | None = None
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closing:
            self.written += data

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            self._loop.call_soon(self.protocol.connection_lost, None)

    abort = close

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Harness:
    """One node's data port without a socket, and what the checks look at."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, ctx: self.errors.append(ctx))
        self.frames = 0
        self.handled = 0
        self.loop.run_until_complete(self._start(tmp))

    async def _start(self, tmp: Path) -> None:
        self.meta = LocalMetadataStore.open(tmp / "metadata")
        await provision_logs(self.meta, 2, 1)
        await cas_chain(self.meta, Chain.new(1, PARAMS), None)
        nodes = NodesConfig(
            "fuzz",
            {
                f"n{i}": NodeConfig(f"n{i}", gen, ["log-server"], "127.0.0.1", {"data": 9}, i)
                for i, gen in ((1, 1), (2, 1), (3, 5))
            },
        )
        cfg = NodeSettings(base_dir=tmp, security=SecurityConfig(secret=SECRET_HEX))
        self.role = LogRole(cfg, self.meta, ME, ClusterView(nodes))
        store = self.role.log_store
        assert store is not None
        # No fsync: the fuzz is about what is written, not when it is durable.
        store.writer = GroupCommitWriter(store.db, sync=False)
        self.store = store
        inner = self.role.provider.handle_request

        def counting(*args: Any) -> None:
            self.handled += 1
            inner(*args)

        # The role's network calls provider.handle_request at each request: count them.
        self.role.provider.handle_request = counting  # type: ignore[method-assign]

    def close(self) -> None:
        self.loop.run_until_complete(self.role.stop())
        self.loop.run_until_complete(self.meta.close())
        self.loop.close()

    def digest(self) -> str:
        h = hashlib.sha256()
        for key, value in self.store.db.items():
            h.update(key)
            h.update(value)
        return h.hexdigest()

    def connect(self) -> tuple[asyncio.Protocol, FakeTransport]:
        proto = self.role.network.server.new_connection()
        transport = FakeTransport(self.loop)
        transport.protocol = proto
        proto.connection_made(transport)
        return proto, transport

    def authenticated(self) -> tuple[asyncio.Protocol, FakeTransport]:
        proto, transport = self.connect()
        client = Handshake(Role.CLIENT, SECRET, PEER, os.urandom(NONCE_BYTES), lambda p: None, expect_node=1)
        pending = client.step(Start())
        done = False
        while not done:
            data, transport.written = bytes(transport.written), bytearray()
            pending += client.step(DataReceived(data))
            for out in pending:
                if isinstance(out, SendBytes):
                    proto.data_received(out.data)
                elif isinstance(out, Authenticated):
                    done = True
            pending = []
            assert not transport.closing, "an authentic handshake was refused"
        return proto, transport

    async def feed(self, proto: asyncio.Protocol, transport: FakeTransport, chunks: list[bytes]) -> None:
        for chunk in chunks:
            if transport.closing:
                break
            proto.data_received(chunk)
        await self.settle()

    async def settle(self) -> None:
        # Writes are synced on the writer thread: wait for them, then for their replies.
        for _ in range(3):
            for _ in range(5):
                await asyncio.sleep(0)
            await self.store.writer.drained()

    def run(self, coro: Any) -> None:
        self.loop.run_until_complete(coro)

    def check_healthy(self) -> None:
        assert self.errors == [], self.errors[:3]
        assert "handler-error" not in self.role.network.refusals.counts
        assert "handshake-error" not in self.role.network.refusals.counts
        assert not self.role.provider._log_server.core.failed  # type: ignore[union-attr]
        for seq in self.role.provider.sequencers.values():
            assert seq.state is not SequencerState.FAILED


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz"))
    yield h
    h.check_healthy()
    keys = sum(1 for _ in h.store.db.keys())
    print(
        f"\nfuzzed data-port frames: {h.frames} ({h.handled} reached a handler); "
        f"log-server keys: {keys}; sequencers started: {len(h.role.provider.sequencers)}; "
        f"refusals: {dict(sorted(h.role.network.refusals.counts.items()))}"
    )
    h.close()


# --- strategies from the msgspec types --------------------------------------------------------

SMALL = st.one_of(st.integers(0, 4), st.integers(0, MAX_INT), st.sampled_from([PARAMS.loglet_id, 2**32 - 1]))
OUT_OF_RANGE = st.one_of(st.integers(-(2**63), -1), st.integers(MAX_INT + 1, 2**64 - 1))


def strategy_for(t: mi.Type, ints: st.SearchStrategy[int], steer: bool = True) -> st.SearchStrategy[Any]:
    """Values of the wire type ``t`` (msgspec's own description of it), integers from ``ints``;
    ``steer`` mixes in the node's real loglet params and identities."""
    match t:
        case mi.IntType():
            return ints
        case mi.BoolType():
            return st.booleans()
        case mi.BytesType():
            return st.binary(max_size=48)
        case mi.StrType():
            return st.text(max_size=16)
        case mi.NoneType():
            return st.none()
        case mi.EnumType():
            return st.sampled_from(list(t.cls))
        case mi.UnionType():
            return st.one_of(*(strategy_for(u, ints, steer) for u in t.types))
        case mi.VarTupleType() | mi.ListType():
            return st.lists(strategy_for(t.item_type, ints, steer), max_size=4).map(tuple)
        case mi.StructType():
            return _struct(t, ints, steer)
    raise AssertionError(f"no strategy for {t}")


def _struct(t: mi.StructType, ints: st.SearchStrategy[int], steer: bool) -> st.SearchStrategy[Any]:
    fields = [strategy_for(f.type, ints, steer) for f in t.fields]
    generic = st.tuples(*fields).map(lambda values: _build(t.cls, values)).filter(lambda v: v is not None)
    # Steer towards the node's real loglet and identities, where stores and appends take effect.
    if not steer:
        return generic
    if t.cls is LogletParams:
        return st.one_of(st.just(PARAMS), generic)
    if t.cls is GenerationalNodeId:
        return st.one_of(st.sampled_from([ME, PEER, GenerationalNodeId(3, 5)]), generic)
    return generic


def _build(cls: type, values: tuple[Any, ...]) -> Any:
    try:
        return cls(*values)
    except (ValueError, TypeError):  # e.g. LogletParams refuses an impossible replication
        return None


def _decodes(body: bytes) -> bool:
    try:
        CODEC.decode(body)
    except ValueError:
        return False
    return True


WIRE_TYPE = mi.type_info(WireMessage)
VALID = strategy_for(WIRE_TYPE, SMALL)


def _ints(value: Any) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, msgspec.Struct):
        for field in msgspec.structs.astuple(value):
            yield from _ints(field)
    elif isinstance(value, tuple):
        for item in value:
            yield from _ints(item)


# Structs do not check their fields when built, so these encode; the codec must refuse them
# (a message with no integer field at all would be valid: filtered out). Every message type:
# each integer on the wire is a WireInt, replies included.
INVALID_INTS = (
    strategy_for(WIRE_TYPE, OUT_OF_RANGE, steer=False)
    .filter(lambda m: any(not 0 <= i <= MAX_INT for i in _ints(m)))
    .map(lambda m: encode_frame(CODEC.encode(1, m)))
)


def _frames(messages: list[Any]) -> bytes:
    return b"".join(encode_frame(CODEC.encode(i, m)) for i, m in enumerate(messages))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


# --- unauthenticated peers ------------------------------------------------------------------


async def run_unauthenticated(h: Harness, data: bytes, cuts: list[int]) -> None:
    before, handled = h.digest(), h.handled
    proto, transport = h.connect()
    await h.feed(proto, transport, _chunks(data, cuts))
    h.frames += 1
    assert h.handled == handled, "a message was handled before authentication"
    assert h.digest() == before
    if not transport.closing:
        transport.close()
        await h.settle()


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=200),
        st.lists(VALID, min_size=1, max_size=4).map(_frames),
        st.binary(max_size=80).map(lambda b: b"DSH1\x02" + b),
    ),
    st.lists(st.integers(0, 300), max_size=4),
)
def test_unauthenticated_input_is_never_handled(harness: Harness, data: bytes, cuts: list[int]) -> None:
    harness.run(run_unauthenticated(harness, data, cuts))
    harness.check_healthy()


# --- authenticated peers --------------------------------------------------------------------


async def run_valid(h: Harness, messages: list[Any], cuts: list[int]) -> None:
    proto, transport = h.authenticated()
    await h.feed(proto, transport, _chunks(_frames(messages), cuts))
    h.frames += len(messages)
    assert not transport.closing, "a well-formed message cost the peer its connection"
    transport.close()
    await h.settle()


async def run_malformed(h: Harness, prefix: list[Any], bad: bytes) -> None:
    """Valid messages, then one malformed frame: the connection is cut at the bad frame and the
    bad frame changes nothing."""
    proto, transport = h.authenticated()
    await h.feed(proto, transport, [_frames(prefix)])
    await h.settle()
    before, handled = h.digest(), h.handled
    await h.feed(proto, transport, [bad])
    h.frames += len(prefix) + 1
    assert h.handled == handled, "a malformed frame reached a handler"
    assert transport.closing, "a malformed frame did not cut the connection"
    await h.settle()
    assert h.digest() == before


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(VALID, min_size=1, max_size=12), st.lists(st.integers(0, 5000), max_size=3))
def test_valid_messages_from_an_authenticated_peer_never_crash_a_handler(
    harness: Harness, messages: list[Any], cuts: list[int]
) -> None:
    harness.run(run_valid(harness, messages, cuts))
    harness.check_healthy()


def _truncated(message: Any) -> bytes:
    payload = CODEC.encode(1, message)
    return encode_frame(payload[: max(1, len(payload) // 2)])


TRUNCATED = VALID.map(_truncated).filter(lambda frame: not _decodes(frame[4:]))
NOISE = st.binary(min_size=1, max_size=64).filter(lambda body: not _decodes(body)).map(encode_frame)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(VALID, max_size=3),
    st.one_of(
        INVALID_INTS,
        TRUNCATED,
        NOISE,
        st.integers(2**27, 2**32 - 1).map(lambda n: n.to_bytes(4, "big") + b"x" * 16),
    ),
)
def test_malformed_frames_from_an_authenticated_peer_change_nothing(
    harness: Harness, prefix: list[Any], bad: bytes
) -> None:
    harness.run(run_malformed(harness, prefix, bad))
    harness.check_healthy()


def test_forged_stores_and_heartbeats_of_an_authenticated_peer_are_refused(harness: Harness) -> None:
    before = harness.digest()
    forged = [
        Store(RequestHeader(PARAMS.loglet_id, 1), 1, ME, (b"forged",)),
        Heartbeat(3, 10**9),
        Heartbeat(2, 2),
    ]
    harness.run(run_valid(harness, forged, []))
    assert harness.digest() == before
    counts = harness.role.network.refusals.counts
    assert counts["store-not-from-its-sequencer"] >= 1
    assert counts["heartbeat-not-from-its-node"] >= 2
    harness.check_healthy()


# --- seeded random bytes (cheap, many) --------------------------------------------------------


async def random_run(h: Harness, seed: int, connections: int) -> None:
    rng = random.Random(seed)
    for _ in range(connections):
        if rng.random() < 0.3:
            data = rng.randbytes(rng.randint(0, 128))
            await run_unauthenticated(h, data, [rng.randint(0, 128)])
            continue
        proto, transport = h.authenticated()
        before = h.digest()
        frames = []
        for _ in range(rng.randint(1, 40)):
            body = rng.randbytes(rng.randint(0, 64))
            if rng.random() < 0.5:
                # A valid msgpack array head and a known tag, then noise: deeper into the decoder.
                tag = rng.choice([b"Store", b"Seal", b"Trim", b"GetRecords", b"Heartbeat", b"AppendRequest"])
                body = b"\x92\x01\x96" + bytes([0xA0 | len(tag)]) + tag + body
            if _decodes(body):
                continue  # noise that happens to be a message is not malformed input
            frames.append(encode_frame(body))
        handled = h.handled
        await h.feed(proto, transport, _chunks(b"".join(frames), [rng.randint(0, 4000) for _ in range(3)]))
        h.frames += len(frames)
        assert h.handled == handled, "a random frame decoded as a message"
        assert h.digest() == before
        if not transport.closing:
            transport.close()
        await h.settle()
    h.check_healthy()


def test_random_bytes_short(harness: Harness) -> None:
    harness.run(random_run(harness, seed=1, connections=200))


# --- the long run -----------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=3_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(VALID, min_size=1, max_size=40), st.lists(st.integers(0, 20_000), max_size=4))
def test_long_run_valid(harness: Harness, messages: list[Any], cuts: list[int]) -> None:
    harness.run(run_valid(harness, messages, cuts))
    harness.check_healthy()


@pytest.mark.slow
@settings(max_examples=3_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(VALID, max_size=6),
    st.one_of(
        INVALID_INTS,
        TRUNCATED,
        NOISE,
    ),
)
def test_long_run_malformed(harness: Harness, prefix: list[Any], bad: bytes) -> None:
    harness.run(run_malformed(harness, prefix, bad))
    harness.check_healthy()


@pytest.mark.slow
def test_long_run_random_then_count(harness: Harness) -> None:
    """Runs last (file order): tops the module's total up past 100k frames, then checks it."""
    seed = 11
    while harness.frames < 100_000:
        harness.run(random_run(harness, seed=seed, connections=500))
        seed += 1
    assert harness.frames >= 100_000

"""The data port's messaging layer over real loopback sockets: authenticated request/reply,
and every way a connection is refused or cut (each counted by reason)."""

import asyncio
from typing import Any

import msgspec

from bifrost.core._types import GenerationalNodeId
from bifrost.net.core import Refusal
from bifrost.net.framing import encode_frame
from bifrost.net.messaging import ConnectionLimits, DataPortAuth, MessageServer, Peers
from tests.support.data_port import RawPeer

SECRET = b"k" * 32
SERVER = GenerationalNodeId(7, 1)
CLIENT = GenerationalNodeId(3, 2)


class JsonCodec:
    def encode(self, request_id: int, message: Any) -> bytes:
        return msgspec.json.encode([request_id, message])

    def decode(self, frame: bytes) -> tuple[int, Any]:
        try:
            request_id, message = msgspec.json.decode(frame)
        except msgspec.DecodeError as e:
            raise ValueError(str(e)) from e
        return request_id, message


def auth(me: GenerationalNodeId, secret: bytes = SECRET, admit=lambda peer: None) -> DataPortAuth:
    return DataPortAuth(secret, me, admit)


class Recorder:
    """An echo handler that remembers who asked what."""

    def __init__(self) -> None:
        self.seen: list[tuple[GenerationalNodeId, int, Any]] = []

    def __call__(self, peer: GenerationalNodeId, reply, rid: int, msg: Any) -> None:
        self.seen.append((peer, rid, msg))
        reply(rid, {"echo": msg})


async def serve(
    handler, limits: ConnectionLimits | None = None, admit=lambda peer: None
) -> tuple[MessageServer, int]:
    server = MessageServer(JsonCodec(), auth(SERVER, admit=admit), handler, limits)
    return server, await server.start("127.0.0.1", 0)


async def until(condition, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def test_requests_and_replies_in_order_with_the_peers_identity_then_reconnect() -> None:
    async def main() -> None:
        handler = Recorder()
        server, port = await serve(handler)
        replies: list[tuple[int, int, Any]] = []
        downs: list[int] = []
        peers = Peers(
            JsonCodec(),
            auth(CLIENT),
            lambda node: ("127.0.0.1", port) if node == 7 else None,
            lambda node, rid, msg: replies.append((node, rid, msg)),
            downs.append,
        )
        for i in range(100):
            peers.send(7, i, f"m{i}")
        peers.send(8, 0, "nowhere")  # no address: reported down, nothing sent
        await until(lambda: len(replies) == 100)
        assert [r[1] for r in replies] == list(range(100))
        assert replies[5] == (7, 5, {"echo": "m5"})
        assert {peer for peer, _, _ in handler.seen} == {CLIENT}
        assert 8 in downs
        assert server.connections == (0, 1)

        # The server goes away: the peer is reported down; after a restart a send dials again.
        await server.close()
        await until(lambda: 7 in downs)
        server = MessageServer(JsonCodec(), auth(SERVER), lambda peer, reply, rid, msg: reply(rid, "again"))
        await server.start("127.0.0.1", port)
        peers.send(7, 100, "x")
        await until(lambda: replies[-1] == (7, 100, "again"))
        await peers.close()
        await server.close()

    asyncio.run(main())


def test_garbage_before_the_handshake_is_refused_and_never_handled() -> None:
    async def main() -> None:
        handler = Recorder()
        server, port = await serve(handler)
        raw = await RawPeer.connect(port)
        # A well-formed frame, but no handshake: the node must not decode it.
        raw.send_raw(b"\x00\x00\x00\x03{{{")
        received = await raw.closed_by_peer()
        assert received.startswith(b"DSH1\x01") and received.endswith(bytes((Refusal.MALFORMED.value,)))
        # A frame header announcing 64 MiB is cut off at its first byte, nothing buffered.
        raw = await RawPeer.connect(port)
        raw.send_raw((64 * 1024 * 1024).to_bytes(4, "big") + b"x" * 65536)
        await raw.closed_by_peer()
        assert handler.seen == []
        assert server.refusals.counts == {"malformed": 2}
        await server.close()

    asyncio.run(main())


def test_a_wrong_secret_or_an_unknown_node_is_refused_and_counted() -> None:
    async def main() -> None:
        handler = Recorder()
        server, port = await serve(
            handler, admit=lambda peer: Refusal.UNKNOWN_NODE if peer.node == 99 else None
        )
        for secret, me, reason in (
            (b"w" * 32, CLIENT, "bad mac"),
            (SECRET, GenerationalNodeId(99, 1), "unknown node"),
        ):
            downs: list[int] = []
            peers = Peers(JsonCodec(), auth(me, secret), lambda n: ("127.0.0.1", port), print, downs.append)
            peers.send(7, 1, "forged")
            await until(lambda downs=downs: downs == [7])
            await peers.close()
            raw = await RawPeer.connect(port)
            try:
                await raw.authenticate(secret, me, 7)
                raise AssertionError("authenticated")
            except ConnectionError as e:
                assert reason in str(e)
        assert handler.seen == []
        assert server.refusals.counts == {"bad-mac": 2, "unknown-node": 2}
        await server.close()

    asyncio.run(main())


def test_a_silent_or_slow_handshake_is_cut_at_its_deadline() -> None:
    async def main() -> None:
        server, port = await serve(Recorder(), ConnectionLimits(handshake_timeout_s=0.2))
        raw = await RawPeer.connect(port)
        raw.send_raw(b"DSH1")  # a correct start, then nothing
        received = await raw.closed_by_peer()
        assert received.startswith(b"DSH1\x01")
        assert server.refusals.counts == {"handshake-timeout": 1}
        await server.close()

    asyncio.run(main())


def test_connection_caps_refuse_at_once_and_count() -> None:
    async def main() -> None:
        limits = ConnectionLimits(
            max_handshaking=2, max_connections=3, max_per_peer=1, handshake_timeout_s=30
        )
        server, port = await serve(Recorder(), limits)
        waiting = [await RawPeer.connect(port) for _ in range(2)]
        await until(lambda: server.connections == (2, 0))
        third = await RawPeer.connect(port)
        assert await third.closed_by_peer(5) == b""  # closed before any handshake
        for raw in waiting:
            raw.close()
        await until(lambda: server.connections == (0, 0))

        first = await RawPeer.connect(port)
        assert await first.authenticate(SECRET, CLIENT, 7) == SERVER
        again = await RawPeer.connect(port)
        try:
            await again.authenticate(SECRET, CLIENT, 7)
            raise AssertionError("a second connection of the same peer was admitted")
        except ConnectionError as e:
            assert "too many connections" in str(e)
        others = [await RawPeer.connect(port) for _ in (4, 5)]
        for node, other in zip((4, 5), others, strict=True):
            assert await other.authenticate(SECRET, GenerationalNodeId(node, 1), 7) == SERVER
        try:
            await (await RawPeer.connect(port)).authenticate(SECRET, GenerationalNodeId(6, 1), 7)
            raise AssertionError("a connection over the total cap was admitted")
        except ConnectionError as e:
            assert "too many connections" in str(e)
        assert server.refusals.counts == {"too-many-handshakes": 1, "too-many-connections": 2}
        assert server.connections == (0, 3)
        await server.close()

    asyncio.run(main())


def test_an_idle_connection_is_closed_and_a_chatty_one_is_not() -> None:
    async def main() -> None:
        handler = Recorder()
        server, port = await serve(handler, ConnectionLimits(idle_timeout_s=0.3))
        idle, chatty = await RawPeer.connect(port), await RawPeer.connect(port)
        await idle.authenticate(SECRET, CLIENT, 7)
        await chatty.authenticate(SECRET, GenerationalNodeId(4, 1), 7)
        closed = asyncio.ensure_future(idle.closed_by_peer())
        for i in range(10):
            chatty.send_raw(encode_frame(JsonCodec().encode(i, "beat")))
            assert (await chatty_receive(chatty))[0] == i
            await asyncio.sleep(0.1)
        await closed
        assert server.refusals.counts == {"idle": 1}
        assert server.connections == (0, 1)
        await server.close()

    asyncio.run(main())


async def chatty_receive(raw: RawPeer) -> tuple[int, Any]:
    data = await raw.reader.readexactly(4)
    return tuple(msgspec.json.decode(await raw.reader.readexactly(int.from_bytes(data, "big"))))  # type: ignore[return-value]


def test_after_the_handshake_an_oversized_or_malformed_frame_or_a_failing_handler_cuts_only_that_connection() -> (
    None
):
    async def main() -> None:
        def handler(peer, reply, rid, msg) -> None:
            if msg == "boom":
                raise RuntimeError("handler bug")
            reply(rid, msg)

        server, port = await serve(handler, ConnectionLimits(max_frame=1024))
        cases = [
            (1025).to_bytes(4, "big"),
            encode_frame(b"{{{"),
            encode_frame(JsonCodec().encode(1, "boom")),
        ]
        bystander = await RawPeer.connect(port)
        await bystander.authenticate(SECRET, GenerationalNodeId(4, 1), 7)
        for data in cases:
            raw = await RawPeer.connect(port)
            await raw.authenticate(SECRET, CLIENT, 7)
            raw.send_raw(data)
            await raw.closed_by_peer()
        bystander.send_raw(encode_frame(JsonCodec().encode(5, "still here")))
        assert await chatty_receive(bystander) == (5, "still here")
        assert server.refusals.counts == {"frame-too-large": 1, "malformed-frame": 1, "handler-error": 1}
        await server.close()

    asyncio.run(main())

import asyncio
from typing import Any

import msgspec

from bifrost.net.messaging import MessageServer, Peers


class JsonCodec:
    def encode(self, request_id: int, message: Any) -> bytes:
        return msgspec.json.encode([request_id, message])

    def decode(self, frame: bytes) -> tuple[int, Any]:
        request_id, message = msgspec.json.decode(frame)
        return request_id, message


def test_requests_and_replies_in_order_then_reconnect_after_a_restart() -> None:
    async def main() -> None:
        codec = JsonCodec()
        server = MessageServer(codec, lambda reply, rid, msg: reply(rid, {"echo": msg}))
        port = await server.start("127.0.0.1", 0)
        replies: list[tuple[int, int, Any]] = []
        downs: list[int] = []
        got = asyncio.Event()

        def on_reply(node: int, rid: int, msg: Any) -> None:
            replies.append((node, rid, msg))
            if len(replies) in (100, 101):
                got.set()

        peers = Peers(codec, lambda node: ("127.0.0.1", port) if node == 7 else None, on_reply, downs.append)
        for i in range(100):
            peers.send(7, i, f"m{i}")
        peers.send(8, 0, "nowhere")  # no address: reported down, nothing sent
        async with asyncio.timeout(10):
            await got.wait()
        assert [r[1] for r in replies] == list(range(100))
        assert replies[5] == (7, 5, {"echo": "m5"})
        assert 8 in downs

        # The server goes away: the peer is reported down; after a restart a send dials again.
        await server.close()
        async with asyncio.timeout(10):
            while 7 not in downs:
                await asyncio.sleep(0.01)
        server = MessageServer(codec, lambda reply, rid, msg: reply(rid, "again"))
        await server.start("127.0.0.1", port)
        got.clear()
        peers.send(7, 100, "x")
        async with asyncio.timeout(10):
            await got.wait()
        assert replies[-1] == (7, 100, "again")
        await peers.close()
        await server.close()

    asyncio.run(main())


def test_garbage_from_a_peer_closes_only_its_connection() -> None:
    async def main() -> None:
        server = MessageServer(JsonCodec(), lambda reply, rid, msg: reply(rid, msg))
        port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\x00\x00\x03{{{")
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # closed by the server
        writer.close()
        await server.close()

    asyncio.run(main())

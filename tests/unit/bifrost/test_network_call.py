"""Network.call over real loopback connections: a reply, a timeout, a lost connection; the
deadlines of many calls share one timer and forget the calls that were answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bifrost.core._types import GenerationalNodeId
from bifrost.net.messaging import DataPortAuth
from bifrost.replicated.messages import Heartbeat, HeartbeatAck, WireCodec
from bifrost.replicated.runtime import Network
from node.ports import free_ports

SECRET = b"network-call-secret-0123456789ab"


def _network(node: int, ports: dict[int, int], on_request: Any) -> Network:
    return Network(
        DataPortAuth(SECRET, GenerationalNodeId(node, 1), lambda peer: None),
        WireCodec(),
        lambda n: ("127.0.0.1", ports[n]) if n in ports else None,
        on_request,
    )


def test_calls_get_their_reply_time_out_or_fail_when_the_connection_is_lost() -> None:
    async def main() -> None:
        p1, p2 = free_ports(2)
        ports = {1: p1, 2: p2}
        held: list[tuple[Any, int]] = []

        def answer(peer: GenerationalNodeId, reply: Any, rid: int, msg: Any) -> None:
            if isinstance(msg, Heartbeat) and msg.generation == 0:
                held.append((reply, rid))  # never answered (until the test says so)
            else:
                reply(rid, HeartbeatAck(msg.node_id, msg.generation))

        caller = _network(1, ports, lambda *a: None)
        server = _network(2, ports, answer)
        await caller.start("127.0.0.1", p1)
        await server.start("127.0.0.1", p2)
        try:
            replies = await asyncio.gather(*(caller.call(2, Heartbeat(i, 1 + i), 5.0) for i in range(200)))
            assert replies == [HeartbeatAck(i, 1 + i) for i in range(200)]
            assert caller._calls == {}  # answered calls leave nothing behind

            with pytest.raises(TimeoutError):
                await caller.call(2, Heartbeat(7, 0), 0.2)
            # A late reply to a call that timed out is dropped.
            reply, rid = held.pop()
            reply(rid, HeartbeatAck(7, 0))
            assert await caller.call(2, Heartbeat(8, 9), 5.0) == HeartbeatAck(8, 9)

            # The server goes away while a call waits: the caller hears of it before its deadline.
            waiting = asyncio.ensure_future(caller.call(2, Heartbeat(9, 0), 30.0))
            async with asyncio.timeout(10.0):
                while not held:  # the request reached the server
                    await asyncio.sleep(0.01)
            await server.close()
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(waiting, 10.0)
            assert caller._calls == {}
        finally:
            await caller.close()
            await server.close()

    asyncio.run(main())

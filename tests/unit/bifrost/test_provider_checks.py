"""The replicated provider's checks of requests against the identity they arrived with."""

from __future__ import annotations

import asyncio
from typing import Any

from bifrost.core import RequestHeader, Store, StoreFlags
from bifrost.core._types import GenerationalNodeId, LogletParams, loglet_id
from bifrost.net.messaging import DataPortAuth
from bifrost.replicated.messages import (
    AppendRequest,
    AppendResponse,
    AppendStatus,
    GetTailRequest,
    GetTailResponse,
    WireCodec,
)
from bifrost.replicated.provider import ReplicatedProvider
from bifrost.replicated.runtime import Network

ME = GenerationalNodeId(1, 4)
PEER = GenerationalNodeId(2, 1)
OURS = LogletParams(loglet_id(1, 0), ME, 1, (1,))


class FakeLogServer:
    def __init__(self) -> None:
        self.handled: list[Any] = []

    def handle(self, reply: Any, request_id: int, message: Any) -> None:
        self.handled.append(message)


class Chain:
    """``names_loglet`` with a switchable answer, counting the calls."""

    def __init__(self) -> None:
        self.answer: bool | Exception = True
        self.calls = 0

    async def __call__(self, params: LogletParams) -> bool:
        self.calls += 1
        await asyncio.sleep(0)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer and params == OURS


def setup() -> tuple[ReplicatedProvider, FakeLogServer, Chain]:
    network = Network(
        DataPortAuth(b"s" * 32, ME, lambda p: None), WireCodec(), lambda n: None, lambda *a: None
    )
    log_server, chain = FakeLogServer(), Chain()
    provider = ReplicatedProvider(ME, network, log_server, names_loglet=chain)  # type: ignore[arg-type]
    return provider, log_server, chain


async def ask(provider: ReplicatedProvider, peer: GenerationalNodeId, message: Any) -> list[Any]:
    replies: list[Any] = []
    provider.handle_request(peer, lambda rid, msg: replies.append(msg), 1, message)
    for _ in range(5):
        await asyncio.sleep(0)
    return replies


def test_a_store_must_come_from_the_sequencer_it_names_unless_it_is_a_repair() -> None:
    async def main() -> None:
        provider, log_server, _ = setup()
        header = RequestHeader(OURS.loglet_id, 1)
        forged = Store(header, 1, ME, (b"x",))
        own = Store(header, 1, PEER, (b"x",))
        repair = Store(header, 1, ME, (b"x",), StoreFlags.IGNORE_SEAL | StoreFlags.REPAIR)
        for message in (forged, own, repair):
            await ask(provider, PEER, message)
        assert log_server.handled == [own, repair]
        assert provider.network.refusals.counts == {"store-not-from-its-sequencer": 1}
        await provider.close()

    asyncio.run(main())


def test_a_sequencer_starts_only_for_the_chains_params_after_one_check() -> None:
    async def main() -> None:
        provider, _, chain = setup()
        elsewhere = LogletParams(loglet_id(1, 0), PEER, 1, (2,))
        assert await ask(provider, PEER, GetTailRequest(elsewhere)) == [GetTailResponse(found=False)]
        assert chain.calls == 0, "params naming another node need no check"
        bogus = LogletParams(loglet_id(2, 0), ME, 1, (1,))
        [refused] = await ask(provider, PEER, AppendRequest(bogus, (b"x",)))
        assert isinstance(refused, AppendResponse) and refused.status == AppendStatus.NOT_SEQUENCER
        assert provider.sequencers == {} and provider.network.refusals.counts == {"loglet-not-in-chain": 1}

        chain.answer = ConnectionError("metadata store unreachable")
        [later] = await ask(provider, PEER, AppendRequest(OURS, (b"x",)))
        assert isinstance(later, AppendResponse) and later.status == AppendStatus.UNAVAILABLE
        assert await ask(provider, PEER, GetTailRequest(OURS)) == [], "no answer: the asker retries"
        assert provider.sequencers == {}

        chain.answer, chain.calls = True, 0
        both = await asyncio.gather(
            ask(provider, PEER, GetTailRequest(OURS)), ask(provider, PEER, GetTailRequest(OURS))
        )
        assert both == [[GetTailResponse(True, 1, False)]] * 2
        assert chain.calls == 1, "concurrent first requests share one check"
        assert list(provider.sequencers) == [OURS.loglet_id]
        assert await ask(provider, PEER, GetTailRequest(OURS)) == [GetTailResponse(True, 1, False)]
        assert chain.calls == 1, "a running sequencer needs no check"
        await provider.close()

    asyncio.run(main())

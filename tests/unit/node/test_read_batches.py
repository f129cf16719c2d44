"""ready_batches: what is ready leaves together, a lone item at once, read-ahead bounded by the
budget, errors after the items before them, closing stops the source; and a follow-mode LogRead
through a real gRPC server sends the records a node has ready in one message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from bifrost.bifrost import LogEntry, LogRecord, LogTrimGap
from node.config import NodeConfig
from node.grpc_service import NodeServicer
from node.read_batches import ready_batches
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc


class Source:
    """An async stream fed by the test: ``put`` makes items ready, ``fail`` ends it with an error."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self.pulled = 0
        self.closed = False

    def put(self, *items: bytes) -> None:
        for item in items:
            self._queue.put_nowait(item)

    def fail(self, error: Exception) -> None:
        self._queue.put_nowait(error)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def items(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                assert isinstance(item, bytes)
                self.pulled += 1
                yield item
        finally:
            self.closed = True


async def settle() -> None:
    """Let every callback that is ready run (the pump task and the Source, a few turns each)."""
    for _ in range(10):
        await asyncio.sleep(0)


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_ready_items_leave_together_and_a_lone_one_at_once() -> None:
    async def main() -> None:
        src = Source()
        batches = ready_batches(src.items(), len, budget=1000)
        src.put(b"a", b"b", b"c")
        assert await anext(batches) == [b"a", b"b", b"c"]
        src.put(b"d")
        assert await anext(batches) == [b"d"]
        src.end()
        with pytest.raises(StopAsyncIteration):
            await anext(batches)

    run(main())


def test_a_batch_costs_at_most_the_budget_and_a_larger_item_goes_alone() -> None:
    async def main() -> None:
        src = Source()
        batches = ready_batches(src.items(), len, budget=10)
        src.put(b"1234", b"5678", b"9abc", b"x" * 25, b"yz")
        src.end()
        assert [b async for b in batches] == [[b"1234", b"5678"], [b"9abc"], [b"x" * 25], [b"yz"]]

    run(main())


def test_reading_ahead_of_a_stalled_consumer_stops_at_the_budget() -> None:
    async def main() -> None:
        src = Source()
        batches = ready_batches(src.items(), len, budget=10)
        src.put(*[b"12345"] * 20)
        first = await anext(batches)
        await settle()
        # The batch taken (10) plus what may wait for the consumer (10 and at most one item more).
        assert sum(map(len, first)) == 10
        assert src.pulled <= 2 + 3
        await anext(batches)
        await settle()
        assert src.pulled <= 4 + 3
        await batches.aclose()  # type: ignore[attr-defined]

    run(main())


def test_an_error_comes_after_the_items_read_before_it() -> None:
    async def main() -> None:
        src = Source()
        batches = ready_batches(src.items(), len, budget=100)
        src.put(b"a", b"b")
        src.fail(KeyError("boom"))
        assert await anext(batches) == [b"a", b"b"]
        with pytest.raises(KeyError, match="boom"):
            await anext(batches)

    run(main())


def test_closing_the_batches_closes_the_source() -> None:
    async def main() -> None:
        src = Source()
        batches = ready_batches(src.items(), len, budget=100)
        src.put(b"a")
        assert await anext(batches) == [b"a"]
        await batches.aclose()  # type: ignore[attr-defined]
        await settle()
        assert src.closed

    run(main())


# --- through gRPC ------------------------------------------------------------------------


class FakeBifrost:
    """A log of ``count`` records already committed, followed forever (nothing more comes)."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def read(self, log_id: int, from_lsn: int, to_lsn: int | None = None) -> AsyncIterator[LogEntry]:
        yield LogTrimGap(1, from_lsn - 1)
        for lsn in range(from_lsn, from_lsn + self.count):
            yield LogRecord(lsn, b"r%d" % lsn)
        await asyncio.Event().wait()


class FakeLogRole:
    def __init__(self, bifrost: FakeBifrost) -> None:
        self.bifrost = bifrost


def test_a_follow_read_sends_the_records_it_has_ready_in_one_message() -> None:
    async def main() -> None:
        servicer = NodeServicer(NodeConfig(), None, 1, None, FakeLogRole(FakeBifrost(500)))  # type: ignore[arg-type]
        server = grpc.aio.server()
        node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = node_pb2_grpc.NodeServiceStub(channel).LogRead(
                    node_pb2.LogReadRequest(log_id=0, from_lsn=11, follow=True)
                )
                entries: list[node_pb2.LogEntry] = []
                messages = 0
                async with asyncio.timeout(10):  # a deadline, not a pace: the records are all there
                    async for msg in call:
                        messages += 1
                        entries.extend(msg.entries)
                        if len(entries) == 501:
                            break
                call.cancel()
        finally:
            await server.stop(0)
        assert (entries[0].lsn, entries[0].trim_gap_to) == (1, 10)
        assert [(e.lsn, e.payload) for e in entries[1:]] == [(n, b"r%d" % n) for n in range(11, 511)]
        assert messages == 1

    run(main())

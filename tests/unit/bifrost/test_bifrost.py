"""The Bifrost facade over in-process nodes (real TCP, real RocksDB, local metadata store)."""

import asyncio
from pathlib import Path

import pytest

from bifrost.bifrost import Bifrost, LogRecord, LogTrimGap
from bifrost.chain_store import provision_logs
from bifrost.errors import InvalidLsn, RecordTooLarge, UnknownLog
from metadata.local import LocalMetadataStore
from tests.unit.bifrost.replicated_env import Env, replicated_env


def bifrosts(env: Env, store: LocalMetadataStore) -> dict[int, Bifrost]:
    return {
        n: Bifrost(store, p, lambda: [m for m in env.providers if m not in env.dead])
        for n, p in env.providers.items()
    }


async def read_range(b: Bifrost, log_id: int, first: int, last: int) -> list:
    async with asyncio.timeout(20):
        return [e async for e in b.read(log_id, first, last)]


def run(tmp_path: Path, body, nodes: int = 3) -> None:
    async def main() -> None:
        store = LocalMetadataStore.open(tmp_path / "meta")
        try:
            async with replicated_env(tmp_path, nodes) as env:
                bs = bifrosts(env, store)
                try:
                    await body(env, store, bs)
                finally:
                    for b in bs.values():
                        await b.close()
        finally:
            await store.close()

    asyncio.run(main())


def test_append_read_across_a_manual_reconfiguration(tmp_path: Path) -> None:
    async def body(env, store, bs) -> None:
        await provision_logs(store, 3, replication=2)
        b1, b2, b3 = bs[1], bs[2], bs[3]
        assert await b1.append(1, [b"a", b"b"]) == 1
        assert await b2.append(1, [b"c"]) == 3  # through a node that does not sequence
        assert await b1.find_tail(1) == (4, False)
        chain = await b3.reconfigure(1)
        assert [s.base_lsn for s in chain.segments] == [1, 4]
        assert chain.tail.params.sequencer.node == 3
        assert await b1.append(1, [b"d"]) == 4
        assert await b1.append(2, [b"other log"]) == 1
        for b in (b1, b2, b3):
            assert await read_range(b, 1, 1, 4) == [
                LogRecord(i + 1, p) for i, p in enumerate([b"a", b"b", b"c", b"d"])
            ]

    run(tmp_path, body)


def test_sequencer_death_reconfigures_and_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    async def body(env, store, bs) -> None:
        await provision_logs(store, 2, replication=2)
        acked: dict[int, bytes] = {}
        for i in range(20):
            acked[await bs[1].append(1, [f"before-{i}".encode()])] = f"before-{i}".encode()
        await env.stop_node(1)  # the sequencer's node: env.dead makes the failure detector agree
        for i in range(20):
            acked[await bs[2].append(1, [f"after-{i}".encode()])] = f"after-{i}".encode()
        chain, _ = await bs[3].chain(1, refresh=True)
        assert len(chain.segments) == 2 and chain.tail.params.sequencer.node == 2
        assert bs[2].stats.reconfigurations == 1
        tail, _ = await bs[3].find_tail(1)
        for b in (bs[2], bs[3]):
            seen = {e.lsn: e.payload for e in await read_range(b, 1, 1, tail - 1)}
            for lsn, payload in acked.items():
                assert seen[lsn] == payload, f"acknowledged LSN {lsn} lost or changed"

    run(tmp_path, body)


def test_trim_and_bad_input(tmp_path: Path) -> None:
    async def body(env, store, bs) -> None:
        await provision_logs(store, 2, replication=2)
        b = bs[1]
        await b.append(1, [f"r{i}".encode() for i in range(10)])
        with pytest.raises(InvalidLsn, match="tail is 11"):
            await b.trim(1, 11)
        with pytest.raises(UnknownLog):
            await b.append(7, [b"x"])
        with pytest.raises(RecordTooLarge):
            await b.append(1, [b"x" * (b._max_record_bytes + 1)])
        with pytest.raises(InvalidLsn):
            async for _ in b.read(1, 0):
                pass
        assert await b.find_tail(1) == (11, False), "refused appends wrote nothing"
        await b.trim(1, 4)
        entries = await read_range(bs[2], 1, 1, 10)
        assert entries[0] == LogTrimGap(1, 4)
        assert entries[1:] == [LogRecord(i, f"r{i - 1}".encode()) for i in range(5, 11)]

    run(tmp_path, body)


def test_a_lost_append_reply_does_not_duplicate_within_a_segment(tmp_path: Path) -> None:
    """The reply to a remote append is lost; the appender resends the batch to the same
    segment; the sequencer answers from memory: the log holds it once, in order."""

    async def body(env, store, bs) -> None:
        await provision_logs(store, 3, replication=2)
        assert await bs[1].append(1, [b"first"]) == 1  # node 1 sequences log 1
        sequencer = env.providers[1]
        original = sequencer._remote_append
        dropped = []

        def drop_first_reply(seq, reply, request_id, req):
            if not dropped:
                dropped.append(req)
                return original(seq, lambda rid, msg: None, request_id, req)
            return original(seq, reply, request_id, req)

        sequencer._remote_append = drop_first_reply
        lsns = await asyncio.gather(bs[2].append(1, [b"x1", b"x2"]), bs[2].append(1, [b"y"]))
        assert dropped, "no reply was dropped"
        assert lsns == [2, 4]
        entries = await read_range(bs[3], 1, 1, 4)
        assert [e.payload for e in entries] == [b"first", b"x1", b"x2", b"y"]
        assert sequencer.duplicate_appends >= 2
        assert await bs[1].find_tail(1) == (5, False)


def test_a_batch_over_the_limit_is_refused_whole(tmp_path: Path) -> None:
    from bifrost.errors import BatchTooLarge

    async def body(env, store, bs) -> None:
        await provision_logs(store, 2, replication=2)
        b = Bifrost(store, env.providers[1], lambda: [1, 2, 3], max_record_bytes=1000)
        try:
            assert await b.append(1, [b"x" * 1000]) == 1, "one record of the maximum size fits"
            with pytest.raises(BatchTooLarge, match="append batch of 2 records"):
                await b.append(1, [b"x" * 600, b"y" * 600])
            with pytest.raises(BatchTooLarge):
                await b.append(1, [b""] * 100)  # empty records still cost their envelope
            assert await b.find_tail(1) == (2, False), "refused batches wrote nothing"
        finally:
            await b.close()

    run(tmp_path, body)


def test_names_loglet_is_true_only_for_the_tail_of_the_chain(tmp_path: Path) -> None:
    from bifrost.core._types import GenerationalNodeId, LogletParams, loglet_id

    async def body(env, store, bs) -> None:
        await provision_logs(store, 3, replication=2)
        await bs[1].append(1, [b"a"])
        tail = (await bs[1].chain(1))[0].tail.params
        # Node 2 never looked at log 1: it refreshes the chain from the metadata store.
        assert await bs[2].names_loglet(tail)
        forged = LogletParams(tail.loglet_id, tail.sequencer, 1, (1,))
        assert not await bs[2].names_loglet(forged)
        assert not await bs[2].names_loglet(LogletParams(loglet_id(2, 0), GenerationalNodeId(2, 1), 1, (2,)))
        assert not await bs[2].names_loglet(LogletParams(loglet_id(9, 0), GenerationalNodeId(2, 1), 1, (2,)))
        await bs[3].reconfigure(1)
        assert not await bs[2].names_loglet(tail), "a sealed segment starts no sequencer"

    run(tmp_path, body)


def test_a_bad_chain_in_the_store_is_named_and_the_watch_keeps_the_last_good_one(tmp_path: Path) -> None:
    from bifrost.chain_store import chain_key
    from metadata import RecordFormatError
    from metadata.records import encode

    async def body(env, store, bs) -> None:
        await provision_logs(store, 3, replication=2)
        await bs[1].append(1, [b"a"])
        chain, _ = await bs[2].chain(1)  # node 2 now watches log 1's chain
        await store.put(chain_key(1), b"\x01garbage")
        with pytest.raises(RecordFormatError, match="'log_chain_1'"):
            await bs[3].chain(1, refresh=True)
        assert (await bs[2].chain(1))[0] == chain, "the watch kept the last good chain"
        version = await store.put(chain_key(1), encode(chain))
        async with asyncio.timeout(10):
            while (await bs[2].chain(1))[1] != version:
                await asyncio.sleep(0.01)
        assert await bs[2].append(1, [b"b"]) == 2

    run(tmp_path, body)

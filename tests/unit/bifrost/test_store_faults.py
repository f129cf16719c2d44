"""The log-server's RocksDB store under corruption: refused at open, an error at read, never a
silently short answer (RocksDB's iterator ends quietly at a block it cannot read)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bifrost.core import (
    GetRecords,
    LogServer,
    Persist,
    Persisted,
    Reply,
    Request,
    RequestHeader,
    Status,
    StorageError,
    Store,
)
from bifrost.core._types import GenerationalNodeId
from bifrost.log_server.store import RocksLogStore, StoreOpenError

SEQ = GenerationalNodeId(1, 1)


def _fill(path: Path, records: int = 3000) -> None:
    async def run() -> None:
        store = RocksLogStore(path)
        server = LogServer(1, store)
        for i in range(0, records, 100):
            payloads = tuple(f"record-{j:06d}-".encode() * 8 for j in range(i, i + 100))
            [persist] = [
                o
                for o in server.step(Request("t", i, Store(RequestHeader(1, 1), i + 1, SEQ, payloads)))
                if isinstance(o, Persist)
            ]
            await store.writer.submit(store.ops_for(persist.writes))
            server.step(Persisted(persist.token))
        store.db.flush()
        await store.close()

    asyncio.run(run())


def _flip_a_byte(path: Path) -> Path:
    sst = sorted(path.glob("*.sst"))[0]
    data = bytearray(sst.read_bytes())
    data[len(data) // 3] ^= 0xFF
    sst.write_bytes(bytes(data))
    return sst


def test_a_flipped_byte_is_refused_at_open_naming_the_file(tmp_path: Path) -> None:
    _fill(tmp_path / "ls")
    sst = _flip_a_byte(tmp_path / "ls")
    with pytest.raises(StoreOpenError) as e:
        RocksLogStore(tmp_path / "ls")
    message = str(e.value)
    assert "\n" not in message and "corrupted" in message and sst.name in message


def test_a_read_that_meets_corruption_fails_instead_of_ending_early(tmp_path: Path) -> None:
    _fill(tmp_path / "ls")
    _flip_a_byte(tmp_path / "ls")
    store = RocksLogStore(tmp_path / "ls", verify=False)
    try:
        with pytest.raises(StorageError, match="checksum"):
            list(store.read(1, 1, 3000))
        server = LogServer(1, store)
        [reply] = server.step(Request("reader", 1, GetRecords(RequestHeader(1, 3001), 1, 3000, 1 << 30)))
        assert isinstance(reply, Reply) and reply.message.header.status is Status.DISABLED
        assert server.fault is not None and "checksum" in server.fault
    finally:
        asyncio.run(store.close())


def test_a_truncated_manifest_is_one_line(tmp_path: Path) -> None:
    _fill(tmp_path / "ls", records=100)
    for manifest in (tmp_path / "ls").glob("MANIFEST-*"):
        manifest.write_bytes(manifest.read_bytes()[:10])
    with pytest.raises(StoreOpenError) as e:
        RocksLogStore(tmp_path / "ls")
    assert "\n" not in str(e.value) and str(tmp_path / "ls") in str(e.value)

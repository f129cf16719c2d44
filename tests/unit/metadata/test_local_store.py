"""What only the local (RocksDB) backend promises: durability across reopen, its on-disk format."""

from __future__ import annotations

import asyncio

import pytest
from rocksdict import Options, Rdict

from metadata import CorruptStore, LocalMetadataStore, MetadataError, Precondition, Versioned
from metadata.local_format import FORMAT_V1, REVISION_KEY, entry_key


def raw_db(path) -> Rdict:
    return Rdict(str(path), Options(raw_mode=True))


def test_reopen_keeps_values_and_versions(tmp_path, run):
    path = tmp_path / "meta"

    async def first_life() -> tuple[int, int]:
        store = LocalMetadataStore.open(path)
        try:
            kept = await store.put("kept", b"value")
            await store.put("gone", b"x")
            await store.delete("gone")
            return kept, store.revision
        finally:
            await store.close()

    kept, revision = run(first_life())

    async def second_life() -> None:
        store = LocalMetadataStore.open(path)
        try:
            assert store.revision == revision
            assert await store.get("kept") == Versioned(b"value", kept)
            assert await store.get("gone") is None
            # The revision counter survived: a re-created key gets a version above all before.
            recreated = await store.put("gone", b"back", Precondition.does_not_exist())
            assert recreated == revision + 1
            error_version = await store.put("kept", b"newer", Precondition.matches(kept))
            assert error_version > recreated
        finally:
            await store.close()

    run(second_life())


def test_values_carry_a_format_byte_on_disk(tmp_path, run):
    path = tmp_path / "meta"

    async def write() -> int:
        store = LocalMetadataStore.open(path)
        try:
            return await store.put("k", b"payload")
        finally:
            await store.close()

    version = run(write())
    db = raw_db(path)
    try:
        raw = db.get(entry_key("k"))
        assert raw[0] == FORMAT_V1
        assert int.from_bytes(raw[1:9], "big") == version
        assert raw[9:] == b"payload"
        assert db.get(REVISION_KEY)[0] == FORMAT_V1
    finally:
        db.close()


def test_unknown_format_byte_is_refused_at_open(tmp_path):
    path = tmp_path / "meta"
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(path), options)
    try:
        db[entry_key("k")] = bytes([99]) + (1).to_bytes(8, "big") + b"v"
    finally:
        db.close()
    with pytest.raises(CorruptStore, match="format version 99"):
        LocalMetadataStore.open(path)
    # The refused open released the directory: a fixed store opens again.
    db = raw_db(path)
    try:
        db[entry_key("k")] = bytes([FORMAT_V1]) + (1).to_bytes(8, "big") + b"v"
    finally:
        db.close()
    store = LocalMetadataStore.open(path)
    asyncio.run(store.close())


def test_a_directory_is_opened_by_one_store_at_a_time(tmp_path, run):
    async def body() -> None:
        store = LocalMetadataStore.open(tmp_path / "meta")
        try:
            with pytest.raises(MetadataError, match="cannot open"):
                LocalMetadataStore.open(tmp_path / "meta")
        finally:
            await store.close()

    run(body())


def test_a_cancelled_writer_still_commits_in_full(tmp_path, run):
    path = tmp_path / "meta"

    async def body() -> Versioned | None:
        store = LocalMetadataStore.open(path)
        try:
            task = asyncio.create_task(store.put("k", b"v"))
            await asyncio.sleep(0)  # one scheduling step: the put hands its commit to its own task
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await store.put("k2", b"after")  # queued behind the cancelled caller's commit
            return await store.get("k")
        finally:
            await store.close()

    in_memory = run(body())
    # Cancelling the caller did not tear the write: memory, and disk after reopen, both have it.
    assert in_memory == Versioned(b"v", 1)

    async def reopened() -> Versioned | None:
        store = LocalMetadataStore.open(path)
        try:
            return await store.get("k")
        finally:
            await store.close()

    assert run(reopened()) == in_memory

import asyncio
from pathlib import Path

from rocksdict import Options, Rdict

from bifrost.log_server.writer import DeleteRange, GroupCommitWriter


def open_db(path: Path) -> Rdict:
    return Rdict(str(path), Options(raw_mode=True))


def test_concurrent_submits_share_one_synced_batch(tmp_path: Path) -> None:
    async def main() -> GroupCommitWriter:
        db = open_db(tmp_path / "db")
        writer = GroupCommitWriter(db)
        await asyncio.gather(*(writer.submit([(b"k%03d" % i, b"v%d" % i)]) for i in range(100)))
        await writer.submit([(b"k000", None), (b"k010", DeleteRange(b"k020"))])
        await writer.close()
        db.close()
        return writer

    writer = asyncio.run(main())
    assert writer.stats.write_sets == 101
    assert writer.stats.batches == 2, writer.stats
    db = open_db(tmp_path / "db")
    assert db.get(b"k000") is None
    assert db.get(b"k099") == b"v99"
    assert db.get(b"k015") is None and db.get(b"k009") == b"v9" and db.get(b"k020") == b"v20"
    db.close()


def test_a_failed_write_fails_every_waiter(tmp_path: Path) -> None:
    async def main() -> list[BaseException | None]:
        db = open_db(tmp_path / "db")
        writer = GroupCommitWriter(db)
        db.close()  # writes to a closed db raise
        results = await asyncio.gather(
            writer.submit([(b"a", b"1")]), writer.submit([(b"b", b"2")]), return_exceptions=True
        )
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, Exception) for r in results), results


def test_closed_writer_refuses(tmp_path: Path) -> None:
    async def main() -> BaseException | None:
        db = open_db(tmp_path / "db")
        writer = GroupCommitWriter(db)
        await writer.close()
        try:
            await writer.submit([(b"a", b"1")])
        except RuntimeError as e:
            return e
        finally:
            db.close()
        return None

    assert isinstance(asyncio.run(main()), RuntimeError)

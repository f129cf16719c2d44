"""The RocksDB partition store beyond the `Tables` contract: reopening, partitions side by side,
the start check against the log, reads outside transactions, and errors that name the store."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from processor.core import JournalEntry, SelfProposal
from processor.store import (
    Durability,
    PartitionStore,
    StoreAheadOfLog,
    StoreOpenError,
    StoreReadError,
    StoreWriteError,
    check_not_ahead,
    keys,
)
from processor.store.keys import KeyFormatError
from tests.unit.processor.store.tables_conformance import everything, inv, status, write_everything


@pytest.mark.parametrize("durability", list(Durability), ids=lambda d: d.value)
def test_commits_survive_close_and_reopen(durability: Durability, tmp_path: Path) -> None:
    with PartitionStore(tmp_path, durability) as store:
        t = store.partition(1).transaction()
        write_everything(t)
        written = everything(t)
        t.commit()
    with PartitionStore(tmp_path, durability) as store:
        assert everything(store.partition(1).transaction()) == written


# A process that commits, maybe syncs, and dies by SIGKILL (no close, so no flush on the way out).
COMMIT_THEN_DIE = """
import os, signal, sys
from pathlib import Path
from processor.store import Durability, PartitionStore
store = PartitionStore(Path(sys.argv[1]), Durability(sys.argv[2]))
t = store.partition(0).transaction()
t.set_applied_lsn(7)
t.commit()
if sys.argv[3] == "sync":
    store.sync()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(
    ("durability", "sync", "kept"),
    [
        (Durability.WAL, False, True),  # the WAL is in the page cache, which outlives the process
        (Durability.WAL_SYNC, False, True),
        (Durability.NO_WAL, False, False),  # only the memtable had it
        (Durability.NO_WAL, True, True),  # sync() flushed it
    ],
    ids=lambda v: v.value if isinstance(v, Durability) else str(v),
)
def test_what_a_killed_process_keeps(durability: Durability, sync: bool, kept: bool, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", COMMIT_THEN_DIE, str(tmp_path), durability.value, "sync" if sync else "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    with PartitionStore(tmp_path, durability) as store:
        assert store.partition(0).applied_lsn() == (7 if kept else 0)


def test_partitions_are_independent(tmp_path: Path) -> None:
    with PartitionStore(tmp_path) as store:
        for pid, lsn in [(0, 5), (1, 9), (0xFFFF, 2)]:
            t = store.partition(pid).transaction()
            t.set_applied_lsn(lsn)
            t.put_state("S", "k", b"n", b"%d" % pid)
            t.set_dedup("self", SelfProposal(pid, lsn))
            t.commit()
        assert [store.partition(p).applied_lsn() for p in (0, 1, 2, 0xFFFF)] == [5, 9, 0, 2]
        assert list(store.partition(1).all_state("S", "k")) == [(b"n", b"1")]
        assert store.partition(2).transaction().dedup("self") is None
        assert store.partition(1) is store.partition(1)


def test_partition_ids_must_fit_the_layout(tmp_path: Path) -> None:
    with PartitionStore(tmp_path) as store, pytest.raises(KeyFormatError, match="partition=65536"):
        store.partition(0x10000)


def test_reads_outside_transactions_see_committed_state_only(tmp_path: Path) -> None:
    with PartitionStore(tmp_path) as store:
        part = store.partition(2)
        t = part.transaction()
        t.put_status(inv(1), status(1))
        t.put_journal(inv(1), 0, JournalEntry(1, b"in"))
        t.put_state("Counter", "k", b"n", b"1")
        t.set_applied_lsn(4)
        assert (
            part.get_status(inv(1)),
            list(part.journal(inv(1))),
            list(part.all_state("Counter", "k")),
        ) == (
            None,
            [],
            [],
        )
        assert part.applied_lsn() == 0
        t.commit()
        assert part.get_status(inv(1)) == status(1)
        assert list(part.journal(inv(1))) == [(0, JournalEntry(1, b"in"))]
        assert list(part.journal(inv(1), from_index=1)) == []
        assert list(part.all_state("Counter", "k")) == [(b"n", b"1")]
        assert part.applied_lsn() == 4


# --- the start check ---------------------------------------------------------------------------


@pytest.mark.parametrize(("applied", "tail"), [(0, 1), (0, 50), (99, 100), (100, 101)])
def test_a_store_behind_or_at_its_log_may_start(applied: int, tail: int) -> None:
    check_not_ahead(applied, tail, partition=3)


def test_a_store_ahead_of_its_log_refuses_to_start() -> None:
    with pytest.raises(StoreAheadOfLog) as e:
        check_not_ahead(120, 101, partition=3)
    assert str(e.value).startswith("partition 3's store has applied LSN 120 but its log ends at 100: ")
    assert "another log" in str(e.value) and "snapshot" in str(e.value)
    assert (e.value.partition, e.value.applied_lsn, e.value.log_tail) == (3, 120, 101)
    with pytest.raises(StoreAheadOfLog, match="applied LSN 101 but its log ends at 100"):
        check_not_ahead(101, 101, partition=3)
    with pytest.raises(StoreAheadOfLog, match="applied LSN 7 but its log is empty"):
        check_not_ahead(7, 1, partition=0)


def test_handle_checks_its_own_applied_lsn(tmp_path: Path) -> None:
    with PartitionStore(tmp_path) as store:
        part = store.partition(3)
        t = part.transaction()
        t.set_applied_lsn(120)
        t.commit()
        assert part.check_not_ahead(121) == 120
        with pytest.raises(
            StoreAheadOfLog, match="partition 3's store has applied LSN 120 but its log ends at 100"
        ):
            part.check_not_ahead(101)


# --- errors ------------------------------------------------------------------------------------


def test_a_second_open_of_the_same_store_is_refused_by_name(tmp_path: Path) -> None:
    with (
        PartitionStore(tmp_path),
        pytest.raises(StoreOpenError, match=f"cannot open the partition store at {tmp_path}"),
    ):
        PartitionStore(tmp_path)


def test_a_closed_store_fails_reads_and_commits_with_typed_errors(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path)
    part = store.partition(1)
    t = part.transaction()
    t.put_state("S", "k", b"n", b"v")
    store.close()
    with pytest.raises(StoreWriteError, match=f"partition store at {tmp_path}: commit failed"):
        t.commit()
    with pytest.raises(StoreReadError, match=f"partition store at {tmp_path}"):
        part.applied_lsn()
    with pytest.raises(StoreReadError, match=f"partition store at {tmp_path}"):
        list(part.all_state("S", "k"))


def test_an_undecodable_value_is_a_read_error_naming_its_key(tmp_path: Path) -> None:
    with PartitionStore(tmp_path) as store:
        key = keys.STATUS.encode(1, inv(1))
        store._db.put(key, b"\x07garbage")
        with pytest.raises(
            StoreReadError, match=f"partition store at {tmp_path}: key {key.hex()}: cannot decode"
        ):
            store.partition(1).get_status(inv(1))


def test_a_corrupted_block_is_a_read_error_never_a_short_read(tmp_path: Path) -> None:
    entries = 3000
    rng = random.Random(5)
    with PartitionStore(tmp_path) as store:
        t = store.partition(1).transaction()
        for i in range(entries):  # incompressible, so the SST file has many data blocks
            t.put_journal(inv(1), i, JournalEntry(1, rng.randbytes(200)))
        t.commit()
    # close() flushed the memtable: the rows now live in an SST file. Flip bytes in its middle,
    # where data blocks are (index and footer are at the end).
    (sst,) = [p for p in tmp_path.iterdir() if p.suffix == ".sst"]
    size = sst.stat().st_size
    with open(sst, "r+b") as f:
        f.seek(size // 3)
        f.write(bytes(64))
        f.flush()
        os.fsync(f.fileno())
    with PartitionStore(tmp_path) as store:
        part = store.partition(1)
        with pytest.raises(StoreReadError, match=f"partition store at {tmp_path}: cannot scan") as e:
            list(part.journal(inv(1)))
        assert "orrupt" in str(e.value) or "checksum" in str(e.value)
        # Point reads: the keys in the bad block fail, the others read back whole.
        failed = 0
        for i in range(entries):
            try:
                raw = store._get(keys.JOURNAL.encode(1, inv(1), i))
            except StoreReadError as e:
                assert str(e).startswith(f"partition store at {tmp_path}: cannot read key ")
                failed += 1
            else:
                assert raw is not None and len(raw) > 200
        assert 0 < failed < entries

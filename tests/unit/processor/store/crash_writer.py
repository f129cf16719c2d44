"""The process the crash test kills: applies one transaction per LSN to a partition store, forever.

    python -m tests.unit.processor.store.crash_writer STORE_DIR DURABILITY

Every batch writes many rows in every table, all derived from its LSN, so a store holding part
of a batch, or a batch without its applied LSN, fails `check_consistent`. At start the writer
checks the store and continues at applied LSN + 1; after each commit it prints the LSN.
"""

from __future__ import annotations

import sys
from pathlib import Path

from processor.core import JournalEntry, OutboxMessage, SelfProposal, TimerKey, TimerKind
from processor.store import Durability, PartitionHandle, PartitionStore
from tests.unit.processor.store.tables_conformance import inv, message

PARTITION = 5
STATE_NAMES = 40
VALUE_BYTES = 1000


def value(lsn: int) -> bytes:
    return lsn.to_bytes(8, "big") * (VALUE_BYTES // 8)


def timer(lsn: int) -> TimerKey:
    return TimerKey(lsn, inv(1), TimerKind.SLEEP, lsn)


def apply_batch(part: PartitionHandle, lsn: int) -> None:
    t = part.transaction()
    assert t.applied_lsn() == lsn - 1
    for i in range(STATE_NAMES):
        t.put_state("Counter", "k", b"f%02d" % i, value(lsn))
    t.put_journal(inv(1), lsn, JournalEntry(1, value(lsn)))
    t.delete_timer(timer(lsn - 1))
    t.put_timer(timer(lsn))
    index = t.next_outbox_index()
    t.put_outbox(index, message(index))
    t.set_dedup("self", SelfProposal(1, lsn))
    t.set_applied_lsn(lsn)
    t.commit()


def check_consistent(part: PartitionHandle) -> int:
    """Every row agrees with the applied LSN; returns it."""
    t = part.transaction()
    lsn = t.applied_lsn()
    if lsn == 0:
        assert list(t.all_state("Counter", "k")) == []
        assert list(t.timers()) == [] and list(t.outbox()) == [] and t.dedup("self") is None
        return 0
    assert list(t.all_state("Counter", "k")) == [(b"f%02d" % i, value(lsn)) for i in range(STATE_NAMES)]
    assert [(i, e.raw) for i, e in t.journal(inv(1))] == [(i, value(i)) for i in range(1, lsn + 1)]
    assert list(t.timers()) == [timer(lsn)]
    outbox: list[tuple[int, OutboxMessage]] = list(t.outbox())
    assert outbox == [(i, message(i)) for i in range(1, lsn + 1)]
    assert t.dedup("self") == SelfProposal(1, lsn)
    assert t.next_outbox_index() == lsn + 1
    return lsn


def main() -> None:
    path, durability = Path(sys.argv[1]), Durability(sys.argv[2])
    store = PartitionStore(path, durability)
    part = store.partition(PARTITION)
    lsn = check_consistent(part)
    print(f"start {lsn}", flush=True)
    while True:
        lsn += 1
        apply_batch(part, lsn)
        print(lsn, flush=True)


if __name__ == "__main__":
    main()

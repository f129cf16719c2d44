"""Implementation-agnostic checks of the `Tables` contract (processor/core/_tables.py).

Each function takes ``begin``, a factory that opens a new transaction on one fresh, empty store
(every call on the same store), and raises AssertionError on a violation. The test module runs
every function against `MemoryTables` and the RocksDB partition store: a new implementation only
adds a parameter.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from processor.core import (
    AnnounceLeader,
    ForeignPartition,
    HandlerType,
    IngressSink,
    InvocationResponse,
    InvocationStatus,
    JournalEntry,
    OutboxMessage,
    PartitionSink,
    Result,
    SelfProposal,
    ServiceInvocation,
    ServiceType,
    StatusKind,
    Tables,
    Target,
    TimerKey,
    TimerKind,
)


class Transaction(Tables, Protocol):
    def commit(self) -> None: ...


Begin = Callable[[], Transaction]


def inv(n: int) -> bytes:
    """A well-formed 24-byte invocation id (partition key, uuid)."""
    return n.to_bytes(8, "big") + (n * 7919).to_bytes(16, "big")


def status(n: int, kind: StatusKind = StatusKind.INVOKED) -> InvocationStatus:
    target = Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE, key=f"k{n}")
    invocation = ServiceInvocation(
        inv(n),
        target,
        "dp_1",
        b'{"n": %d}' % n,
        headers=(("x-a", "1"),),
        response_sink=IngressSink(node=1, generation=2, request_id=n),
        idempotency_key=f"idem-{n}",
    )
    return InvocationStatus(
        kind,
        invocation,
        created_at_ms=1000 + n,
        modified_at_ms=2000 + n,
        response_sinks=(PartitionSink(inv(n + 1), 3),),
        journal_length=n,
        result=Result(value=b"ok") if kind is StatusKind.COMPLETED else None,
    )


def entry(n: int) -> JournalEntry:
    return JournalEntry(type_id=0x0400 + n % 3, raw=bytes([n % 256]) * (n % 5 + 1))


def message(n: int) -> OutboxMessage:
    """Odd n: a call's response; even n: a new invocation (both kinds of outbox command)."""
    if n % 2:
        return OutboxMessage(n, InvocationResponse(inv(n), n, inv(n + 1), Result(value=b"%d" % n)))
    return OutboxMessage(n, status(n).invocation)


# --- fsm ---------------------------------------------------------------------------------------


def fsm_defaults_and_read_your_writes(begin: Begin) -> None:
    t = begin()
    assert t.applied_lsn() == 0
    assert t.dedup("self") is None
    t.set_applied_lsn(41)
    t.set_applied_lsn(42)
    t.set_dedup("self", SelfProposal(epoch=3, seq=9))
    t.set_dedup("p7", ForeignPartition(partition=7, seq=100))
    assert t.applied_lsn() == 42
    assert t.dedup("self") == SelfProposal(3, 9)
    assert t.dedup("p7") == ForeignPartition(7, 100)
    assert t.dedup("p8") is None
    t.commit()
    t = begin()
    assert (t.applied_lsn(), t.dedup("self"), t.dedup("p7"), t.dedup("p8")) == (
        42,
        SelfProposal(3, 9),
        ForeignPartition(7, 100),
        None,
    )
    t.set_dedup("self", SelfProposal(4, 0))
    assert t.dedup("self") == SelfProposal(4, 0)


def leader_announcement(begin: Begin) -> None:
    t = begin()
    assert t.leader() is None
    t.set_leader(AnnounceLeader(node=2, generation=5, epoch=3))
    assert t.leader() == AnnounceLeader(2, 5, 3)
    t.commit()
    t = begin()
    assert t.leader() == AnnounceLeader(2, 5, 3)
    t.set_leader(AnnounceLeader(node=1, generation=9, epoch=4))
    assert t.leader() == AnnounceLeader(1, 9, 4)


def counters_never_repeat(begin: Begin) -> None:
    t = begin()
    assert [t.next_inbox_seq(), t.next_inbox_seq(), t.next_outbox_index()] == [1, 2, 1]
    t.commit()
    t = begin()
    assert [t.next_outbox_index(), t.next_inbox_seq(), t.next_outbox_index()] == [2, 3, 3]
    t.commit()
    seen: list[int] = []
    for _ in range(3):
        t = begin()
        seen += [t.next_inbox_seq() for _ in range(4)]
        t.commit()
    assert seen == list(range(4, 16))
    assert begin().next_outbox_index() == 4


# --- invocation status --------------------------------------------------------------------------


def status_read_your_writes_and_delete(begin: Begin) -> None:
    t = begin()
    assert t.get_status(inv(1)) is None
    t.put_status(inv(1), status(1))
    t.put_status(inv(2), status(2))
    assert t.get_status(inv(1)) == status(1)
    t.put_status(inv(1), status(1, StatusKind.COMPLETED))
    assert t.get_status(inv(1)) == status(1, StatusKind.COMPLETED)
    t.delete_status(inv(2))
    assert t.get_status(inv(2)) is None
    t.delete_status(inv(3))  # deleting what is not there is no error
    t.commit()
    t = begin()
    assert t.get_status(inv(1)) == status(1, StatusKind.COMPLETED)
    assert t.get_status(inv(2)) is None
    t.delete_status(inv(1))
    assert t.get_status(inv(1)) is None
    t.put_status(inv(1), status(1))
    assert t.get_status(inv(1)) == status(1)
    t.delete_status(inv(1))
    t.commit()
    assert begin().get_status(inv(1)) is None


# --- journal ------------------------------------------------------------------------------------


def journal_order_and_from_index(begin: Begin) -> None:
    t = begin()
    assert list(t.journal(inv(1))) == []
    for i in [3, 0, 2, 1]:
        t.put_journal(inv(1), i, entry(i))
    t.put_journal(inv(2), 0, entry(50))
    assert list(t.journal(inv(1))) == [(i, entry(i)) for i in range(4)]
    assert list(t.journal(inv(1), 2)) == [(2, entry(2)), (3, entry(3))]
    t.commit()
    t = begin()
    t.put_journal(inv(1), 4, entry(4))
    t.put_journal(inv(1), 1, entry(41))  # overwrite a committed entry
    assert list(t.journal(inv(1))) == [
        (0, entry(0)),
        (1, entry(41)),
        (2, entry(2)),
        (3, entry(3)),
        (4, entry(4)),
    ]
    assert list(t.journal(inv(1), 3)) == [(3, entry(3)), (4, entry(4))]
    assert list(t.journal(inv(1), 5)) == []
    assert list(t.journal(inv(2))) == [(0, entry(50))]
    t.put_journal(inv(1), 300, entry(300))  # indexes order numerically, not as text
    assert [i for i, _ in t.journal(inv(1))] == [0, 1, 2, 3, 4, 300]


def journal_delete_then_put(begin: Begin) -> None:
    t = begin()
    for i in range(5):
        t.put_journal(inv(1), i, entry(i))
    t.put_journal(inv(2), 0, entry(9))
    t.commit()
    t = begin()
    t.put_journal(inv(1), 5, entry(5))  # pending, then cleared with the committed ones
    t.delete_journal(inv(1))
    assert list(t.journal(inv(1))) == []
    t.put_journal(inv(1), 0, entry(70))
    t.put_journal(inv(1), 1, entry(71))
    assert list(t.journal(inv(1))) == [(0, entry(70)), (1, entry(71))]
    assert list(t.journal(inv(2))) == [(0, entry(9))]
    t.commit()
    t = begin()
    assert list(t.journal(inv(1))) == [(0, entry(70)), (1, entry(71))]
    assert list(t.journal(inv(2))) == [(0, entry(9))]
    t.delete_journal(inv(2))
    t.delete_journal(inv(3))
    t.commit()
    assert list(begin().journal(inv(2))) == []


# --- state --------------------------------------------------------------------------------------


def state_read_your_writes_and_order(begin: Begin) -> None:
    t = begin()
    assert t.get_state("Counter", "a", b"n") is None
    assert list(t.all_state("Counter", "a")) == []
    names = [b"n", b"", b"\x00", b"\xff\xff", b"count", b"a\x00b", b"a"]
    for i, name in enumerate(names):
        t.put_state("Counter", "a", name, b"v%d" % i)
    t.put_state("Counter", "b", b"n", b"other key")
    t.put_state("Other", "a", b"n", b"other service")
    expected = sorted((name, b"v%d" % i) for i, name in enumerate(names))
    assert list(t.all_state("Counter", "a")) == expected
    t.commit()
    t = begin()
    assert list(t.all_state("Counter", "a")) == expected
    t.put_state("Counter", "a", b"n", b"new")
    t.put_state("Counter", "a", b"zz", b"last")
    t.delete_state("Counter", "a", b"count")
    t.delete_state("Counter", "a", b"missing")
    assert t.get_state("Counter", "a", b"n") == b"new"
    assert t.get_state("Counter", "a", b"count") is None
    merged = dict(expected)
    merged.update({b"n": b"new", b"zz": b"last"})
    del merged[b"count"]
    assert list(t.all_state("Counter", "a")) == sorted(merged.items())
    assert list(t.all_state("Counter", "b")) == [(b"n", b"other key")]
    assert list(t.all_state("Other", "a")) == [(b"n", b"other service")]
    t.commit()
    assert list(begin().all_state("Counter", "a")) == sorted(merged.items())


def state_keys_do_not_leak_into_each_other(begin: Begin) -> None:
    # Keys and services that are prefixes of one another, or differ only after a NUL.
    pairs = [
        ("S", "k"),
        ("S", "k\x00"),
        ("S", "k\x00x"),
        ("S", "ka"),
        ("S", ""),
        ("Sk", ""),
        ("S\x00k", ""),
        ("", "Sk"),
    ]
    t = begin()
    for i, (service, key) in enumerate(pairs):
        t.put_state(service, key, b"name", b"%d" % i)
    t.commit()
    t = begin()
    for i, (service, key) in enumerate(pairs):
        assert list(t.all_state(service, key)) == [(b"name", b"%d" % i)], (service, key)
    t.delete_all_state("S", "k")
    t.delete_all_state("S", "")
    t.commit()
    t = begin()
    for i, (service, key) in enumerate(pairs):
        want = [] if (service, key) in (("S", "k"), ("S", "")) else [(b"name", b"%d" % i)]
        assert list(t.all_state(service, key)) == want, (service, key)


def state_delete_all_then_put(begin: Begin) -> None:
    t = begin()
    for name in [b"a", b"b", b"c"]:
        t.put_state("Counter", "k", name, name * 2)
    t.put_state("Counter", "j", b"a", b"kept")
    t.commit()
    t = begin()
    t.put_state("Counter", "k", b"d", b"pending")
    t.delete_all_state("Counter", "k")
    assert list(t.all_state("Counter", "k")) == []
    assert t.get_state("Counter", "k", b"a") is None
    assert t.get_state("Counter", "k", b"d") is None
    t.put_state("Counter", "k", b"b", b"again")
    t.put_state("Counter", "k", b"e", b"new")
    assert t.get_state("Counter", "k", b"b") == b"again"
    assert t.get_state("Counter", "k", b"a") is None
    assert list(t.all_state("Counter", "k")) == [(b"b", b"again"), (b"e", b"new")]
    t.delete_state("Counter", "k", b"e")
    assert list(t.all_state("Counter", "k")) == [(b"b", b"again")]
    # Before the commit, another transaction still sees the committed state.
    assert list(begin().all_state("Counter", "k")) == [(b"a", b"aa"), (b"b", b"bb"), (b"c", b"cc")]
    t.commit()
    t = begin()
    assert list(t.all_state("Counter", "k")) == [(b"b", b"again")]
    assert list(t.all_state("Counter", "j")) == [(b"a", b"kept")]
    t.delete_all_state("Counter", "k")
    t.delete_all_state("Counter", "nobody")
    t.commit()
    assert list(begin().all_state("Counter", "k")) == []


# --- locks and inboxes --------------------------------------------------------------------------


def locks(begin: Begin) -> None:
    t = begin()
    assert t.get_lock("Counter", "k") is None
    t.put_lock("Counter", "k", inv(1))
    t.put_lock("Counter", "k2", inv(2))
    assert t.get_lock("Counter", "k") == inv(1)
    t.commit()
    t = begin()
    assert (t.get_lock("Counter", "k"), t.get_lock("Counter", "k2"), t.get_lock("Other", "k")) == (
        inv(1),
        inv(2),
        None,
    )
    t.delete_lock("Counter", "k")
    assert t.get_lock("Counter", "k") is None
    t.put_lock("Counter", "k", inv(3))
    assert t.get_lock("Counter", "k") == inv(3)
    t.delete_lock("Counter", "k2")
    t.commit()
    t = begin()
    assert (t.get_lock("Counter", "k"), t.get_lock("Counter", "k2")) == (inv(3), None)


def inbox_ordering(begin: Begin) -> None:
    t = begin()
    assert t.inbox_first("Counter", "k") is None
    seqs = [t.next_inbox_seq() for _ in range(3)]
    for n, seq in enumerate(seqs):
        t.inbox_push("Counter", "k", seq, inv(n))
    t.inbox_push("Counter", "other", t.next_inbox_seq(), inv(9))
    assert t.inbox_first("Counter", "k") == (seqs[0], inv(0))
    t.inbox_delete("Counter", "k", seqs[0])
    assert t.inbox_first("Counter", "k") == (seqs[1], inv(1))
    t.commit()
    t = begin()
    assert t.inbox_first("Counter", "k") == (seqs[1], inv(1))
    later = t.next_inbox_seq()
    t.inbox_push("Counter", "k", later, inv(5))
    t.inbox_delete("Counter", "k", seqs[1])
    t.inbox_delete("Counter", "k", seqs[2])
    assert t.inbox_first("Counter", "k") == (later, inv(5))
    t.inbox_delete("Counter", "k", later)
    assert t.inbox_first("Counter", "k") is None
    assert t.inbox_first("Counter", "other") == (4, inv(9))
    # Sequence numbers order numerically across byte boundaries.
    t.inbox_push("Counter", "n", 256, inv(256))
    t.inbox_push("Counter", "n", 255, inv(255))
    t.inbox_push("Counter", "n", 2**40, inv(1))
    assert t.inbox_first("Counter", "n") == (255, inv(255))
    t.commit()
    t = begin()
    assert t.inbox_first("Counter", "k") is None
    assert t.inbox_first("Counter", "n") == (255, inv(255))
    t.inbox_delete("Counter", "n", 255)
    assert t.inbox_first("Counter", "n") == (256, inv(256))


# --- timers -------------------------------------------------------------------------------------


def timer_ordering(begin: Begin) -> None:
    kinds = list(TimerKind)
    timers = [
        TimerKey(wake, inv(i), kind, completion)
        for wake in (5, 300, 2**40)
        for i in (2, 1)
        for kind in kinds
        for completion in (0, 7, 256)
    ]
    expected = sorted(
        timers, key=lambda t: (t.wake_up_ms, t.invocation_id, kinds.index(t.kind), t.completion_id)
    )
    shuffled = list(timers)
    random.Random(7).shuffle(shuffled)
    t = begin()
    assert list(t.timers()) == []
    for timer in shuffled[:30]:
        t.put_timer(timer)
    t.put_timer(shuffled[0])  # twice: still one timer
    assert list(t.timers()) == [x for x in expected if x in shuffled[:30]]
    t.commit()
    t = begin()
    for timer in shuffled[30:]:
        t.put_timer(timer)
    assert list(t.timers()) == expected
    gone = {shuffled[0], shuffled[40]}  # one committed, one pending
    for timer in gone:
        t.delete_timer(timer)
    t.delete_timer(TimerKey(1, inv(99), TimerKind.SLEEP, 1))
    assert list(t.timers()) == [x for x in expected if x not in gone]
    t.commit()
    assert list(begin().timers()) == [x for x in expected if x not in gone]


# --- outbox -------------------------------------------------------------------------------------


def outbox_truncation(begin: Begin) -> None:
    t = begin()
    assert list(t.outbox()) == []
    for _ in range(3):
        index = t.next_outbox_index()
        t.put_outbox(index, message(index))
    t.commit()
    t = begin()
    for _ in range(3):
        index = t.next_outbox_index()
        t.put_outbox(index, message(index))
    assert list(t.outbox()) == [(i, message(i)) for i in range(1, 7)]
    t.delete_outbox_up_to(2)
    assert list(t.outbox()) == [(i, message(i)) for i in range(3, 7)]
    t.delete_outbox_up_to(4)  # across committed (3) and pending (4) messages
    assert list(t.outbox()) == [(5, message(5)), (6, message(6))]
    t.delete_outbox_up_to(1)  # already gone: no-op
    t.commit()
    t = begin()
    assert list(t.outbox()) == [(5, message(5)), (6, message(6))]
    t.put_outbox(256, message(256))
    t.delete_outbox_up_to(255)
    assert list(t.outbox()) == [(256, message(256))]
    t.delete_outbox_up_to(2**64 - 1)
    assert list(t.outbox()) == []
    t.commit()
    t = begin()
    assert list(t.outbox()) == []
    assert t.next_outbox_index() == 7


# --- transactions -------------------------------------------------------------------------------


def write_everything(t: Tables) -> None:
    t.set_applied_lsn(10)
    t.set_dedup("self", SelfProposal(1, 1))
    t.put_status(inv(1), status(1))
    t.put_journal(inv(1), 0, entry(0))
    t.put_state("Counter", "k", b"n", b"1")
    t.put_lock("Counter", "k", inv(1))
    t.inbox_push("Counter", "k", t.next_inbox_seq(), inv(2))
    t.put_timer(TimerKey(100, inv(1), TimerKind.SLEEP, 1))
    t.put_outbox(t.next_outbox_index(), message(1))


def everything(t: Tables) -> tuple[object, ...]:
    return (
        t.applied_lsn(),
        t.dedup("self"),
        t.get_status(inv(1)),
        list(t.journal(inv(1))),
        t.get_state("Counter", "k", b"n"),
        list(t.all_state("Counter", "k")),
        t.get_lock("Counter", "k"),
        t.inbox_first("Counter", "k"),
        list(t.timers()),
        list(t.outbox()),
    )


EMPTY = (0, None, None, [], None, [], None, None, [], [])


def nothing_visible_before_commit(begin: Begin) -> None:
    writer = begin()
    write_everything(writer)
    written = everything(writer)
    assert written != EMPTY and all(v not in (None, [], 0) for v in written)
    assert everything(begin()) == EMPTY
    writer.commit()
    assert everything(begin()) == written


def uncommitted_transaction_leaves_nothing(begin: Begin) -> None:
    abandoned = begin()
    write_everything(abandoned)
    abandoned.next_inbox_seq()
    del abandoned
    t = begin()
    assert everything(t) == EMPTY
    assert t.next_inbox_seq() == 1


def no_writes_after_commit(begin: Begin) -> None:
    t = begin()
    t.put_state("Counter", "k", b"n", b"1")
    t.commit()
    for write in (
        lambda: t.put_state("Counter", "k", b"n", b"2"),
        lambda: t.set_applied_lsn(3),
        lambda: t.put_timer(TimerKey(1, inv(1), TimerKind.SLEEP)),
        lambda: t.delete_status(inv(1)),
        lambda: t.delete_all_state("Counter", "k"),
        lambda: t.delete_journal(inv(1)),
        t.commit,
    ):
        try:
            write()
        except RuntimeError:
            pass
        else:
            raise AssertionError("a committed transaction took another write or commit")
    assert list(begin().all_state("Counter", "k")) == [(b"n", b"1")]


def empty_commit(begin: Begin) -> None:
    begin().commit()
    t = begin()
    t.applied_lsn()
    t.commit()
    assert everything(begin()) == EMPTY


SUITE = [
    fsm_defaults_and_read_your_writes,
    leader_announcement,
    counters_never_repeat,
    status_read_your_writes_and_delete,
    journal_order_and_from_index,
    journal_delete_then_put,
    state_read_your_writes_and_order,
    state_keys_do_not_leak_into_each_other,
    state_delete_all_then_put,
    locks,
    inbox_ordering,
    timer_ordering,
    outbox_truncation,
    nothing_visible_before_commit,
    uncommitted_transaction_leaves_nothing,
    no_writes_after_commit,
    empty_commit,
]

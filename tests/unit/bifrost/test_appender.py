"""The ordered appender core: pipelining, exactly-once resends, re-append order after a seal,
reconfiguration policy, deadlines."""

from __future__ import annotations

from bifrost.core import (
    Appender,
    AppenderConfig,
    BatchAcked,
    BatchRefused,
    Chain,
    Enqueue,
    GenerationalNodeId,
    LogletParams,
    NewBatch,
    RefusalReason,
    Rejected,
    RejectReason,
    Resolved,
    Tail,
    TailUnavailable,
    Tick,
    WantTail,
    loglet_id,
)

N1 = GenerationalNodeId(1, 1)
P0 = LogletParams(loglet_id(1, 0), N1, 1, (1,))
P1 = LogletParams(loglet_id(1, 1), N1, 1, (1,))
CHAIN0 = Chain.new(1, P0)


def enqueues(out: list) -> list[tuple[int, int, int, int]]:
    return [
        (o.params.loglet_id & 0xFF, o.batch_id, o.first_seq, o.prev_seq)
        for o in out
        if isinstance(o, Enqueue)
    ]


def started() -> Appender:
    a = Appender(AppenderConfig(deadline_ms=10_000, seal_grace_ms=1000), now_ms=0)
    out = a.step(NewBatch(1, (b"a", b"b")))
    assert [o for o in out if isinstance(o, WantTail)] == [WantTail(None, False)]
    out = a.step(Tail(1, CHAIN0.tail))
    assert enqueues(out) == [(0, 1, 1, 0)]
    return a


def test_batches_are_pipelined_and_chained_by_sequence_numbers() -> None:
    a = started()
    assert enqueues(a.step(NewBatch(2, (b"c",)))) == [(0, 2, 3, 2)]
    assert enqueues(a.step(NewBatch(3, (b"d",)))) == [(0, 3, 4, 3)]
    out = a.step(BatchAcked(1, P0.loglet_id, 2))
    assert [o for o in out if isinstance(o, Resolved)] == [Resolved(1, 1)]


def test_a_lost_reply_resends_everything_unacknowledged_in_order() -> None:
    a = started()
    a.step(NewBatch(2, (b"c",)))
    a.step(BatchAcked(1, P0.loglet_id, 2))
    out = a.step(BatchRefused(2, P0.loglet_id, RefusalReason.UNREACHABLE))
    assert enqueues(out) == []
    out = a.step(Tick(100))
    # chained after the last acknowledged batch: the sequencer answers a copy from memory
    assert enqueues(out) == [(0, 2, 3, 2)]


def test_after_a_seal_unacknowledged_batches_go_to_the_next_segment_in_order() -> None:
    a = started()
    a.step(NewBatch(2, (b"c",)))
    out = a.step(BatchRefused(1, P0.loglet_id, RefusalReason.SEALED))
    assert [o for o in out if isinstance(o, WantTail)] == [WantTail(1, False)]
    out = a.step(NewBatch(3, (b"d",)))
    assert enqueues(out) == [], "nothing goes to a sealed loglet"
    # nobody reconfigured within the grace: ask to reconfigure
    a.step(Tail(1, CHAIN0.tail))
    out = a.step(Tick(1000))
    assert [o for o in out if isinstance(o, WantTail)] == [WantTail(1, True)]
    chain1 = CHAIN0.append_segment(3, P1)
    out = a.step(Tail(2, chain1.tail))
    assert enqueues(out) == [(1, 1, 1, 0), (1, 2, 3, 2), (1, 3, 4, 3)]
    assert a.reappended_records == 3
    out = a.step(BatchAcked(1, P1.loglet_id, 2))
    assert [o for o in out if isinstance(o, Resolved)] == [Resolved(1, 3)]


def test_an_ack_from_the_sealed_loglet_after_the_switch_keeps_the_earliest_copy() -> None:
    a = started()
    a.step(BatchRefused(1, P0.loglet_id, RefusalReason.SEQUENCER_GONE))
    chain1 = CHAIN0.append_segment(5, P1)
    a.step(Tail(2, chain1.tail))
    out = a.step(BatchAcked(1, P0.loglet_id, 2))
    assert [o for o in out if isinstance(o, Resolved)] == [Resolved(1, 1)]
    assert a.step(BatchAcked(1, P1.loglet_id, 2)) == []


def test_a_batch_the_old_loglet_acknowledged_twice_stays_in_the_new_loglets_chain() -> None:
    a = started()
    a.step(NewBatch(2, (b"c",)))
    a.step(BatchRefused(1, P0.loglet_id, RefusalReason.SEQUENCER_GONE))
    chain1 = CHAIN0.append_segment(5, P1)
    assert enqueues(a.step(Tail(2, chain1.tail))) == [(1, 1, 1, 0), (1, 2, 3, 2)]
    # the old loglet acknowledges batch 1, and its reply comes twice
    assert [o for o in a.step(BatchAcked(1, P0.loglet_id, 2)) if isinstance(o, Resolved)] == [Resolved(1, 1)]
    assert a.step(BatchAcked(1, P0.loglet_id, 2)) == []
    # the new sequencer took batch 1 but refused batch 2 (it overtook 1 on the way): the resend
    # chains batch 2 after batch 1 still, else the sequencer refuses it for good
    a.step(BatchRefused(2, P1.loglet_id, RefusalReason.OUT_OF_ORDER))
    assert enqueues(a.step(Tick(100))) == [(1, 1, 1, 0), (1, 2, 3, 2)]


def test_a_dead_sequencer_or_full_disks_reconfigure_at_once() -> None:
    for reason in (RefusalReason.SEQUENCER_GONE, RefusalReason.WRITE_UNAVAILABLE):
        a = started()
        out = a.step(BatchRefused(1, P0.loglet_id, reason))
        assert [o for o in out if isinstance(o, WantTail)] == [WantTail(1, True)]


def test_no_writable_nodeset_fails_pending_batches_at_once() -> None:
    a = started()
    a.step(BatchRefused(1, P0.loglet_id, RefusalReason.WRITE_UNAVAILABLE))
    out = a.step(TailUnavailable("no writable log-servers", fatal=True))
    assert out == [Rejected(1, RejectReason.UNAVAILABLE, "no writable log-servers")]


def test_an_operator_sealed_log_rejects_appends() -> None:
    a = started()
    a.step(BatchRefused(1, P0.loglet_id, RefusalReason.SEALED))
    sealed = CHAIN0.seal(3)
    out = a.step(Tail(2, sealed.tail, sealed=True))
    assert [type(o) for o in out] == [Rejected] and out[0].reason is RejectReason.LOG_SEALED


def test_batches_fail_at_their_deadline() -> None:
    a = Appender(AppenderConfig(deadline_ms=500), now_ms=0)
    a.step(NewBatch(1, (b"a",)))
    a.step(TailUnavailable("metadata unavailable"))
    out = a.step(Tick(500))
    assert [o for o in out if isinstance(o, Rejected)] == [
        Rejected(1, RejectReason.DEADLINE, "no acknowledgement before the deadline")
    ]

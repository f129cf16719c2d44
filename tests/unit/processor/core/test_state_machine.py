"""Rules of `StateMachine.apply` that read better as assertions than as transcripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.core import (
    AnnounceLeader,
    CallTarget,
    Envelope,
    HandlerType,
    Invoke,
    JournalCommand,
    MemoryStore,
    RecordFormatError,
    SelfProposal,
    ServiceInvocation,
    ServiceType,
    StateMachine,
    Target,
    TruncateOutbox,
    describe_store,
    encode_envelope,
)
from processor.ids import InvocationId, idempotent_uuid, partition_key_of
from processor.protocol import MessageType, pb
from tests.datadriven import run_file

from .transcript import Env

TESTDATA = Path(__file__).parent / "testdata"


def recorded_log(name: str) -> list[Envelope | bytes]:
    """The records a transcript appended to partition 0, in log order."""
    env = Env()
    run_file(TESTDATA / name, env.handle)
    return env.partitions[0].log


def apply_all(
    log: list[Envelope | bytes], batch: int, machines: list[StateMachine] | None = None
) -> MemoryStore:
    store = MemoryStore()
    machines = machines or [StateMachine()]
    for start in range(0, len(log), batch):
        txn = store.transaction()
        for lsn in range(start + 1, min(len(log), start + batch) + 1):
            machine = machines[lsn % len(machines)]
            record = log[lsn - 1]
            if isinstance(record, bytes):
                machine.apply_record(txn, lsn, record, partition=0, num_partitions=1)
            else:
                machine.apply(txn, lsn, record, partition=0, num_partitions=1)
        txn.commit()
    return store


@pytest.mark.parametrize(
    "name", ["counter.txt", "run.txt", "idempotency.txt", "leader.txt", "duplicates.txt"]
)
def test_batching_and_instances_do_not_matter(name: str):
    """One record per transaction or all in one; one state machine or a new one per record
    (a restart): the tables come out the same, so nothing lives outside them."""
    log = [r for r in recorded_log(name) if not isinstance(r, bytes)]
    expected = describe_store(apply_all(log, 1))
    assert describe_store(apply_all(log, len(log))) == expected
    assert describe_store(apply_all(log, 3, [StateMachine(), StateMachine()])) == expected


def test_every_record_moves_the_applied_lsn_and_an_old_one_changes_nothing():
    store = MemoryStore()
    drops: list[str] = []
    machine = StateMachine(
        on_drop=lambda envelope, reason: drops.append(f"{type(envelope.command).__name__}: {reason}")
    )
    truncate = Envelope(TruncateOutbox(3), 5)  # no dedup: a leader's command, dropped
    txn = store.transaction()
    assert machine.apply(txn, 7, truncate, partition=0, num_partitions=1) == []
    txn.commit()
    assert store.fsm == {"applied_lsn": 7}
    assert drops == [
        "TruncateOutbox: TruncateOutbox is the leader's command: it must come as a self proposal"
    ]
    txn = store.transaction()
    machine.apply(txn, 7, truncate, partition=0, num_partitions=1)
    txn.commit()
    assert store.fsm == {"applied_lsn": 7}
    assert drops[-1] == "TruncateOutbox: LSN 7 is already applied"


def test_records_are_decoded_or_refused():
    store = MemoryStore()
    machine = StateMachine()
    target = Target("Greeter", "greet", ServiceType.SERVICE)
    inv = InvocationId(5, 9).to_bytes()
    record = encode_envelope(Envelope(Invoke(ServiceInvocation(inv, target, "dp1", b"x")), 1))
    txn = store.transaction()
    actions = machine.apply_record(txn, 1, record, partition=0, num_partitions=1)
    assert [type(a).__name__ for a in actions] == ["InvokeAction"]
    with pytest.raises(RecordFormatError, match="format 2"):
        machine.apply_record(txn, 2, b"\x02" + record[1:], partition=0, num_partitions=1)
    with pytest.raises(RecordFormatError, match="empty"):
        machine.apply_record(txn, 2, b"", partition=0, num_partitions=1)


def call_child(parent: bytes, index: int, ik: str | None) -> ServiceInvocation:
    """Apply one Call command of ``parent`` at ``index`` on a fresh store; return the child."""
    store = MemoryStore()
    machine = StateMachine()
    caller = Target("Caller", "run", ServiceType.SERVICE)
    callee = Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE, "k")
    txn = store.transaction()
    machine.apply(
        txn,
        1,
        Envelope(Invoke(ServiceInvocation(parent, caller, "dp1", b"")), 1),
        partition=0,
        num_partitions=1,
    )
    machine.apply(
        txn, 2, Envelope(AnnounceLeader(1, 1, 1), 1, SelfProposal(1, 0)), partition=0, num_partitions=1
    )
    for i in range(1, index):
        run = pb.RunCommandMessage(result_completion_id=100 + i).SerializeToString()
        machine.apply(
            txn,
            2 + i,
            Envelope(JournalCommand(parent, i, MessageType.RUN_COMMAND, run), 1, SelfProposal(1, i)),
            partition=0,
            num_partitions=1,
        )
    fields = {"idempotency_key": ik} if ik is not None else {}
    call = pb.CallCommandMessage(
        service_name="Counter",
        handler_name="add",
        key="k",
        invocation_id_notification_idx=1,
        result_completion_id=2,
        **fields,
    ).SerializeToString()
    command = JournalCommand(parent, index, MessageType.CALL_COMMAND, call, CallTarget(callee, "dp1"))
    actions = machine.apply(
        txn, 2 + index, Envelope(command, 1, SelfProposal(1, index)), partition=0, num_partitions=1
    )
    child = actions[-1].message.command  # type: ignore[union-attr]
    assert isinstance(child, ServiceInvocation)
    return child


def test_a_call_gets_the_same_child_id_on_every_replica():
    parent = InvocationId(77, 1234).to_bytes()
    first = call_child(parent, 1, None)
    assert call_child(parent, 1, None) == first
    assert call_child(parent, 2, None).invocation_id != first.invocation_id
    assert call_child(InvocationId(77, 1235).to_bytes(), 1, None).invocation_id != first.invocation_id
    child = InvocationId.from_bytes(first.invocation_id)
    assert child.partition_key == partition_key_of("k")  # keyed: lives with its key
    keyed = InvocationId.from_bytes(call_child(parent, 1, "ik-1").invocation_id)
    assert keyed == InvocationId(partition_key_of("k"), idempotent_uuid("Counter", "add", "ik-1", "k"))
    assert call_child(InvocationId(99, 1).to_bytes(), 3, "ik-1").invocation_id == keyed.to_bytes()

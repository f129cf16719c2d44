"""What applying one record costs the partition state machine, per command kind, on MemoryTables.

    python3 -m bench.state_machine [--invocations N] [--batch B] [--json]

N invocations of a virtual object's exclusive handler (one key each, so each takes a lock) go
through Invoke, JournalCommand(SetState), JournalCommand(Run), RunCompletion, JournalCommand(Output)
and End. The records are encoded up front; each phase applies one kind for all invocations, B
records per transaction, and reports microseconds per record for ``apply`` on an already decoded
envelope, for ``apply_record`` (decode included) and for the transaction commit's share. The
best of a few repetitions is printed (the least disturbed by other processes). RocksDB's cost is not in these figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable

from processor.core import (
    AnnounceLeader,
    Command,
    End,
    Envelope,
    HandlerType,
    IngressSink,
    Invoke,
    JournalCommand,
    MemoryStore,
    RunCompletion,
    SelfProposal,
    ServiceInvocation,
    ServiceType,
    StateMachine,
    Target,
    decode_envelope,
    encode_envelope,
)
from processor.ids import InvocationId, partition_key_of
from processor.protocol import MessageType, pb

PHASES = ("Invoke", "SetState", "Run", "RunCompletion", "Output", "End")


def build(n: int) -> tuple[list[bytes], dict[str, list[bytes]]]:
    """The announcement, then per phase the encoded records of all ``n`` invocations."""
    ids = [InvocationId(partition_key_of(f"k{i}"), i + 1).to_bytes() for i in range(n)]
    set_state = pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"1")).SerializeToString()
    run = pb.RunCommandMessage(result_completion_id=1, name="step").SerializeToString()
    output = pb.OutputCommandMessage(value=pb.Value(content=b"1")).SerializeToString()
    seq = 0

    def proposal(command: Command) -> bytes:
        nonlocal seq
        seq += 1
        return encode_envelope(Envelope(command, 1_000, SelfProposal(1, seq)))

    phases: dict[str, Callable[[int, bytes], bytes]] = {
        "Invoke": lambda i, inv: encode_envelope(
            Envelope(
                Invoke(
                    ServiceInvocation(
                        inv,
                        Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE, f"k{i}"),
                        "dp1",
                        b'"1"',
                        headers=(("x-restate-ingress-path", "/Counter/k/add"),),
                        response_sink=IngressSink(1, 1, i),
                    )
                ),
                1_000,
            )
        ),
        "SetState": lambda i, inv: proposal(JournalCommand(inv, 1, MessageType.SET_STATE_COMMAND, set_state)),
        "Run": lambda i, inv: proposal(JournalCommand(inv, 2, MessageType.RUN_COMMAND, run)),
        "RunCompletion": lambda i, inv: proposal(RunCompletion(inv, 1, value=b'"v"')),
        "Output": lambda i, inv: proposal(JournalCommand(inv, 3, MessageType.OUTPUT_COMMAND, output)),
        "End": lambda i, inv: proposal(End(inv)),
    }
    announce = [encode_envelope(Envelope(AnnounceLeader(1, 1, 1), 1_000, SelfProposal(1, 0)))]
    return announce, {name: [make(i, inv) for i, inv in enumerate(ids)] for name, make in phases.items()}


def measure(n: int, batch: int) -> dict[str, dict[str, float]]:
    announce, phases = build(n)
    machine = StateMachine()
    store = MemoryStore()
    lsn = 0

    def apply_phase(records: list[bytes], decoded: bool) -> tuple[float, float]:
        nonlocal lsn
        envelopes = [decode_envelope(r) for r in records] if decoded else records
        apply_s = commit_s = 0.0
        for start in range(0, len(envelopes), batch):
            txn = store.transaction()
            t0 = time.perf_counter()
            for item in envelopes[start : start + batch]:
                lsn += 1
                if decoded:
                    machine.apply(txn, lsn, item, partition=0, num_partitions=1)  # type: ignore[arg-type]
                else:
                    machine.apply_record(txn, lsn, item, partition=0, num_partitions=1)  # type: ignore[arg-type]
            t1 = time.perf_counter()
            txn.commit()
            commit_s += time.perf_counter() - t1
            apply_s += t1 - t0
        return apply_s / len(records) * 1e6, commit_s / len(records) * 1e6

    out: dict[str, dict[str, float]] = {}
    for decoded in (True, False):
        store, lsn = MemoryStore(), 0
        apply_phase(announce, decoded)
        for name in PHASES:
            apply_us, commit_us = apply_phase(phases[name], decoded)
            row = out.setdefault(name, {})
            row["apply_us" if decoded else "apply_record_us"] = apply_us
            row["commit_us"] = commit_us
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.state_machine", description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=32, help="records per transaction (Restate's default batch)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    gc.disable()  # as timeit does: a collection landing in one phase would skew it
    try:
        runs = [measure(args.invocations, args.batch) for _ in range(args.repeat)]
    finally:
        gc.enable()
    figures = {
        name: {k: round(min(r[name][k] for r in runs), 2) for k in runs[0][name]} for name in PHASES
    }
    if args.json:
        print(json.dumps({"invocations": args.invocations, "batch": args.batch, "per_record": figures}))
        return 0
    print(f"{args.invocations} invocations, {args.batch} records per transaction, best of {args.repeat} runs")
    print(f"{'record':<14}{'apply µs':>10}{'+decode µs':>12}{'commit µs':>11}")
    for name in PHASES:
        f = figures[name]
        print(f"{name:<14}{f['apply_us']:>10.1f}{f['apply_record_us']:>12.1f}{f['commit_us']:>11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

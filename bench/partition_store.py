"""Partition-store commit cost, beside a synced 4-KiB write measured in the same run.

    python -m bench.partition_store [--dir DIR] [--commits N] [--json]

One transaction = what the processor commits for a batch of applied records. A record here is a
typical invocation step: read the status, put the status, 2 journal entries and 1 state value;
the batch adds the applied LSN and a dedup mark (7 writes for one record). Reported per
durability mode (processor/store/partition_store.py explains them):

- commit latency p50/p99 of one-record batches (``commit()`` alone, and the whole transaction:
  reads, encoding, commit);
- transactions and records per second at 1, 8 and 32 records per batch, closed loop, one writer;
- the floor: 4-KiB write + fsync on the same disk, sampled right before each mode.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.floor import fsync_samples
from bench.stats import summary_ms
from processor.core import (
    HandlerType,
    IngressSink,
    InvocationStatus,
    JournalEntry,
    SelfProposal,
    ServiceInvocation,
    ServiceType,
    StatusKind,
    Target,
)
from processor.store import Durability, PartitionHandle, PartitionStore

BATCH_SIZES = (1, 8, 32)
DEFAULT_COMMITS = 3000
WARMUP = 200
PARTITION = 0


def invocation_id(n: int) -> bytes:
    return (n * 0x9E3779B97F4A7C15 % 2**64).to_bytes(8, "big") + n.to_bytes(16, "big")


def invocation_status(n: int, journal_length: int) -> InvocationStatus:
    target = Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE, key=f"key-{n % 1024}")
    invocation = ServiceInvocation(
        invocation_id(n), target, "dp_14b5vmi8nn1dr0ck0e2vmrm", b'{"amount": 1}', response_sink=IngressSink(1, 1, n)
    )
    return InvocationStatus(
        StatusKind.INVOKED, invocation, created_at_ms=1_700_000_000_000, modified_at_ms=1_700_000_000_000 + n,
        journal_length=journal_length, commands=journal_length - 1,
    )


class Workload:
    """Invocation steps on a rotating set of invocations, one LSN per record."""

    def __init__(self, part: PartitionHandle) -> None:
        self.part = part
        self.lsn = part.applied_lsn()
        self.entry = JournalEntry(0x0400, b"\x0a\x05value" + bytes(90))

    def transaction(self, records: int) -> tuple[float, float]:
        """One batch of ``records`` steps; returns (whole transaction s, commit s)."""
        t0 = time.perf_counter()
        txn = self.part.transaction()
        for _ in range(records):
            self.lsn += 1
            n = self.lsn % 4096
            inv = invocation_id(n)
            old = txn.get_status(inv)
            length = 1 if old is None else old.journal_length
            txn.put_status(inv, invocation_status(n, length + 2))
            txn.put_journal(inv, length, self.entry)
            txn.put_journal(inv, length + 1, self.entry)
            txn.put_state("Counter", f"key-{n % 1024}", b"count", b"%d" % self.lsn)
        txn.set_applied_lsn(self.lsn)
        txn.set_dedup("self", SelfProposal(1, self.lsn))
        t1 = time.perf_counter()
        txn.commit()
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1


def measure_mode(directory: Path, durability: Durability, commits: int) -> dict[str, object]:
    floor = fsync_samples(directory, n=300)
    with PartitionStore(directory / f"store-{durability.value}", durability) as store:
        work = Workload(store.partition(PARTITION))
        for _ in range(WARMUP):
            work.transaction(1)
        whole, commit = zip(*(work.transaction(1) for _ in range(commits)), strict=True)
        throughput = {}
        for size in BATCH_SIZES:
            n = max(commits // size, 50)
            t0 = time.perf_counter()
            for _ in range(n):
                work.transaction(size)
            elapsed = time.perf_counter() - t0
            throughput[size] = {"txn_per_s": n / elapsed, "records_per_s": n * size / elapsed}
    return {
        "durability": durability.value,
        "fsync_4k": summary_ms(floor),
        "commit": summary_ms(commit),
        "transaction": summary_ms(whole),
        "throughput": throughput,
    }


def render(results: list[dict]) -> str:  # type: ignore[type-arg]
    lines = [
        "one-record batch (status put, 2 journal entries, 1 state put, applied LSN, dedup), ms:",
        f"{'durability':<10} {'commit p50':>10} {'p99':>7} {'txn p50':>8} {'p99':>7} {'fsync4k p50':>11} {'p99':>7}",
    ]
    for r in results:
        c, t, f = r["commit"], r["transaction"], r["fsync_4k"]
        lines.append(
            f"{r['durability']:<10} {c['p50_ms']:>10.3f} {c['p99_ms']:>7.3f} {t['p50_ms']:>8.3f} {t['p99_ms']:>7.3f}"
            f" {f['p50_ms']:>11.3f} {f['p99_ms']:>7.3f}"
        )
    lines.append("")
    lines.append("throughput, one writer (transactions/s | records/s):")
    lines.append(f"{'durability':<10} " + " ".join(f"{'batch ' + str(s):>20}" for s in BATCH_SIZES))
    for r in results:
        cells = [f"{v['txn_per_s']:>8.0f} | {v['records_per_s']:>9.0f}" for v in r["throughput"].values()]
        lines.append(f"{r['durability']:<10} " + " ".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.partition_store", description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help="where the stores go (default: a fresh temporary directory)")
    p.add_argument("--commits", type=int, default=DEFAULT_COMMITS, help="one-record commits measured per mode")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    if args.commits < 1:
        print("error: --commits must be at least 1", file=sys.stderr)
        return 2
    directory = Path(tempfile.mkdtemp(prefix="bench-partition-store-", dir=args.dir))
    try:
        results = [measure_mode(directory, d, args.commits) for d in (Durability.WAL, Durability.WAL_SYNC, Durability.NO_WAL)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

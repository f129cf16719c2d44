"""`durastate chaos --nodes 3 --duration SECONDS --seed S [--nemesis NAME...] [--json]`.

Exit status: 0 when the checker found nothing, 1 on any violation or harness failure, 2 on
usage errors. Nemeses that cannot run here are listed as skipped with the reason; they never
count as passed.

Network nemeses need a private network namespace: unless ``--no-netns`` is given, the command
re-executes itself under ``unshare -n`` (root only), where the cluster, the workload and the
iptables rules all live and die together. Without it those nemeses are skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from chaos.nemesis import PARTITIONS, PROXIED
from chaos.netfault import can_unshare, in_private_netns, netns_command
from chaos.runner import Report, run_chaos
from chaos.schedule import ALL_NEMESES, make_schedule

USAGE_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="durastate chaos",
        description="Jepsen-style chaos run against a local cluster: workload + nemeses + checker.",
    )
    p.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of faults (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seeds the fault schedule (default 0)")
    p.add_argument(
        "--nemesis",
        action="append",
        dest="nemeses",
        metavar="NAME",
        help=f"repeatable; default all: {', '.join(ALL_NEMESES)}",
    )
    p.add_argument("--base-dir", type=Path, dest="base_dir", help="cluster data dir (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--print-schedule", action="store_true", help="print the fault schedule and exit")
    p.add_argument("--no-netns", action="store_true", help="do not re-execute under unshare -n")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def render(report: Report) -> str:
    r = report.result
    lines = [
        f"chaos run: {report.nodes} nodes, {report.duration_s:g}s, seed {report.seed}, "
        f"wall {report.wall_s:.1f}s, data in {report.base_dir}",
        "",
        _table(
            [
                "operations",
                "acknowledged",
                "indeterminate",
                "lost",
                "divergent",
                "duplicates",
                "phantoms",
                "seq-mismatch",
                "tail-regress",
                "max-unavail-s",
            ],
            [
                [
                    r.operations,
                    r.acked,
                    r.indeterminate,
                    r.lost,
                    r.divergent,
                    r.duplicates,
                    r.phantoms,
                    r.sequence_mismatches,
                    r.tail_regressions,
                    f"{report.max_unavailable_s:.2f}",
                ]
            ],
        ),  # fmt: skip
        "",
        _table(
            ["nemesis", "status", "faults", "longest-unavailability-s"],
            [
                [name, v["status"], v["faults"], f"{v['max_unavailable_s']:.2f}"]
                for name, v in report.per_nemesis().items()
            ],
        ),  # fmt: skip
        "",
        f"liveness after healing: {report.liveness_s:.2f}s",
    ]
    for v in r.violations:
        lines.append(f"VIOLATION {v.kind} log {v.log_id}: {v.message}")
    for kind, n in r.unlisted.items():
        lines.append(f"... and {n} more {kind} violations")
    for example in r.duplicate_examples[:5]:
        lines.append(f"duplicate (at-least-once re-append, not a violation): {example}")
    for e in report.errors:
        lines.append(f"ERROR {e}")
    lines.append("PASS" if report.ok else "FAIL")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return USAGE_EXIT if e.code else 0
    nemeses: list[str] = args.nemeses or list(ALL_NEMESES)
    unknown = [n for n in nemeses if n not in ALL_NEMESES]
    if unknown:
        print(
            f"durastate chaos: unknown nemesis {', '.join(unknown)}; known: {', '.join(ALL_NEMESES)}",
            file=sys.stderr,
        )
        return USAGE_EXIT
    if args.nodes < 3:
        print(
            "durastate chaos: --nodes must be at least 3 (replication 2 must survive one fault)",
            file=sys.stderr,
        )
        return USAGE_EXIT
    if args.duration <= 0:
        print("durastate chaos: --duration must be positive", file=sys.stderr)
        return USAGE_EXIT
    if args.print_schedule:
        names = [f"n{i}" for i in range(1, args.nodes + 1)]
        for f in make_schedule(args.seed, args.duration, nemeses, names, [1, 2, 3]):
            print(f"{f.start_s:8.2f}s  {f.nemesis:20} {f.target:16} {f.duration_s:.2f}s")
        return 0

    wants_net = any(n in PARTITIONS or n in PROXIED for n in nemeses)
    if wants_net and not args.no_netns and not in_private_netns() and can_unshare() is None:
        # Run again in a private network namespace: the iptables rules must not touch the host.
        cmd = netns_command([sys.executable, "-m", "chaos", *(argv if argv is not None else sys.argv[1:])])
        child = subprocess.Popen(cmd, env=os.environ.copy())
        # Ctrl-C reaches the child too (same process group); it stops its cluster and exits.
        # Waiting it out here, instead of killing it, is what lets it clean up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return child.wait()

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    report = run_chaos(args.nodes, args.duration, args.seed, nemeses, args.base_dir)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

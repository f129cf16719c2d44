"""Invocations through the invoker against the official Python SDK, with no log and no store.

    python -m bench.invoker [--invocations N] [--json] [--no-uvloop] [--profile]

Run from a checkout: it serves ``tests/sdk_services/invoker_suite.py`` with hypercorn in a
subprocess and drives it through ``processor.invoker.Invoker`` with the in-memory partition
double of the tests (tests/unit/processor/invoker/partition_double.py: effects are "committed"
and applied one loop turn after they are proposed), so the figures are the invoker's and the
SDK's alone. Closed loop: ``c`` tasks each start an invocation and wait for its result.

Workloads: ``noop`` (a handler that returns at once) and ``3 x run`` (three ``ctx.run`` steps).
Transports: ``h2c bidi`` (the deployment discovered over h2c, the default), ``h2c rr`` (the same
deployment registered as request/response: every step suspends and resumes, so the gap to
``h2c bidi`` is what bidi saves per step) and ``http/1.1 rr``.

Columns: invocations per second, p50/p99 latency, attempts per invocation, and CPU per
invocation: ``client us`` is this process (invoker, transport, partition double, load loop),
``server us`` is hypercorn plus the SDK. Below the table, the attempt core alone: the same
frames fed in memory. ``--profile`` runs ``3 x run`` over h2c bidi under cProfile and shows
where this process's time goes, grouped by component.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

import msgspec

from bench.stats import percentile
from bench.transport import CpuMeter
from metadata.schema import ProtocolType, Schema
from node.ports import free_ports
from processor.core import JournalEntry, ServiceType, Target
from processor.invoker.core import (
    Attempt,
    Begin,
    CommandJournaled,
    DataReceived,
    Mode,
    Notification,
    ResponseHeaders,
    RunAcked,
)
from processor.invoker.invoker import Invoker
from processor.invoker.transport import Transport
from processor.protocol import MessageType, content_type, encode, pb
from tests.support.sdk_server import AsgiServer, scratch_dir
from tests.unit.processor.invoker.partition_double import PartitionDouble
from tests.unit.processor.invoker.sdk_env import DEPLOYMENT_ID, discover

APP = "tests.sdk_services.invoker_suite:app"
WORKLOADS = {
    "noop": (Target("Steps", "noop", ServiceType.SERVICE), b""),
    "3 x run": (Target("Steps", "three", ServiceType.SERVICE), b'"x"'),
}
MODES = ("h2c bidi", "h2c rr", "http/1.1 rr")
WARMUP = 100


@dataclass
class Row:
    mode: str
    workload: str
    concurrency: int
    invocations_per_s: float
    p50_ms: float
    p99_ms: float
    attempts_per_invocation: float
    client_us: float
    server_us: float | None


def request_response(schema: Schema) -> Schema:
    """The same deployment, registered as REQUEST_RESPONSE."""
    deployment = schema.deployments[DEPLOYMENT_ID]
    rr = msgspec.structs.replace(deployment, protocol_type=ProtocolType.REQUEST_RESPONSE)
    return Schema({DEPLOYMENT_ID: rr}, schema.active)


async def closed_loop(
    meter: CpuMeter,
    mode: str,
    workload: str,
    concurrency: int,
    total: int,
    schema: Schema,
    transport: Transport,
) -> Row:
    partition = PartitionDouble()
    invoker = Invoker(transport, lambda: schema, partition)
    partition.invoker = invoker
    invoker.start()
    target, argument = WORKLOADS[workload]

    async def one() -> None:
        invocation_id = partition.invoke(target, DEPLOYMENT_ID, argument)
        result = await partition.result(invocation_id)
        if result.failure is not None:
            raise AssertionError(f"{workload} failed: {result.failure}")

    for _ in range(WARMUP):
        await one()
    samples: list[float] = []
    per_task = max(1, total // concurrency)

    async def worker() -> None:
        for _ in range(per_task):
            t0 = time.perf_counter()
            await one()
            samples.append(time.perf_counter() - t0)

    attempts0 = invoker.stats.attempts_started
    start, wall0 = meter.read(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    end = meter.read()
    await invoker.stop()
    n = len(samples)
    return Row(
        mode,
        workload,
        concurrency,
        n / wall,
        percentile(samples, 50) * 1e3,
        percentile(samples, 99) * 1e3,
        (invoker.stats.attempts_started - attempts0) / n,
        ((end[0] - start[0]) + (end[1] - start[1])) / n * 1e6,
        None if start[2] is None or end[2] is None else (end[2] - start[2]) / n * 1e6,
    )


async def schemas(transport: Transport, port: int) -> dict[str, Schema]:
    h2c = await discover(transport, "127.0.0.1", port, http11=False)
    http11 = await discover(transport, "127.0.0.1", port, http11=True)
    return {"h2c bidi": h2c, "h2c rr": request_response(h2c), "http/1.1 rr": http11}


async def measure(port: int, server_pid: int, total: int) -> list[Row]:
    meter = CpuMeter(server_pid)
    rows = []
    async with Transport() as transport:
        by_mode = await schemas(transport, port)
        for mode in MODES:
            for workload in WORKLOADS:
                for concurrency in (1, 32):
                    rows.append(
                        await closed_loop(meter, mode, workload, concurrency, total, by_mode[mode], transport)
                    )
    return rows


def core_only(workload: str, n: int) -> float:
    """CPU us per invocation of the attempt core alone, fed the frames the SDK sends for
    ``workload`` (bidi, v6) and the partition's answers, in memory."""
    target, argument = WORKLOADS[workload]
    entry = pb.InputCommandMessage(value=pb.Value(content=argument)).SerializeToString()
    journal = (JournalEntry(MessageType.INPUT_COMMAND, entry),)
    steps = 3 if workload == "3 x run" else 0
    chunks = [
        encode(pb.RunCommandMessage(result_completion_id=i, name=f"step{i}"))
        + encode(pb.ProposeRunCompletionMessage(result_completion_id=i, value=b'"x0"'))
        for i in range(1, steps + 1)
    ]
    notifications = [
        JournalEntry(
            MessageType.RUN_COMPLETION,
            pb.RunCompletionNotificationMessage(
                completion_id=i, value=pb.Value(content=b'"x0"')
            ).SerializeToString(),
        )
        for i in range(1, steps + 1)
    ]
    end = encode(pb.OutputCommandMessage(value=pb.Value(content=b'"x"'))) + encode(pb.EndMessage())
    begin = Begin(bytes(24), "inv_1", target, journal, 6, Mode.BIDI, 0, 60_000, 600_000)
    headers = ResponseHeaders(content_type(6), 0)

    def one() -> None:
        attempt = Attempt()
        attempt.step(begin)
        attempt.step(headers)
        index = 1
        for chunk, notification in zip(chunks, notifications, strict=True):
            attempt.step(DataReceived(chunk, 1))
            attempt.step(CommandJournaled(index, 1))
            attempt.step(Notification(index + 1, notification, 1))
            attempt.step(RunAcked(index, 1))
            index += 2
        attempt.step(DataReceived(end, 2))

    for _ in range(WARMUP):
        one()
    t0 = time.process_time()
    for _ in range(n):
        one()
    return (time.process_time() - t0) / n * 1e6


COMPONENTS = (
    ("partition double", "/tests/"),
    ("invoker core", "processor/invoker/core/"),
    ("invoker shell", "processor/invoker/invoker.py"),
    ("invoker shell", "processor/invoker/_runner.py"),
    ("invoker shell", "processor/invoker/_targets.py"),
    ("transport", "processor/invoker/"),
    ("transport", "/h2/"),
    ("transport", "/h11/"),
    ("transport", "/hpack/"),
    ("protocol codec", "processor/protocol/"),
    ("protobuf", "google/protobuf"),
    ("ids", "processor/ids.py"),
    ("asyncio", "asyncio/"),
)


def component(filename: str) -> str:
    for name, marker in COMPONENTS:
        if marker in filename:
            return name
    return "other" if filename != "~" else "builtins (C)"


async def profiled(port: int, total: int) -> list[tuple[str, float]]:
    async with Transport() as transport:
        schema = (await schemas(transport, port))["h2c bidi"]
        profile = cProfile.Profile()
        profile.enable()
        await closed_loop(CpuMeter(None), "h2c bidi", "3 x run", 1, total, schema, transport)
        profile.disable()
    shares: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        shares[component(filename)] += tottime
    whole = sum(shares.values())
    return sorted(((k, v / whole * 100) for k, v in shares.items()), key=lambda kv: -kv[1])


def print_table(rows: list[Row], loop_name: str) -> None:
    print(f"event loop: {loop_name}; official Python SDK under hypercorn on loopback; partition double")
    header = (
        f"{'transport':<12} {'workload':<8} {'c':>3} {'inv/s':>7} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'attempts':>8} {'client us':>10} {'server us':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        server = "-" if r.server_us is None else f"{r.server_us:.0f}"
        print(
            f"{r.mode:<12} {r.workload:<8} {r.concurrency:>3} {r.invocations_per_s:>7.0f} {r.p50_ms:>8.2f}"
            f" {r.p99_ms:>8.2f} {r.attempts_per_invocation:>8.2f} {r.client_us:>10.0f} {server:>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invocations", type=int, default=1000, help="measured invocations per row")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    parser.add_argument("--profile", action="store_true", help="where the client's CPU goes (3 x run, bidi)")
    args = parser.parse_args()
    loop_name = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.install()
            loop_name = "uvloop"
        except ImportError:
            pass
    (port,) = free_ports(1)
    server = AsgiServer(APP, port, scratch_dir()).start()
    try:
        assert server.proc is not None
        if args.profile:
            shares = asyncio.run(profiled(port, args.invocations))
            for name, share in shares:
                print(f"{name:<18} {share:5.1f}%")
            return
        rows = asyncio.run(measure(port, server.proc.pid, args.invocations))
    finally:
        server.stop()
    core = {workload: core_only(workload, args.invocations * 5) for workload in WORKLOADS}
    if args.json:
        print(json.dumps({"loop": loop_name, "rows": [asdict(r) for r in rows], "core_us": core}, indent=2))
    else:
        print_table(rows, loop_name)
        print()
        for workload, us in core.items():
            print(f"attempt core alone (in memory), {workload}: {us:.0f} us per invocation")


if __name__ == "__main__":
    main()

"""Round-trip latency of the invoker's HTTP transport against hypercorn, beside the loopback floor.

    python -m bench.transport [--requests N] [--json] [--no-uvloop]

Run from a checkout (it serves ``tests/sdk_services/echo.py`` with hypercorn in a subprocess,
as the tests do). Rows:

* ``tcp echo``: raw asyncio TCP echo of 100 bytes in this process (the floor, from bench/floor.py).
* ``h2c stream round trip``: one open stream; send 100 bytes, wait for their echo (what the
  invoker does per journal step in bidi mode).
* ``h2c request``: a new stream per request: open, send 100 bytes, end, read the whole echo;
  at c=1 and c=32 concurrent closed-loop tasks, all on one connection.
* ``http/1.1 request``: the same on a kept-alive HTTP/1.1 connection (c=1).

CPU per operation is split: ``client user`` is this process's user time (Python: the
transport, h2/h11, asyncio), ``client sys`` its kernel time (syscalls, and on loopback the
kernel delivering to the server's socket), ``server`` hypercorn's user + kernel time (its
HTTP/2 stack and the ASGI app: the part an SDK deployment adds its own work to).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from bench.floor import tcp_rtt_samples
from bench.stats import percentile
from node.ports import free_ports
from processor.invoker.transport import Endpoint, HttpVersion, Stream, Transport
from tests.support.sdk_server import AsgiServer, scratch_dir

PAYLOAD = b"x" * 100
WARMUP = 200


@dataclass
class Row:
    what: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    ops_per_s: float
    client_user_us: float
    client_sys_us: float
    server_cpu_us: float | None


class CpuMeter:
    """User and system CPU of this process and, from /proc, of the server process."""

    def __init__(self, server_pid: int | None) -> None:
        self._pid = server_pid
        self._ticks = os.sysconf("SC_CLK_TCK")

    def _server(self) -> float | None:
        if self._pid is None:
            return None
        with open(f"/proc/{self._pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime

    def read(self) -> tuple[float, float, float | None]:
        t = os.times()
        return t.user, t.system, self._server()

    def row(
        self,
        what: str,
        concurrency: int,
        samples: list[float],
        wall: float,
        start: tuple[float, float, float | None],
    ) -> Row:
        end = self.read()
        n = len(samples)
        server = None if start[2] is None or end[2] is None else (end[2] - start[2]) / n * 1e6
        return Row(
            what,
            concurrency,
            percentile(samples, 50) * 1e3,
            percentile(samples, 99) * 1e3,
            n / wall,
            (end[0] - start[0]) / n * 1e6,
            (end[1] - start[1]) / n * 1e6,
            server,
        )


async def _read_all(stream: Stream) -> int:
    size = 0
    while (chunk := await stream.receive()) is not None:
        size += len(chunk)
    return size


async def _request(transport: Transport, endpoint: Endpoint) -> None:
    async with await transport.open_stream(endpoint, "/echo") as stream:
        await stream.send(PAYLOAD)
        await stream.end()
        if await _read_all(stream) != len(PAYLOAD):
            raise AssertionError("short echo")


async def _closed_loop(
    meter: CpuMeter, what: str, concurrency: int, total: int, op: Callable[[], Awaitable[None]]
) -> Row:
    for _ in range(WARMUP):
        await op()
    samples: list[float] = []
    per_task = max(1, total // concurrency)

    async def worker() -> None:
        for _ in range(per_task):
            t0 = time.perf_counter()
            await op()
            samples.append(time.perf_counter() - t0)

    start, wall0 = meter.read(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return meter.row(what, concurrency, samples, time.perf_counter() - wall0, start)


async def _stream_round_trips(meter: CpuMeter, transport: Transport, endpoint: Endpoint, total: int) -> Row:
    async with await transport.open_stream(endpoint, "/echo") as stream:
        await stream.response()

        async def op() -> None:
            await stream.send(PAYLOAD)
            got = 0
            while got < len(PAYLOAD):
                chunk = await stream.receive()
                assert chunk is not None
                got += len(chunk)

        row = await _closed_loop(meter, "h2c stream round trip", 1, total, op)
        await stream.end()
        await _read_all(stream)
    return row


async def _floor(total: int) -> Row:
    meter = CpuMeter(None)  # client and echo server are both this process
    start, wall0 = meter.read(), time.perf_counter()
    samples = await tcp_rtt_samples(n=total)
    return meter.row("tcp echo (floor)", 1, samples, time.perf_counter() - wall0, start)


async def measure(port: int, server_pid: int, total: int) -> list[Row]:
    meter = CpuMeter(server_pid)
    h2c = Endpoint("127.0.0.1", port, HttpVersion.H2C)
    h11 = Endpoint("127.0.0.1", port, HttpVersion.HTTP11)
    rows = [await _floor(total)]
    async with Transport() as transport:
        rows.append(await _stream_round_trips(meter, transport, h2c, total))
        for concurrency in (1, 32):
            rows.append(
                await _closed_loop(meter, "h2c request", concurrency, total, lambda: _request(transport, h2c))
            )
        rows.append(await _closed_loop(meter, "http/1.1 request", 1, total, lambda: _request(transport, h11)))
        if transport.connections_opened != 2:
            raise AssertionError(f"expected one connection per version, got {transport.connections_opened}")
    return rows


def print_table(rows: list[Row], loop_name: str) -> None:
    floor = rows[0].p50_ms
    print(f"event loop: {loop_name}; hypercorn echo app on loopback; 100-byte payloads")
    header = (
        f"{'what':<24} {'c':>3} {'p50 ms':>8} {'p99 ms':>8} {'x floor':>8} {'ops/s':>8}"
        f" {'client user us':>15} {'client sys us':>14} {'server us':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.what:<24} {r.concurrency:>3} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
            f"{r.p50_ms / floor:>7.1f}x {r.ops_per_s:>8.0f} {r.client_user_us:>15.0f} {r.client_sys_us:>14.0f}"
            f" {'-' if r.server_cpu_us is None else f'{r.server_cpu_us:.0f}':>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="measured operations per row")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    args = parser.parse_args()
    (port,) = free_ports(1)
    server = AsgiServer("tests.sdk_services.echo:app", port, scratch_dir()).start()
    try:
        loop_name = "asyncio"
        if not args.no_uvloop:
            try:
                import uvloop

                uvloop.install()
                loop_name = "uvloop"
            except ImportError:
                pass
        assert server.proc is not None
        rows = asyncio.run(measure(port, server.proc.pid, args.requests))
    finally:
        server.stop()
    if args.json:
        print(json.dumps({"loop": loop_name, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print_table(rows, loop_name)


if __name__ == "__main__":
    main()

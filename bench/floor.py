"""The physical floor, measured in the same run as the figures it is printed beside:
a 4-KiB write + fsync on the disk under the base dir, and a loopback round trip (raw TCP and
gRPC unary)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.stats import percentile


def fsync_samples(directory: Path, n: int = 500, size: int = 4096) -> list[float]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=directory)
    block = os.urandom(size)
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            samples.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return samples


async def tcp_rtt_samples(n: int = 2000, size: int = 100) -> list[float]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"x" * size
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(payload)
        await reader.readexactly(size)
        samples.append(time.perf_counter() - t0)
    writer.close()
    server.close()
    await server.wait_closed()
    return samples


async def grpc_rtt_samples(n: int = 1000) -> list[float]:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    samples = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        req = health_pb2.HealthCheckRequest()
        for _ in range(50):
            await stub.Check(req)
        for _ in range(n):
            t0 = time.perf_counter()
            await stub.Check(req)
            samples.append(time.perf_counter() - t0)
    await server.stop(None)
    return samples


async def measure_floor(directory: Path) -> dict[str, float]:
    fs = fsync_samples(directory)
    tcp = await tcp_rtt_samples()
    rpc = await grpc_rtt_samples()
    return {
        "fsync_p50_ms": percentile(fs, 50) * 1e3,
        "fsync_p99_ms": percentile(fs, 99) * 1e3,
        "rtt_p50_ms": percentile(tcp, 50) * 1e3,
        "grpc_rtt_p50_ms": percentile(rpc, 50) * 1e3,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(measure_floor(Path(tempfile.gettempdir()) / "durastate-floor")), indent=2))

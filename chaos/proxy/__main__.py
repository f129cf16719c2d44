"""`python -m chaos.proxy [--host H] [--port P] [--seed N]`: serve the API until SIGTERM/SIGINT.

Prints one line, `chaos.proxy listening on http://H:P`, once the API accepts requests (with
`--port 0` that is how a caller learns the port). Exit status 0 after a signal, 1 if the
port cannot be bound, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys

from ._server import FaultProxyServer


async def _serve(host: str, port: int, seed: int | None) -> None:
    server = FaultProxyServer(host, port, rng=random.Random(seed))
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"chaos.proxy listening on http://{host}:{server.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.proxy",
        description="Toxiproxy-compatible fault proxy: serve the HTTP API until SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8474, help="API port, 0 = any free one (default 8474)")
    parser.add_argument("--seed", type=int, default=None, help="seed toxicity, jitter and slicer draws")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.seed))
    except OSError as e:
        print(f"chaos.proxy: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

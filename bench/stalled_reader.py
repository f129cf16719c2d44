"""A follower that stops reading must not grow the node's memory (issue 8, backpressure).

    python -m bench.stalled_reader [--records 1000000] [--record-bytes 100] [--json]

One node (real process, RocksDB, loopback). The bench appends ``--records`` records to a log
(batches straight to the sequencer's data port), opens a follow-mode ``LogRead`` over gRPC,
takes one record and then stops reading, and samples the node's RSS for ``--hold`` seconds.
Reported: RSS before the reader, at its peak while stalled, and the difference, beside the
bytes of the log the reader would have buffered without bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

from bench.append_latency import CALL_TIMEOUT_S, TAG_APPENDER, _address_book
from bench.cluster import BenchCluster, register_member
from bifrost.core._types import GenerationalNodeId
from bifrost.net.messaging import DataPortAuth
from bifrost.record import tag
from bifrost.replicated.messages import AppendRequest, AppendResponse, AppendStatus, WireCodec
from bifrost.replicated.runtime import Network
from node.grpc_auth import call_metadata
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc

BATCH = 1000


async def _fill(address_of, params, records: int, record_bytes: int, secret: bytes, me: GenerationalNodeId) -> None:  # noqa: ANN001
    network = Network(DataPortAuth(secret, me, lambda peer: None), WireCodec(), address_of, lambda *a: None)
    body = os.urandom(record_bytes)
    sent = 0
    try:
        inflight: list[asyncio.Future] = []
        while sent < records:
            n = min(BATCH, records - sent)
            payloads = tuple(tag(TAG_APPENDER, sent + i + 1, body) for i in range(n))
            inflight.append(asyncio.ensure_future(network.call(params.sequencer.node, AppendRequest(params, payloads), CALL_TIMEOUT_S)))
            sent += n
            if len(inflight) >= 16:
                resp = await inflight.pop(0)
                if not isinstance(resp, AppendResponse) or resp.status != AppendStatus.OK:
                    raise RuntimeError(f"append failed: {resp}")
        for fut in inflight:
            await fut
    finally:
        await network.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--record-bytes", type=int, default=100)
    ap.add_argument("--hold", type=float, default=10.0, help="seconds the reader stays stalled")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="durastate-stalled-"))
    with BenchCluster(base, 1, 1, num_logs=2) as bc:
        node = bc.nodes[0]
        chain = bc.ensure_log(node, 1)
        params = chain.tail.params
        assert params is not None
        t0 = time.monotonic()
        me = register_member(bc, node, "bench-filler")
        asyncio.run(
            _fill(_address_book(bc.nodes_config(node)), params, args.records, args.record_bytes, bc.cluster.secret, me)
        )
        fill_s = time.monotonic() - t0
        pid = bc.cluster.pid(node)
        assert pid is not None

        def rss() -> float:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
            return 0.0

        before = rss()
        channel = grpc.insecure_channel(node.grpc_address)
        stream = node_pb2_grpc.NodeServiceStub(channel).LogRead(
            node_pb2.LogReadRequest(log_id=1, from_lsn=1, follow=True), metadata=call_metadata(bc.cluster.secret)
        )
        first = next(stream).entries[0]  # one message, then the reader stops pulling
        peak = before
        stop = time.monotonic() + args.hold
        while time.monotonic() < stop:
            peak = max(peak, rss())
            time.sleep(0.1)
        stream.cancel()
        channel.close()
        result = {
            "records": args.records,
            "record_bytes": args.record_bytes,
            "fill_s": round(fill_s, 1),
            "first_lsn_read": first.lsn,
            "rss_before_mb": round(before, 1),
            "rss_peak_stalled_mb": round(peak, 1),
            "growth_mb": round(peak - before, 1),
            "log_mb": round(args.records * (args.record_bytes + 17) / 2**20, 1),
        }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A follow-mode reader of one log through one node's gRPC service, in its own process.

    python -m bench.follower ADDRESS LOG_ID OUT_FILE SECRET_FILE

Notes when each numbered record (its first 8 bytes, big-endian) arrives, on the monotonic clock
that every process of the machine shares, and writes {number: time} as JSON to OUT_FILE when it
gets SIGTERM. A process of its own, because a reader thread in the appending process would take
the GIL from the appenders' event loop for up to the switch interval at a time and distort the
latencies it is there to measure.
"""

from __future__ import annotations

import json
import signal
import struct
import sys
import threading
import time
from pathlib import Path

import grpc

from node import secret
from node.grpc_auth import call_metadata
from proto.durastate.node.v1 import node_pb2, node_pb2_grpc

_SEQ = struct.Struct(">Q")


def main(argv: list[str]) -> int:
    address, log_id, out, secret_file = argv[0], int(argv[1]), argv[2], Path(argv[3])
    seen: dict[int, float] = {}
    channel = grpc.insecure_channel(address)
    stream = node_pb2_grpc.NodeServiceStub(channel).LogRead(
        node_pb2.LogReadRequest(log_id=log_id, from_lsn=1, follow=True),
        metadata=call_metadata(secret.read_file(secret_file)),
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (stream.cancel(), done.set()))
    print("following", flush=True)
    clock = time.monotonic
    try:
        for batch in stream:
            now = clock()
            for entry in batch.entries:
                if len(entry.payload) >= _SEQ.size:
                    seen[_SEQ.unpack_from(entry.payload)[0]] = now
    except grpc.RpcError:
        pass  # cancelled by SIGTERM
    with open(out, "w") as f:
        json.dump(seen, f)
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

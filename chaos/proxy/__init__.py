"""A Toxiproxy-compatible TCP fault proxy on asyncio.

`FaultProxyServer(host, port)` serves Toxiproxy's HTTP API (2.12; `toxiproxy-python` and the
other clients work unchanged) and runs each proxy as a TCP listener on 127.0.0.1 that relays to
its upstream through live chains of toxics: latency, bandwidth, slow_close, timeout,
reset_peer, limit_data, slicer. `python -m chaos.proxy --port P` runs one until SIGTERM.

The core (`chaos.proxy.core`) is sans-I/O: toxic planners, per-connection state machine, API
state. Where it departs from Toxiproxy, on purpose or not:

- Half-closes propagate: a FIN from one side half-closes the other side and the opposite
  direction keeps flowing until it ends too. Toxiproxy closes both sockets on the first EOF,
  which cuts off a response still in flight.
- Proxies listen on 127.0.0.1 only: a `listen` host that is loopback or a wildcard is narrowed
  to it, any other host is a 400.
- Stricter validation (400 where Toxiproxy accepts and misbehaves): malformed `upstream`,
  negative attributes, toxicity outside [0, 1], slicer `average_size` 0. Bandwidth `rate` 0
  means unlimited (Toxiproxy stalls the stream).
- Toxicity is drawn once per connection and toxic, and again when that toxic is updated;
  Toxiproxy also redraws for the previous toxic of a chain whenever one is added after it.
- Updating a toxic re-plans the data it holds under the new attributes; Toxiproxy releases
  the chunk in flight at once and re-plans the rest.
- Removing a reset_peer toxic cancels a pending reset; removing a timeout toxic closes only
  the connections it actually applied to (Toxiproxy also closes those that lost the draw).
- Only a firing reset_peer sends RSTs. Toxiproxy sets SO_LINGER 0 on every connection that
  starts with a reset_peer toxic in its chain, so its ordinary closes are RSTs too.
- Chained toxics add their delays (each stage restamps what it emits); in Toxiproxy a latency
  placed after a bandwidth toxic partly absorbs the bandwidth delay.
- Reads are up to 256 KiB (asyncio's) instead of Go's 32 KiB, so per-chunk toxics (latency
  jitter, slicer) see fewer, larger chunks under load. No `/metrics` endpoint. Error
  bodies are sent as `application/json` (Toxiproxy labels the same JSON `text/plain`).
"""

from ._server import VERSION, FaultProxyServer

__all__ = ["VERSION", "FaultProxyServer"]

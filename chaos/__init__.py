"""Fault injection and chaos testing for durastate.

- `chaos.proxy`: an asyncio TCP fault proxy that speaks Toxiproxy's HTTP API, so chaos tests
  drive it with the stock `toxiproxy-python` client (a real Toxiproxy server cannot be
  installed here; see reference/dependencies-measured.md §7).
"""

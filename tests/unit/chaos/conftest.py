"""A fault proxy on its own loop thread, the stock toxiproxy client pointed at it, and an echo
upstream: every one stopped in a finalizer."""

from __future__ import annotations

import asyncio
import random
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

from chaos.proxy import FaultProxyServer


@dataclass(frozen=True)
class RunningServer:
    server: FaultProxyServer
    loop: asyncio.AbstractEventLoop
    port: int


@pytest.fixture
def fault_proxy() -> Iterator[RunningServer]:
    # toxiproxy-python is synchronous (requests), so the server gets a loop of its own.
    loop = asyncio.new_event_loop()
    # A callback that raises on the proxy's loop would only be logged: make it fail the test.
    swallowed: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: swallowed.append(context))
    thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
    thread.start()
    server = FaultProxyServer("127.0.0.1", 0, rng=random.Random(20240601))
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        yield RunningServer(server, loop, server.port)
    finally:
        try:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
    assert not swallowed, f"exceptions on the proxy's loop: {swallowed}"


@pytest.fixture
def toxiproxy(fault_proxy: RunningServer) -> Iterator[Toxiproxy]:
    # The client keeps its API address on the class: restore it so no other test inherits ours.
    saved = (APIConsumer.host, APIConsumer.port)
    client = Toxiproxy()
    client.update_api_consumer("127.0.0.1", fault_proxy.port)
    try:
        yield client
    finally:
        APIConsumer.host, APIConsumer.port = saved


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock = self.request
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass  # the proxy reset or dropped us: that is what several tests do on purpose
        finally:
            sock.close()


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[str]:
    """An echo server on a free loopback port; echoes until EOF, then closes. Yields host:port."""
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

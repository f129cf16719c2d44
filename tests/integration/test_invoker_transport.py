"""The invoker's HTTP transport against real servers on loopback.

hypercorn in a subprocess serves the plain echo app (tests/sdk_services/echo.py) and the
official-SDK Greeter; an in-process scripted h2c server (``h2`` on a real socket) produces
what hypercorn cannot on demand: a GOAWAY below open streams, REFUSED_STREAM, a server that
never reads. Each test runs in ``asyncio.run`` under a deadline (a hang fails the test) and
checks that no task is left once the transport is closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
import uvloop

from processor.invoker.transport import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    Endpoint,
    HttpVersion,
    NotProcessed,
    Stream,
    StreamReset,
    StreamStateError,
    Transport,
    TransportClosed,
    TransportConfig,
    TransportError,
    UnexpectedStatus,
)
from tests.support.sdk_server import AsgiServer, AsgiServers, asgi_servers, module_asgi_servers  # noqa: F401

T = TypeVar("T")
DEADLINE_S = 30.0
ECHO = "tests.sdk_services.echo:app"
GREETER = "tests.sdk_services.greeter:app"
MANIFEST_ACCEPT = ", ".join(f"application/vnd.restate.endpointmanifest.v{n}+json" for n in (1, 2, 3, 4))
INVOCATION_V6 = "application/vnd.restate.invocation.v6"


def run(
    main: Callable[[Transport], Awaitable[T]], config: TransportConfig | None = None, loop: str = "asyncio"
) -> T:
    """Run ``main`` with a fresh transport under a deadline; close it; assert no task is left.
    ``loop="uvloop"`` runs it on uvloop, the node's loop."""

    async def wrapper() -> T:
        transport = Transport(config)
        try:
            async with asyncio.timeout(DEADLINE_S):
                return await main(transport)
        finally:
            await transport.close()
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert leftover == [], f"tasks left behind: {leftover}"
            assert transport.open_connections == 0

    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(wrapper())


# The node runs on uvloop when it is installed; the tests that exercise every path run on both.
both_loops = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """The asyncio twin of ``wait_until``: poll with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


async def read_exactly(stream: Stream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive()
        assert chunk is not None, f"response ended after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def read_all(stream: Stream) -> bytes:
    data = bytearray()
    while (chunk := await stream.receive()) is not None:
        data += chunk
    return bytes(data)


async def echo_round(
    transport: Transport, endpoint: Endpoint, body: bytes, on_open: Callable[[], None] = lambda: None
) -> bytes:
    """POST ``body`` to the echo app and return what came back."""
    async with await transport.open_stream(endpoint, "/echo") as stream:
        on_open()
        await stream.send(body)
        await stream.end()
        return await read_all(stream)


def h2c(server: AsgiServer) -> Endpoint:
    return Endpoint(server.host, server.port, HttpVersion.H2C)


def http11(server: AsgiServer) -> Endpoint:
    return Endpoint(server.host, server.port, HttpVersion.HTTP11)


@pytest.fixture(scope="module")
def echo(module_asgi_servers: AsgiServers) -> AsgiServer:  # noqa: F811
    return module_asgi_servers.start(ECHO)


@pytest.fixture(scope="module")
def greeter(module_asgi_servers: AsgiServers) -> AsgiServer:  # noqa: F811
    return module_asgi_servers.start(GREETER)


# -- h2c: duplex, flow control, concurrency ------------------------------------------------------


@both_loops
def test_h2c_stream_is_full_duplex(echo: AsgiServer, loop: str) -> None:
    async def main(transport: Transport) -> None:
        async with await transport.open_stream(h2c(echo), "/echo") as stream:
            assert (await stream.response()).status == 200
            for i in range(100):
                message = f"round {i}".encode()
                await stream.send(message)
                # The echo comes back while the request body is still open.
                assert await read_exactly(stream, len(message)) == message
            await stream.end()
            assert await stream.receive() is None
        assert transport.connections_opened == 1

    run(main, loop=loop)


@both_loops
def test_h2c_large_bodies_both_ways_respect_flow_control(echo: AsgiServer, loop: str) -> None:
    size = 6 << 20
    window = 256 << 10
    payload = os.urandom(size)

    async def main(transport: Transport) -> None:
        async with await transport.open_stream(h2c(echo), "/echo") as stream:

            async def write() -> None:
                for at in range(0, size, 1 << 20):
                    await stream.send(payload[at : at + (1 << 20)])
                await stream.end()

            writer = asyncio.create_task(write())
            got = hashlib.sha256()
            total = 0
            most_buffered = 0
            while (chunk := await stream.receive()) is not None:
                most_buffered = max(most_buffered, stream.buffered + len(chunk))
                got.update(chunk)
                total += len(chunk)
            await writer
        assert total == size and got.digest() == hashlib.sha256(payload).digest()
        assert most_buffered <= window

    run(main, TransportConfig(h2_stream_window=window), loop=loop)


def test_unread_response_data_stops_at_the_stream_window(echo: AsgiServer) -> None:
    window = 128 << 10
    size = 4 << 20

    async def main(transport: Transport) -> None:
        async with await transport.open_stream(h2c(echo), f"/source/{size}") as stream:
            await stream.end()
            await eventually(lambda: stream.buffered >= window, "the stream window to fill")
            assert stream.buffered == window  # the server is blocked, not buffered in us
            assert len(await read_all(stream)) == size

    run(main, TransportConfig(h2_stream_window=window))


def test_200_concurrent_streams_share_one_connection(echo: AsgiServer) -> None:
    async def main(transport: Transport) -> None:
        # hypercorn allows 100 concurrent streams: the other 100 queue.
        results = await asyncio.gather(
            *(echo_round(transport, h2c(echo), f"stream {i} ".encode() * 10) for i in range(200))
        )
        assert results == [f"stream {i} ".encode() * 10 for i in range(200)]
        assert transport.connections_opened == 1

    run(main)


def test_streams_queue_at_the_server_limit_instead_of_failing(asgi_servers: AsgiServers) -> None:  # noqa: F811
    server = asgi_servers.start(ECHO, h2_max_concurrent_streams=4)
    most_open = 0

    async def main(transport: Transport) -> None:
        def opened() -> None:
            nonlocal most_open
            most_open = max(most_open, transport.open_streams)

        results = await asyncio.gather(
            *(echo_round(transport, h2c(server), b"%d" % i, opened) for i in range(60))
        )
        assert results == [b"%d" % i for i in range(60)]
        assert transport.connections_opened == 1
        # Reached and never exceeded (hypercorn drops the whole connection above its limit).
        assert most_open == 4

    run(main)


# -- failures ------------------------------------------------------------------------------------


def test_goaway_from_hypercorn_moves_sequential_requests_to_new_connections(
    asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    # hypercorn answers 3 requests per connection, GOAWAYs on the 4th and cannot answer it. A long
    # idle timeout makes a client that waits for the server to close such a stream hang the test.
    server = asgi_servers.start(ECHO, keep_alive_max_requests=3, keep_alive_timeout_s=120)
    failures: list[TransportError] = []

    async def main(transport: Transport) -> None:
        for i in range(12):
            try:
                body = await echo_round(transport, h2c(server), b"request %d" % i)
            except (ConnectionLost, NotProcessed) as e:  # retryable: one more attempt
                failures.append(e)
                body = await echo_round(transport, h2c(server), b"request %d" % i)
            assert body == b"request %d" % i
        assert transport.connections_opened >= 4
        assert failures, "hypercorn should have sent GOAWAY at least once"

    run(main)


def test_server_killed_mid_stream_fails_the_stream_and_a_new_request_reconnects(
    asgi_servers: AsgiServers,  # noqa: F811
) -> None:
    server = asgi_servers.start(ECHO)

    async def main(transport: Transport) -> None:
        stream = await transport.open_stream(h2c(server), "/echo")
        await stream.send(b"hello")
        assert await read_exactly(stream, 5) == b"hello"
        await asyncio.to_thread(server.kill)
        async with asyncio.timeout(5):  # promptly: no hang waiting for a dead peer
            with pytest.raises(ConnectionLost) as lost:
                await stream.receive()
        assert lost.value.maybe_processed
        with pytest.raises(ConnectionLost):
            await stream.send(b"more")
        with pytest.raises(ConnectFailed) as refused:
            await transport.request(h2c(server), "GET", "/status/200")
        assert not refused.value.maybe_processed
        await asyncio.to_thread(server.start)
        response = await transport.request(h2c(server), "GET", "/status/204")
        assert response.status == 204
        assert transport.connections_opened == 2

    run(main)


def test_non_200_status_is_raised_with_its_body(echo: AsgiServer) -> None:
    async def main(transport: Transport) -> None:
        for endpoint in (h2c(echo), http11(echo)):
            async with await transport.open_stream(endpoint, "/status/503") as stream:
                await stream.end()
                with pytest.raises(UnexpectedStatus) as raised:
                    await stream.receive()
                assert raised.value.status == 503 and raised.value.body == b"status 503"
                with pytest.raises(UnexpectedStatus):
                    await stream.response()

    run(main)


def test_connect_timeout_when_the_server_never_speaks_http2() -> None:
    async def main(transport: Transport) -> None:
        accepted: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ConnectTimeout):
                await transport.open_stream(Endpoint("127.0.0.1", port), "/echo")
        finally:
            for writer in accepted:
                writer.close()
            server.close()
            await server.wait_closed()

    run(main, TransportConfig(connect_timeout_s=0.3))


def test_an_http11_only_server_is_a_clear_connect_failure() -> None:
    async def main(transport: Transport) -> None:
        async def http1_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(http1_only, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ConnectFailed, match="answered in HTTP/1.x.*register it with HTTP/1.1"):
                await transport.open_stream(Endpoint("127.0.0.1", port), "/echo")
        finally:
            server.close()
            await server.wait_closed()

    run(main)


# -- scripted h2c server: GOAWAY below open streams, REFUSED_STREAM, a peer that never reads ------


class ScriptedConnection:
    """One accepted h2c connection; the test reads its events and writes its frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_streams: int) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams}
        )
        self.h2.initiate_connection()
        self.flush()
        self.events: list[h2.events.Event] = []

    def flush(self) -> None:
        if data := self.h2.data_to_send():
            self.writer.write(data)

    async def until(self, condition: Callable[[list[h2.events.Event]], bool]) -> None:
        while not condition(self.events):
            data = await self.reader.read(65536)
            assert data, "client closed the connection"
            self.events += self.h2.receive_data(data)
            self.flush()

    def requests(self) -> list[int]:
        return [e.stream_id for e in self.events if isinstance(e, h2.events.RequestReceived)]

    def goaway(self, last_stream_id: int) -> None:
        # Written by hand: h2 would refuse to say anything after its own GOAWAY.
        payload = struct.pack(">II", last_stream_id, 0)
        self.writer.write(len(payload).to_bytes(3, "big") + b"\x07\x00" + b"\x00" * 4 + payload)

    def respond(self, stream_id: int, body: bytes) -> None:
        self.h2.send_headers(stream_id, [(":status", "200")])
        self.h2.send_data(stream_id, body, end_stream=True)
        self.flush()


class ScriptedServer:
    def __init__(self, max_streams: int = 100) -> None:
        self.max_streams = max_streams
        self.accepted: asyncio.Queue[ScriptedConnection] = asyncio.Queue()
        self.connections: list[ScriptedConnection] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self.connections:
            conn.writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def endpoint(self) -> Endpoint:
        assert self.server is not None
        return Endpoint("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ScriptedConnection(reader, writer, self.max_streams)
        self.connections.append(conn)
        await self.accepted.put(conn)


@both_loops
def test_goaway_fails_streams_above_last_stream_and_finishes_the_others(loop: str) -> None:
    async def main(transport: Transport) -> None:
        async with ScriptedServer(max_streams=3) as server:
            streams = [await transport.open_stream(server.endpoint, "/invoke/S/h") for _ in range(3)]
            conn = await server.accepted.get()
            await conn.until(lambda events: len(conn.requests()) == 3)
            queued = asyncio.create_task(transport.open_stream(server.endpoint, "/invoke/S/h"))
            await eventually(lambda: transport.waiting_openers == 1, "the fourth opener to queue")
            assert transport.open_streams == 3  # the server's limit: waiting, not failing
            first, *above = streams
            conn.goaway(last_stream_id=first.stream_id)
            for stream in above:
                with pytest.raises(NotProcessed) as refused:
                    await stream.receive()
                assert not refused.value.maybe_processed
            # The queued opener moves to a new connection while the first one finishes its stream.
            fresh = await queued
            second = await server.accepted.get()
            await second.until(lambda events: len(second.requests()) == 1)
            await first.send(b"still open")
            await conn.until(lambda events: any(isinstance(e, h2.events.DataReceived) for e in events))
            conn.respond(first.stream_id, b"finished")
            await first.end()
            assert await read_all(first) == b"finished"
            second.respond(fresh.stream_id, b"fresh")
            await fresh.end()
            assert await read_all(fresh) == b"fresh"
            assert transport.connections_opened == 2
            await eventually(lambda: transport.open_connections == 1, "the drained connection to close")

    run(main, loop=loop)


def test_stream_resets_are_typed_and_the_connection_stays() -> None:
    async def main(transport: Transport) -> None:
        async with ScriptedServer() as server:
            refused = await transport.open_stream(server.endpoint, "/invoke/S/h")
            broken = await transport.open_stream(server.endpoint, "/invoke/S/h")
            conn = await server.accepted.get()
            await conn.until(lambda events: len(conn.requests()) == 2)
            conn.h2.reset_stream(refused.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            conn.h2.reset_stream(broken.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            conn.flush()
            with pytest.raises(NotProcessed):
                await refused.response()
            with pytest.raises(StreamReset) as reset:
                await broken.receive()
            assert reset.value.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
            retry = await transport.open_stream(server.endpoint, "/invoke/S/h")
            await conn.until(lambda events: len(conn.requests()) == 3)
            conn.respond(retry.stream_id, b"ok")
            await retry.end()
            assert await read_all(retry) == b"ok"
            assert transport.connections_opened == 1

    run(main)


@both_loops
def test_send_waits_for_window_and_a_cancelled_send_resets_the_stream(loop: str) -> None:
    async def main(transport: Transport) -> None:
        async with ScriptedServer() as server:
            stream = await transport.open_stream(server.endpoint, "/invoke/S/h")
            conn = await server.accepted.get()
            # The server never hands back window: the client may send 65,535 bytes, no more.
            sender = asyncio.create_task(stream.send(b"x" * 200_000))
            await conn.until(
                lambda events: (
                    sum(e.flow_controlled_length for e in events if isinstance(e, h2.events.DataReceived))
                    == 65_535
                )
            )
            assert not sender.done()
            sender.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sender
            await conn.until(lambda events: any(isinstance(e, h2.events.StreamReset) for e in events))
            reset = next(e for e in conn.events if isinstance(e, h2.events.StreamReset))
            assert reset.error_code == h2.errors.ErrorCodes.CANCEL
            with pytest.raises(StreamStateError):
                await stream.send(b"y")

    run(main, loop=loop)


def test_cancelled_waits_leave_streams_and_slots_usable(asgi_servers: AsgiServers) -> None:  # noqa: F811
    server = asgi_servers.start(ECHO, h2_max_concurrent_streams=1)

    async def main(transport: Transport) -> None:
        endpoint = h2c(server)
        stream = await transport.open_stream(endpoint, "/echo")
        # A reader cancelled while waiting: the stream is untouched.
        reader = asyncio.create_task(stream.receive())
        await eventually(lambda: stream.head is not None, "the response head")
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        # An opener cancelled while queued for the only slot: the slot is not lost.
        opener = asyncio.create_task(transport.open_stream(endpoint, "/echo"))
        await eventually(lambda: transport.waiting_openers == 1, "the opener to queue")
        opener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opener
        assert transport.waiting_openers == 0
        await stream.send(b"ping")
        assert await read_exactly(stream, 4) == b"ping"
        await stream.end()
        assert await stream.receive() is None
        response = await transport.request(endpoint, "GET", "/status/200")
        assert response.body == b"status 200"

    run(main)


def test_close_fails_open_streams_and_refuses_new_ones(echo: AsgiServer) -> None:
    async def main(transport: Transport) -> None:
        stream = await transport.open_stream(h2c(echo), "/echo")
        reader = asyncio.create_task(read_all(stream))
        await eventually(lambda: stream.head is not None, "the response head")
        await transport.close()
        with pytest.raises(TransportClosed):
            await reader
        with pytest.raises(TransportClosed):
            await transport.open_stream(h2c(echo), "/echo")

    run(main)


# -- HTTP/1.1 ------------------------------------------------------------------------------------


@both_loops
def test_http11_chunked_request_streamed_response_and_keep_alive(echo: AsgiServer, loop: str) -> None:
    async def main(transport: Transport) -> None:
        for i in range(5):
            async with await transport.open_stream(http11(echo), "/echo") as stream:
                for part in (b"alpha ", b"beta ", b"gamma %d" % i):
                    await stream.send(part)
                await stream.end()
                assert (await stream.response()).get("transfer-encoding") == "chunked"
                assert await read_all(stream) == b"alpha beta gamma %d" % i
        response = await transport.request(http11(echo), "POST", "/echo", body=b"one shot")
        assert response.status == 200 and response.body == b"one shot"
        assert transport.connections_opened == 1  # every exchange reused the kept-alive connection

    run(main, loop=loop)


def test_http11_unread_response_data_pauses_the_socket(echo: AsgiServer) -> None:
    limit = 256 << 10
    size = 8 << 20
    socket_read = 256 << 10  # the most one read from the socket delivers (asyncio and uvloop)

    async def main(transport: Transport) -> None:
        async with await transport.open_stream(http11(echo), f"/source/{size}") as stream:
            await stream.end()
            await stream.response()
            await eventually(lambda: stream.buffered > limit, "the receive buffer to fill")
            assert stream.buffered <= limit + socket_read  # reading stopped, not the whole body
            assert len(await read_all(stream)) == size

    run(main, TransportConfig(h1_receive_buffer=limit))


def test_http11_pool_caps_connections_and_queues(echo: AsgiServer) -> None:
    async def main(transport: Transport) -> None:
        results = await asyncio.gather(*(echo_round(transport, http11(echo), b"%d" % i) for i in range(12)))
        assert results == [b"%d" % i for i in range(12)]
        assert transport.connections_opened == 2

    run(main, TransportConfig(h1_max_connections=2))


# -- the official SDK ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "mode"), [(HttpVersion.H2C, "BIDI_STREAM"), (HttpVersion.HTTP11, "REQUEST_RESPONSE")]
)
def test_discovery_against_the_python_sdk(greeter: AsgiServer, version: HttpVersion, mode: str) -> None:
    async def main(transport: Transport) -> None:
        endpoint = Endpoint(greeter.host, greeter.port, version)
        response = await transport.request(endpoint, "GET", "/discover", [("accept", MANIFEST_ACCEPT)])
        assert response.status == 200
        assert response.get("content-type") == "application/vnd.restate.endpointmanifest.v4+json"
        manifest = json.loads(response.body)
        assert manifest["protocolMode"] == mode
        assert [s["name"] for s in manifest["services"]] == ["Greeter"]
        assert (manifest["minProtocolVersion"], manifest["maxProtocolVersion"]) == (5, 7)

    run(main)


def test_sdk_sends_invocation_headers_before_the_request_body(greeter: AsgiServer) -> None:
    async def main(transport: Transport) -> None:
        endpoint = h2c(greeter)
        headers = [("content-type", INVOCATION_V6), ("accept", INVOCATION_V6)]
        stream = await transport.open_stream(endpoint, "/invoke/Greeter/greet", headers)
        head = await stream.response()  # nothing sent yet, body still open
        assert head.status == 200
        assert head.get("content-type") == INVOCATION_V6
        assert (head.get("x-restate-server") or "").startswith("restate-sdk-python/")
        stream.reset()
        with pytest.raises(StreamStateError):
            await stream.receive()
        with pytest.raises(UnexpectedStatus) as missing:
            async with await transport.open_stream(endpoint, "/invoke/Nope/greet", headers) as other:
                await other.response()
        assert missing.value.status == 404
        # The connection survived the resets.
        response = await transport.request(endpoint, "GET", "/health")
        assert response.status == 200
        assert transport.connections_opened == 1

    run(main)

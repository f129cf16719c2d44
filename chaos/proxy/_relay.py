"""The asyncio shell around one `Connection`: two sockets and one timer.

A relay is born when a client connects to a proxy. It holds the client's bytes (reading
paused) until the upstream connection is up, then builds the core and feeds it one
`ToxicAdded` per toxic the proxy has at that moment. From then on it only translates:
socket events become inputs, outputs become socket calls, and the core's single timer becomes
a `loop.call_at`. Socket failures go back to the core as `PeerLost`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from collections.abc import Callable, Sequence

from .core import (
    Close,
    Connection,
    EofReceived,
    Input,
    Output,
    PauseReading,
    PeerLost,
    Received,
    ResumeReading,
    Rng,
    Send,
    SendEof,
    SetTimer,
    Stream,
    TimerFired,
    Toxic,
    ToxicAdded,
    WritePaused,
    WriteResumed,
)

_LINGER_ZERO = struct.pack("ii", 1, 0)


class _Side(asyncio.Protocol):
    """One socket of a relay; `stream` is the stream this socket's bytes feed (the client
    socket feeds UPSTREAM), so it is also the destination of `stream.other`."""

    def __init__(self, relay: Relay, stream: Stream) -> None:
        self._relay = relay
        self._stream = stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._relay.attached(self._stream, transport)

    def data_received(self, data: bytes) -> None:
        self._relay.feed(Received(self._stream, data, self._relay.now()))

    def eof_received(self) -> bool:
        self._relay.feed(EofReceived(self._stream, self._relay.now()))
        return True  # keep the socket open: the other direction may still be writing to it

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.lost(self._stream)

    def pause_writing(self) -> None:
        self._relay.feed(WritePaused(self._stream.other, self._relay.now()))

    def resume_writing(self) -> None:
        self._relay.feed(WriteResumed(self._stream.other, self._relay.now()))


class Relay:
    def __init__(
        self,
        rng: Rng,
        upstream: tuple[str, int],
        toxics: Callable[[], Sequence[Toxic]],
        on_done: Callable[[Relay], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._rng = rng
        self._upstream = upstream
        self._toxics = toxics
        self._on_done = on_done
        # Keyed by the stream each socket feeds: the client socket under UPSTREAM.
        self._transports: dict[Stream, asyncio.Transport] = {}
        self._core: Connection | None = None
        self._inbox: deque[Input] = deque()
        self._stepping = False
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._done = False

    def client_protocol(self) -> asyncio.Protocol:
        return _Side(self, Stream.UPSTREAM)

    def now(self) -> float:
        return self._loop.time()

    def attached(self, stream: Stream, transport: asyncio.Transport) -> None:
        if self._done:
            transport.abort()
            return
        self._transports[stream] = transport
        if stream is Stream.UPSTREAM:
            transport.pause_reading()
            self._connecting = self._loop.create_task(self._connect())
            return
        self._core = Connection(self._rng)
        for toxic in self._toxics():
            self.feed(ToxicAdded(toxic, self.now()))
        if not self._done:
            self._transports[Stream.UPSTREAM].resume_reading()

    async def _connect(self) -> None:
        host, port = self._upstream
        try:
            await self._loop.create_connection(lambda: _Side(self, Stream.DOWNSTREAM), host, port)
        except OSError:
            # Toxiproxy accepts, fails to dial, and closes the client: so do we.
            self._connecting = None
            self.abort()

    def feed(self, inp: Input) -> None:
        if self._core is None or self._done:
            return
        self._inbox.append(inp)
        if self._stepping:
            # Re-entered from a transport callback (pause_writing inside write()): the outer
            # loop picks the input up, so outputs still execute in order.
            return
        self._stepping = True
        try:
            while self._inbox and not self._done:
                for output in self._core.step(self._inbox.popleft()):
                    self._execute(output)
        finally:
            self._stepping = False

    def lost(self, stream: Stream) -> None:
        if self._done:
            return
        if self._core is None:
            self.abort()
        else:
            self.feed(PeerLost(stream, self.now()))

    def abort(self) -> None:
        """Drop the connection now (proxy disabled, deleted, or server stopping)."""
        self._finish(reset=False, graceful=False)

    def _execute(self, output: Output) -> None:
        match output:
            case Send(stream=stream, data=data):
                self._transports[stream.other].write(data)
            case SendEof(stream=stream):
                try:
                    self._transports[stream.other].write_eof()
                except OSError:
                    self.feed(PeerLost(stream.other, self.now()))
            case Close(reset=reset):
                self._finish(reset=reset, graceful=not reset)
            case SetTimer(at=at):
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                if at is not None:
                    self._timer = self._loop.call_at(at, self._fire, at)
            case PauseReading(stream=stream):
                self._transports[stream].pause_reading()
            case ResumeReading(stream=stream):
                self._transports[stream].resume_reading()

    def _fire(self, at: float) -> None:
        self._timer = None
        # call_at may run a hair early (clock resolution); the loop decided it is due.
        self.feed(TimerFired(max(self.now(), at)))

    def _finish(self, *, reset: bool, graceful: bool) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        for transport in self._transports.values():
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                    except OSError:
                        pass  # already dead: nothing left to reset
                transport.abort()
            elif graceful:
                transport.close()  # after the data already handed to the transport
            else:
                transport.abort()
        self._on_done(self)

"""Fire-and-forget messages between nodes over framed TCP, matched to replies by request id.

The cores speak in ``Send(to, request_id, message)`` outputs and ``Response(from, request_id,
reply)`` inputs and own every timeout and retry, so this layer promises little: messages to one
peer arrive in the order sent or not at all; a lost connection is reported through ``on_down``
and the next send dials again. Frames written in one event-loop turn go out in one write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from bifrost.net.framing import FrameDecoder, FrameTooLarge, encode_frame

log = logging.getLogger(__name__)

# Outgoing bytes a connection may buffer for a peer that does not read: past the high mark the
# transport says it is paused; past the hard cap the connection is dropped (what it carried is
# lost, and the cores' timeouts resend it to someone who reads) rather than grow the heap.
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_HARD_CAP = 64 * 1024 * 1024


class Codec(Protocol):
    def encode(self, request_id: int, message: Any) -> bytes: ...

    def decode(self, frame: bytes) -> tuple[int, Any]: ...


class _FrameProtocol(asyncio.Protocol):
    """One TCP connection: frames in, frames out (coalesced per loop turn)."""

    def __init__(
        self,
        codec: Codec,
        on_message: Callable[[_FrameProtocol, int, Any], None],
        on_lost: Callable[[_FrameProtocol], None],
    ) -> None:
        self._codec = codec
        self._on_message = on_message
        self._on_lost = on_lost
        self._decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.receive_data(data)
            for frame in frames:
                request_id, message = self._codec.decode(frame)
                self._on_message(self, request_id, message)
        except (FrameTooLarge, ValueError) as e:
            # A peer that sends garbage gets disconnected; nothing it sent is acted upon further.
            log.warning("dropping connection after a malformed frame", extra={"error": str(e)})
            self.close()

    def send(self, request_id: int, message: Any) -> None:
        if self.closed or self._transport is None:
            return
        self._out.append(encode_frame(self._codec.encode(request_id, message)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._out))
            if self.paused and self._transport.get_write_buffer_size() > WRITE_HARD_CAP:
                log.warning("dropping a connection whose peer does not read", extra={"buffered": WRITE_HARD_CAP})
                self._transport.abort()
        self._out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(self)

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()


class MessageServer:
    """Accepts connections; hands each request to ``on_request(reply, request_id, message)``,
    where ``reply(request_id, message)`` answers on the connection the request came from."""

    def __init__(
        self, codec: Codec, on_request: Callable[[Callable[[int, Any], None], int, Any], None]
    ) -> None:
        self._codec = codec
        self._on_request = on_request
        self._server: asyncio.Server | None = None
        self._conns: set[_FrameProtocol] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_protocol, host, port, reuse_address=True)
        return self._server.sockets[0].getsockname()[1]

    def _new_protocol(self) -> _FrameProtocol:
        proto = _FrameProtocol(
            self._codec, lambda conn, rid, msg: self._on_request(conn.send, rid, msg), self._conns.discard
        )
        self._conns.add(proto)
        return proto

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                conn.close()
            await self._server.wait_closed()


class Peers:
    """Outbound connections, one per peer node, dialled on first send."""

    def __init__(
        self,
        codec: Codec,
        address_of: Callable[[int], tuple[str, int] | None],
        on_reply: Callable[[int, int, Any], None],
        on_down: Callable[[int], None] = lambda node: None,
    ) -> None:
        self._codec = codec
        self._address_of = address_of
        self._on_reply = on_reply
        self._on_down = on_down
        self._conns: dict[int, _FrameProtocol] = {}
        self._dialling: dict[int, list[tuple[int, Any]]] = {}
        self._closed = False

    def send(self, node: int, request_id: int, message: Any) -> None:
        conn = self._conns.get(node)
        if conn is not None and not conn.closed:
            conn.send(request_id, message)
            return
        if node in self._dialling:
            self._dialling[node].append((request_id, message))
            return
        self._dialling[node] = [(request_id, message)]
        asyncio.ensure_future(self._dial(node))

    async def _dial(self, node: int) -> None:
        address = self._address_of(node)
        queued = self._dialling.get(node, [])
        try:
            if address is None or self._closed:
                raise ConnectionError(f"no address for node {node}")
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(
                lambda: _FrameProtocol(
                    self._codec,
                    lambda c, rid, msg: self._on_reply(node, rid, msg),
                    lambda c: self._lost(node, c),
                ),
                *address,
            )
        except OSError as e:
            self._dialling.pop(node, None)
            log.debug("cannot reach node", extra={"peer": node, "error": str(e)})
            self._on_down(node)
            return
        self._dialling.pop(node, None)
        self._conns[node] = proto
        for request_id, message in queued:
            proto.send(request_id, message)

    def _lost(self, node: int, conn: _FrameProtocol) -> None:
        if self._conns.get(node) is conn:
            del self._conns[node]
            self._on_down(node)

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()

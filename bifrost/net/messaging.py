"""Fire-and-forget messages between nodes over framed TCP, matched to replies by request id.

The cores speak in ``Send(to, request_id, message)`` outputs and ``Response(from, request_id,
reply)`` inputs and own every timeout and retry, so this layer promises little: messages to one
peer arrive in the order sent or not at all; a lost connection is reported through ``on_down``
and the next send dials again. Messages sent in one event-loop turn go out in one write, and,
with a codec that can batch (``BatchCodec``), in one frame: at tens of thousands of messages
a second, a frame header, an encoder call and a decoder call per message are what costs.

**Trust.** Every connection starts with the mutual HMAC handshake of ``bifrost.net.core`` (the
server speaks first); until it completes nothing is decoded as a message and only the
handshake's fixed-size messages are parsed (no announced length is trusted), and a handshake
that is garbage, wrong or slower than ``handshake_timeout_s`` closes the connection. The authenticated identity of the peer then
travels with every request it sends (``on_request(peer, reply, request_id, message)``). There is
no per-message crypto: the connection is what is authenticated.

**Limits.** Frames above ``max_frame`` close the connection before they are buffered; at most
``max_handshaking`` connections may be in their handshake, ``max_connections`` authenticated and
``max_per_peer`` per peer node (a connection over a cap is refused at once); an inbound
connection that carries nothing for ``idle_timeout_s`` is closed (live peers send heartbeats
every 200 ms); a peer that does not read its replies stops being read. Every refusal is
counted by reason in ``Refusals`` (exported on /metrics) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from bifrost.core._errors import LocalProtocolError
from bifrost.core._types import GenerationalNodeId
from bifrost.limits import DEFAULT_MAX_RECORD_BYTES, max_frame_bytes
from bifrost.net.core import (
    NONCE_BYTES,
    Admit,
    Authenticated,
    DataReceived,
    Handshake,
    HandshakeFailed,
    HandshakeOutput,
    Refusal,
    Role,
    SendBytes,
    Start,
)
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


class BatchCodec(Codec, Protocol):
    """A codec that also puts several messages in one frame."""

    def encode_batch(self, messages: Sequence[tuple[int, Any]]) -> bytes: ...

    def decode_all(self, frame: bytes) -> Sequence[tuple[int, Any]]:
        """The messages of a frame made by ``encode`` or ``encode_batch``; ValueError if malformed."""
        ...


class _Framing:
    """Messages to frame payloads and back, batched when the codec can."""

    def __init__(self, codec: Codec, max_frame: int) -> None:
        self._codec = codec
        self._max = max_frame
        batches = hasattr(codec, "encode_batch") and hasattr(codec, "decode_all")
        self._batch = cast(BatchCodec, codec).encode_batch if batches else None
        self.decode_all: Callable[[bytes], Sequence[tuple[int, Any]]] = (
            cast(BatchCodec, codec).decode_all if batches else lambda frame: (codec.decode(frame),)
        )

    def payloads(self, messages: list[tuple[int, Any]], peer: object) -> list[bytes]:
        if self._batch is not None and len(messages) > 1:
            payload = self._batch(messages)
            if len(payload) <= self._max:
                return [payload]
            if len(messages) > 2:  # too big together (large records): halve until each fits
                half = len(messages) // 2
                return self.payloads(messages[:half], peer) + self.payloads(messages[half:], peer)
        out = []
        for request_id, message in messages:
            payload = self._codec.encode(request_id, message)
            if len(payload) > self._max:
                # The peer would cut the connection (and everything else on it) for this frame.
                log.error(
                    "dropping an outgoing frame over the frame limit",
                    extra={"peer": str(peer), "bytes": len(payload), "limit": self._max},
                )
                continue
            out.append(payload)
        return out


# reply(request_id, message) answers on the connection the request came from.
Reply = Callable[[int, Any], None]
# on_request(peer, reply, request_id, message): peer is the connection's authenticated identity.
OnRequest = Callable[[GenerationalNodeId, Reply, int, Any], None]


@dataclass(frozen=True, slots=True)
class DataPortAuth:
    """Who we are on the data port, the cluster secret, and who we accept (``admit`` returns a
    Refusal for an unknown node or a stale generation, None to accept)."""

    secret: bytes
    me: GenerationalNodeId
    admit: Admit


def _fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 16


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_frame: int = max_frame_bytes(DEFAULT_MAX_RECORD_BYTES)
    max_connections: int = 256
    max_per_peer: int = 8
    max_handshaking: int = 64
    handshake_timeout_s: float = 5.0
    idle_timeout_s: float = 30.0

    @classmethod
    def for_process(cls, max_record_bytes: int) -> ConnectionLimits:
        """Caps that leave most of this process's file descriptors to its other listeners."""
        fds = _fd_limit()
        return cls(
            max_frame=max_frame_bytes(max_record_bytes),
            max_connections=max(16, min(256, fds // 8)),
            max_handshaking=max(4, min(64, fds // 32)),
        )


class Refusals:
    """Refused connections and messages by reason (for /metrics). Each reason is logged for its
    first few occurrences and then every 1000th, so a flood of forgeries cannot flood the log."""

    _LOG_FIRST = 5
    _LOG_EVERY = 1000

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, reason: str, detail: str = "") -> None:
        n = self.counts.get(reason, 0) + 1
        self.counts[reason] = n
        if n <= self._LOG_FIRST or n % self._LOG_EVERY == 0:
            log.warning("data port refused", extra={"reason": reason, "detail": detail, "count": n})


def _reason(refusal: Refusal) -> str:
    return refusal.name.lower().replace("_", "-")


class _Connection(asyncio.Protocol):
    """One TCP connection: the handshake, then frames in and frames out (coalesced per turn)."""

    def __init__(
        self,
        codec: Codec,
        handshake: Handshake,
        limits: ConnectionLimits,
        refusals: Refusals,
        *,
        on_made: Callable[[_Connection], bool],
        on_authenticated: Callable[[_Connection], None],
        on_message: Callable[[_Connection, int, Any], None],
        on_lost: Callable[[_Connection], None],
    ) -> None:
        self._framing = _Framing(codec, limits.max_frame)
        self._hs = handshake
        self._limits = limits
        self._refusals = refusals
        self._on_made = on_made
        self._on_authenticated = on_authenticated
        self._on_message = on_message
        self._on_lost = on_lost
        self._server = handshake.role is Role.SERVER
        self._decoder: FrameDecoder | None = None
        self._transport: asyncio.Transport | None = None
        self._out: list[tuple[int, Any]] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self.peer: GenerationalNodeId | None = None
        self.closed = False
        self.paused = False
        # Clients wait on this for the handshake's outcome.
        self.ready: asyncio.Future[GenerationalNodeId] = asyncio.get_running_loop().create_future()
        if self._server:
            self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        with contextlib.suppress(NotImplementedError):  # transports that do not buffer (test doubles)
            self._transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if not self._on_made(self):
            self._transport.close()
            self.closed = True
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._limits.handshake_timeout_s, self._handshake_expired)
        self._run(self._hs.step(Start()))

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._decoder is None:
            try:
                outputs = self._hs.step(DataReceived(data))
            except LocalProtocolError as e:
                self._fail("handshake-error", str(e))
                return
            self._run(outputs)
            return
        if self._server:
            self._last_rx = asyncio.get_running_loop().time()
        self._frames(data)

    def pause_writing(self) -> None:
        # A peer that does not read its replies gets no more requests read from it (and one that
        # lets the buffer pass WRITE_HARD_CAP anyway is cut off in _flush).
        self.paused = True
        if self._server and self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self._server and self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection closed during the handshake"))
        self._on_lost(self)

    # --- handshake ---

    def _run(self, outputs: list[HandshakeOutput]) -> None:
        for out in outputs:
            if isinstance(out, SendBytes):
                if self._transport is not None:
                    self._transport.write(out.data)
            elif isinstance(out, Authenticated):
                self._open(out.peer, out.rest)
            elif isinstance(out, HandshakeFailed):
                prefix = "" if self._server else "dial-"
                self._fail(prefix + _reason(out.reason), out.detail)

    def _open(self, peer: GenerationalNodeId, rest: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.peer = peer
        self._decoder = FrameDecoder(self._limits.max_frame)
        self._on_authenticated(self)
        self.ready.set_result(peer)
        if self._server:
            self._last_rx = asyncio.get_running_loop().time()
            self._timer = asyncio.get_running_loop().call_later(self._limits.idle_timeout_s, self._check_idle)
        if rest:
            self._frames(rest)

    def _handshake_expired(self) -> None:
        self._timer = None
        self._fail("handshake-timeout" if self._server else "dial-handshake-timeout", "")

    def _fail(self, reason: str, detail: str) -> None:
        self._refusals.count(reason, detail)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{reason}: {detail}" if detail else reason))
        self.close()

    def _check_idle(self) -> None:
        self._timer = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        due = self._last_rx + self._limits.idle_timeout_s
        if loop.time() >= due:
            self._fail("idle", f"nothing from {self.peer} for {self._limits.idle_timeout_s}s")
        else:
            self._timer = loop.call_at(due, self._check_idle)

    # --- messages ---

    def _frames(self, data: bytes) -> None:
        assert self._decoder is not None
        try:
            frames = self._decoder.receive_data(data)
        except FrameTooLarge as e:
            self._fail("frame-too-large", f"from {self.peer}: {e}")
            return
        decode_all = self._framing.decode_all
        on_message = self._on_message
        for frame in frames:
            try:
                messages = decode_all(frame)
            except ValueError as e:
                self._fail("malformed-frame", f"from {self.peer}: {e}")
                return
            for request_id, message in messages:
                if self.closed:
                    return  # a handler closed us: nothing it sent after is acted upon
                try:
                    on_message(self, request_id, message)
                except Exception as e:  # a handler bug must not take the event loop's callback down
                    log.exception("data port handler failed", extra={"peer": str(self.peer)})
                    self._fail("handler-error", f"{type(e).__name__}: {e}")
                    return

    def send(self, request_id: int, message: Any) -> None:
        if self.closed or self._transport is None or self._decoder is None:
            return
        self._out.append((request_id, message))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if not out or self._transport is None or self.closed:
            return
        payloads = self._framing.payloads(out, self.peer)
        self._transport.write(b"".join([encode_frame(p) for p in payloads]))
        if self.paused and self._transport.get_write_buffer_size() > WRITE_HARD_CAP:
            log.warning("dropping a connection whose peer does not read", extra={"buffered": WRITE_HARD_CAP})
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.close()


class MessageServer:
    """Accepts authenticated connections; hands each request to ``on_request(peer, reply,
    request_id, message)``, where ``reply`` answers on the connection the request came from."""

    def __init__(
        self,
        codec: Codec,
        auth: DataPortAuth,
        on_request: OnRequest,
        limits: ConnectionLimits | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        self._codec = codec
        self._auth = auth
        self._on_request = on_request
        self.limits = limits or ConnectionLimits()
        self.refusals = refusals or Refusals()
        self._server: asyncio.Server | None = None
        self._handshaking: set[_Connection] = set()
        self._open: set[_Connection] = set()
        self._per_peer: dict[int, int] = {}

    @property
    def connections(self) -> tuple[int, int]:
        """(in their handshake, authenticated)."""
        return len(self._handshaking), len(self._open)

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.new_connection, host, port, reuse_address=True)
        return self._server.sockets[0].getsockname()[1]

    def new_connection(self) -> asyncio.Protocol:
        """The protocol of one accepted connection (the listener calls this; so may a test that
        feeds a connection without a socket)."""
        handshake = Handshake(
            Role.SERVER, self._auth.secret, self._auth.me, secrets.token_bytes(NONCE_BYTES), self._admit
        )
        return _Connection(
            self._codec,
            handshake,
            self.limits,
            self.refusals,
            on_made=self._made,
            on_authenticated=self._authenticated,
            on_message=lambda conn, rid, msg: self._on_request(
                cast(GenerationalNodeId, conn.peer), conn.send, rid, msg
            ),
            on_lost=self._lost,
        )

    def _made(self, conn: _Connection) -> bool:
        if len(self._handshaking) >= self.limits.max_handshaking:
            self.refusals.count("too-many-handshakes", f"{len(self._handshaking)} connections in handshake")
            return False
        self._handshaking.add(conn)
        return True

    def _admit(self, peer: GenerationalNodeId) -> Refusal | None:
        refusal = self._auth.admit(peer)
        if refusal is not None:
            return refusal
        if len(self._open) >= self.limits.max_connections:
            return Refusal.TOO_MANY_CONNECTIONS
        if self._per_peer.get(peer.node, 0) >= self.limits.max_per_peer:
            return Refusal.TOO_MANY_CONNECTIONS
        return None

    def _authenticated(self, conn: _Connection) -> None:
        assert conn.peer is not None
        self._handshaking.discard(conn)
        self._open.add(conn)
        self._per_peer[conn.peer.node] = self._per_peer.get(conn.peer.node, 0) + 1

    def _lost(self, conn: _Connection) -> None:
        self._handshaking.discard(conn)
        if conn in self._open:
            self._open.discard(conn)
            assert conn.peer is not None
            left = self._per_peer[conn.peer.node] - 1
            if left:
                self._per_peer[conn.peer.node] = left
            else:
                del self._per_peer[conn.peer.node]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in [*self._handshaking, *self._open]:
                conn.close()
            await self._server.wait_closed()


class Peers:
    """Outbound connections, one per peer node, dialled (and authenticated) on first send."""

    def __init__(
        self,
        codec: Codec,
        auth: DataPortAuth,
        address_of: Callable[[int], tuple[str, int] | None],
        on_reply: Callable[[int, int, Any], None],
        on_down: Callable[[int], None] = lambda node: None,
        limits: ConnectionLimits | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        self._codec = codec
        self._auth = auth
        self._address_of = address_of
        self._on_reply = on_reply
        self._on_down = on_down
        self._limits = limits or ConnectionLimits()
        self._refusals = refusals or Refusals()
        self._conns: dict[int, _Connection] = {}
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

    def _connection(self, node: int) -> _Connection:
        handshake = Handshake(
            Role.CLIENT,
            self._auth.secret,
            self._auth.me,
            secrets.token_bytes(NONCE_BYTES),
            self._auth.admit,
            expect_node=node,
        )
        return _Connection(
            self._codec,
            handshake,
            self._limits,
            self._refusals,
            on_made=lambda c: True,
            on_authenticated=lambda c: None,
            on_message=lambda c, rid, msg: self._on_reply(node, rid, msg),
            on_lost=lambda c: self._lost(node, c),
        )

    async def _dial(self, node: int) -> None:
        address = self._address_of(node)
        queued = self._dialling.get(node, [])
        conn: _Connection | None = None
        try:
            if address is None or self._closed:
                raise ConnectionError(f"no address for node {node}")
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self._limits.handshake_timeout_s):
                _, conn = await loop.create_connection(lambda: self._connection(node), *address)
                await conn.ready
        except (OSError, TimeoutError) as e:
            if conn is not None:
                conn.close()
            self._dialling.pop(node, None)
            log.debug("cannot reach node", extra={"peer": node, "error": str(e)})
            self._on_down(node)
            return
        self._dialling.pop(node, None)
        if self._closed:
            conn.close()
            return
        self._conns[node] = conn
        for request_id, message in queued:
            conn.send(request_id, message)

    def _lost(self, node: int, conn: _Connection) -> None:
        if self._conns.get(node) is conn:
            del self._conns[node]
            self._on_down(node)

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()

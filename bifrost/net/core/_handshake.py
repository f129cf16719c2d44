"""The data port's mutual authentication: an HMAC-SHA256 challenge/response, sans-I/O.

Both ends hold the cluster secret. The server speaks first with a fresh nonce; the client
answers with its identity (node id and generation), its own nonce and a MAC; the server checks
the MAC and the identity, then proves that it holds the secret too. Nothing else crosses the
connection before that: the shell feeds bytes in and writes the bytes that come out, and hands
the connection to the message layer only on ``Authenticated``.

Wire (integers big-endian; every message has a fixed size, so no length a peer announces is
trusted before authentication, and a server waits for at most 81 bytes)::

    HELLO    server -> client   MAGIC 0x01 server_nonce[32]                              37 bytes
    AUTH     client -> server   MAGIC 0x02 node:u32 generation:u64 client_nonce[32] mac_c[32]  81 bytes
    WELCOME  server -> client   MAGIC 0x03 node:u32 generation:u64 mac_s[32]                49 bytes
    REFUSE   server -> client   MAGIC 0x04 reason:u8                                         6 bytes

    mac_c = HMAC(secret, "durastate/data/client" | server_nonce | client_nonce
                         | client node, generation | server node)
    mac_s = HMAC(secret, "durastate/data/server" | server_nonce | client_nonce
                         | client node, generation | server node, generation)

The labels keep one side's MAC from being replayed as the other's; the nonces make every MAC
single-use; the server's node id inside ``mac_c`` stops an AUTH meant for one node from being
relayed to another. MACs are compared with ``hmac.compare_digest``.

Transitions (``step(input) -> [output]``; anything else is a ``LocalProtocolError`` and FAILED)::

    role    state          input          -> outputs                                  next
    server  START          Start          -> SendBytes(HELLO)                         AWAIT_AUTH
    server  AWAIT_AUTH     DataReceived   -> (need more)                              AWAIT_AUTH
                                          -> SendBytes(WELCOME), Authenticated        DONE
                                          -> SendBytes(REFUSE), HandshakeFailed       FAILED
    client  START          Start          -> (nothing: the server speaks first)       AWAIT_HELLO
    client  AWAIT_HELLO    DataReceived   -> SendBytes(AUTH)                          AWAIT_WELCOME
                                          -> HandshakeFailed                          FAILED
    client  AWAIT_WELCOME  DataReceived   -> Authenticated | HandshakeFailed          DONE | FAILED

``admit(peer)`` is the caller's identity rule (node known, generation not stale); it returns
``None`` to accept or the ``Refusal`` to give. Timeouts are the shell's: the core has no clock.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

from bifrost.core._errors import LocalProtocolError
from bifrost.core._types import GenerationalNodeId

MAGIC = b"DSH1"
NONCE_BYTES = 32
MAC_BYTES = 32
MIN_SECRET_BYTES = 16

_HEAD = struct.Struct(">4sB")
_IDENTITY = struct.Struct(">IQ")
_HELLO, _AUTH, _WELCOME, _REFUSE = 1, 2, 3, 4
_SIZES = {
    _HELLO: _HEAD.size + NONCE_BYTES,
    _AUTH: _HEAD.size + _IDENTITY.size + NONCE_BYTES + MAC_BYTES,
    _WELCOME: _HEAD.size + _IDENTITY.size + MAC_BYTES,
    _REFUSE: _HEAD.size + 1,
}
MAX_HANDSHAKE_MESSAGE = max(_SIZES.values())
_MAX_U32 = 2**32 - 1
_MAX_U64 = 2**64 - 1


class Refusal(enum.Enum):
    """Why a handshake failed; the value is the REFUSE byte on the wire."""

    MALFORMED = 1
    BAD_MAC = 2
    UNKNOWN_NODE = 3
    STALE_GENERATION = 4
    WRONG_PEER = 5
    """The server is not the node the client dialled."""
    BY_PEER = 6
    """The other end refused us (the detail says why)."""
    TOO_MANY_CONNECTIONS = 7


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class HandshakeState(enum.Enum):
    START = "start"
    AWAIT_HELLO = "await-hello"
    AWAIT_AUTH = "await-auth"
    AWAIT_WELCOME = "await-welcome"
    DONE = "done"
    FAILED = "failed"


# --- inputs and outputs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    pass


@dataclass(frozen=True, slots=True)
class DataReceived:
    data: bytes


HandshakeInput = Start | DataReceived


@dataclass(frozen=True, slots=True)
class SendBytes:
    data: bytes


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The peer proved the secret and passed ``admit``; ``rest`` is what followed the handshake
    in the same read, and belongs to the message layer."""

    peer: GenerationalNodeId
    rest: bytes


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    reason: Refusal
    detail: str


HandshakeOutput = SendBytes | Authenticated | HandshakeFailed

Admit = Callable[[GenerationalNodeId], "Refusal | None"]


def _mac(secret: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, label + b"".join(parts), hashlib.sha256).digest()


def _identity(node: GenerationalNodeId) -> bytes:
    return _IDENTITY.pack(node.node, node.generation)


def _refusal_from_wire(code: int) -> str:
    try:
        return Refusal(code).name.lower().replace("_", " ")
    except ValueError:
        return f"code {code}"


class Handshake:
    """One end of one connection's handshake. ``nonce`` must be fresh random bytes (the shell's
    ``secrets.token_bytes``); ``expect_node`` is the node a client dialled."""

    def __init__(
        self,
        role: Role,
        secret: bytes,
        me: GenerationalNodeId,
        nonce: bytes,
        admit: Admit,
        expect_node: int | None = None,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"a nonce is {NONCE_BYTES} bytes, got {len(nonce)}")
        if not (0 <= me.node <= _MAX_U32 and 0 <= me.generation <= _MAX_U64):
            raise ValueError(f"identity {me} does not fit the handshake's u32 node and u64 generation")
        if role is Role.CLIENT and (expect_node is None or not 0 <= expect_node <= _MAX_U32):
            raise ValueError("a client handshake needs the node id it dialled")
        self._role = role
        self._secret = secret
        self._me = me
        self._nonce = nonce
        self._admit = admit
        self._expect_node = expect_node
        self._state = HandshakeState.START
        self._buf = bytearray()
        self._server_nonce = b""
        self._peer: GenerationalNodeId | None = None

    @property
    def state(self) -> HandshakeState:
        return self._state

    @property
    def role(self) -> Role:
        return self._role

    @property
    def peer(self) -> GenerationalNodeId | None:
        return self._peer

    def step(self, inp: HandshakeInput) -> list[HandshakeOutput]:
        handler = _TABLE.get((self._role, self._state, type(inp)))
        if handler is None:
            state = self._state
            self._state = HandshakeState.FAILED
            raise LocalProtocolError(
                f"{self._role.value} handshake has no transition for {type(inp).__name__} in {state.value}"
            )
        return handler(self, inp)

    # --- helpers ---

    def _fail(self, reason: Refusal, detail: str, refuse: bool) -> list[HandshakeOutput]:
        self._state = HandshakeState.FAILED
        self._buf.clear()
        out: list[HandshakeOutput] = []
        if refuse:
            out.append(SendBytes(_HEAD.pack(MAGIC, _REFUSE) + bytes((reason.value,))))
        out.append(HandshakeFailed(reason, detail))
        return out

    def _take(self, kinds: tuple[int, ...]) -> tuple[int, bytes] | Refusal | None:
        """The next whole message of one of ``kinds``; None while incomplete; MALFORMED as soon
        as the bytes so far cannot start one (garbage is refused without waiting for more)."""
        head = bytes(self._buf[: _HEAD.size])
        if MAGIC[: len(head)] != head[: len(MAGIC)]:
            return Refusal.MALFORMED
        if len(head) < _HEAD.size:
            return None
        kind = head[len(MAGIC)]
        if kind not in kinds:
            return Refusal.MALFORMED
        size = _SIZES[kind]
        if len(self._buf) < size:
            return None
        msg = bytes(self._buf[:size])
        del self._buf[:size]
        return kind, msg

    def _done(self, peer: GenerationalNodeId, before: list[HandshakeOutput]) -> list[HandshakeOutput]:
        self._state = HandshakeState.DONE
        self._peer = peer
        rest = bytes(self._buf)
        self._buf.clear()
        return [*before, Authenticated(peer, rest)]

    # --- server ---

    def _server_start(self, inp: HandshakeInput) -> list[HandshakeOutput]:
        self._state = HandshakeState.AWAIT_AUTH
        self._server_nonce = self._nonce
        return [SendBytes(_HEAD.pack(MAGIC, _HELLO) + self._nonce)]

    def _server_data(self, inp: HandshakeInput) -> list[HandshakeOutput]:
        assert isinstance(inp, DataReceived)
        self._buf += inp.data
        got = self._take((_AUTH,))
        if got is None:
            return []
        if isinstance(got, Refusal):
            return self._fail(got, "not a durastate data-port handshake", refuse=True)
        _, msg = got
        pos = _HEAD.size
        node, generation = _IDENTITY.unpack_from(msg, pos)
        pos += _IDENTITY.size
        client_nonce = msg[pos : pos + NONCE_BYTES]
        mac = msg[pos + NONCE_BYTES :]
        peer = GenerationalNodeId(node, generation)
        expected = _mac(
            self._secret,
            b"durastate/data/client",
            self._server_nonce,
            client_nonce,
            _identity(peer),
            struct.pack(">I", self._me.node),
        )
        if not hmac.compare_digest(mac, expected):
            return self._fail(Refusal.BAD_MAC, f"{peer} failed authentication (wrong cluster secret?)", True)
        refusal = self._admit(peer)
        if refusal is not None:
            return self._fail(refusal, f"{peer} refused: {refusal.name.lower()}", refuse=True)
        mac_s = _mac(
            self._secret,
            b"durastate/data/server",
            self._server_nonce,
            client_nonce,
            _identity(peer),
            _identity(self._me),
        )
        welcome = _HEAD.pack(MAGIC, _WELCOME) + _identity(self._me) + mac_s
        return self._done(peer, [SendBytes(welcome)])

    # --- client ---

    def _client_start(self, inp: HandshakeInput) -> list[HandshakeOutput]:
        self._state = HandshakeState.AWAIT_HELLO
        return []

    def _client_hello(self, inp: HandshakeInput) -> list[HandshakeOutput]:
        assert isinstance(inp, DataReceived)
        self._buf += inp.data
        got = self._take((_HELLO,))
        if got is None:
            return []
        if isinstance(got, Refusal):
            return self._fail(got, "the server did not greet with a durastate handshake", refuse=False)
        _, msg = got
        self._server_nonce = msg[_HEAD.size :]
        assert self._expect_node is not None
        mac = _mac(
            self._secret,
            b"durastate/data/client",
            self._server_nonce,
            self._nonce,
            _identity(self._me),
            struct.pack(">I", self._expect_node),
        )
        self._state = HandshakeState.AWAIT_WELCOME
        auth = _HEAD.pack(MAGIC, _AUTH) + _identity(self._me) + self._nonce + mac
        out: list[HandshakeOutput] = [SendBytes(auth)]
        if self._buf:  # a server never speaks twice before our AUTH; parse what came along
            out += self._client_welcome(DataReceived(b""))
        return out

    def _client_welcome(self, inp: HandshakeInput) -> list[HandshakeOutput]:
        assert isinstance(inp, DataReceived)
        self._buf += inp.data
        got = self._take((_WELCOME, _REFUSE))
        if got is None:
            return []
        if isinstance(got, Refusal):
            return self._fail(got, "malformed answer to our handshake", refuse=False)
        kind, msg = got
        if kind == _REFUSE:
            return self._fail(Refusal.BY_PEER, f"refused by the server: {_refusal_from_wire(msg[-1])}", False)
        node, generation = _IDENTITY.unpack_from(msg, _HEAD.size)
        mac = msg[_HEAD.size + _IDENTITY.size :]
        server = GenerationalNodeId(node, generation)
        expected = _mac(
            self._secret,
            b"durastate/data/server",
            self._server_nonce,
            self._nonce,
            _identity(self._me),
            _identity(server),
        )
        if not hmac.compare_digest(mac, expected):
            return self._fail(Refusal.BAD_MAC, f"server {server} failed authentication", refuse=False)
        if server.node != self._expect_node:
            return self._fail(
                Refusal.WRONG_PEER, f"dialled N{self._expect_node} but {server} answered", refuse=False
            )
        refusal = self._admit(server)
        if refusal is not None:
            return self._fail(refusal, f"server {server} refused: {refusal.name.lower()}", refuse=False)
        return self._done(server, [])


_Handler = Callable[[Handshake, HandshakeInput], list[HandshakeOutput]]

_TABLE: dict[tuple[Role, HandshakeState, type], _Handler] = {
    (Role.SERVER, HandshakeState.START, Start): Handshake._server_start,
    (Role.SERVER, HandshakeState.AWAIT_AUTH, DataReceived): Handshake._server_data,
    (Role.CLIENT, HandshakeState.START, Start): Handshake._client_start,
    (Role.CLIENT, HandshakeState.AWAIT_HELLO, DataReceived): Handshake._client_hello,
    (Role.CLIENT, HandshakeState.AWAIT_WELCOME, DataReceived): Handshake._client_welcome,
}
"""(role, state, input type) -> handler: the table in the module docstring, as data."""

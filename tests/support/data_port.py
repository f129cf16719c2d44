"""A raw data-port client for tests that speak to a node the way an attacker (or a buggy peer)
would: plain asyncio streams, the handshake core driven by hand, frames written as they are."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bifrost.core._types import GenerationalNodeId
from bifrost.net.core import (
    NONCE_BYTES,
    Authenticated,
    DataReceived,
    Handshake,
    HandshakeFailed,
    Role,
    SendBytes,
    Start,
)
from bifrost.net.framing import FrameDecoder, encode_frame
from bifrost.replicated.messages import WireCodec

CODEC = WireCodec()


class RawPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._frames = FrameDecoder()
        self._pending: list[bytes] = []

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawPeer:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def authenticate(self, secret: bytes, me: GenerationalNodeId, dial: int) -> GenerationalNodeId:
        """Run the client handshake; the server's identity, or ConnectionError saying why not."""
        hs = Handshake(Role.CLIENT, secret, me, os.urandom(NONCE_BYTES), lambda peer: None, expect_node=dial)
        outputs = hs.step(Start())
        while True:
            for out in outputs:
                if isinstance(out, SendBytes):
                    self.writer.write(out.data)
                elif isinstance(out, Authenticated):
                    self._pending = self._frames.receive_data(out.rest)
                    return out.peer
                elif isinstance(out, HandshakeFailed):
                    raise ConnectionError(out.detail)
            data = await self.reader.read(4096)
            if not data:
                raise ConnectionError("closed during the handshake")
            outputs = hs.step(DataReceived(data))

    def send(self, request_id: int, message: Any) -> None:
        self.send_raw(encode_frame(CODEC.encode(request_id, message)))

    def send_raw(self, data: bytes) -> None:
        """Write ``data``; a node that already cut us off is what many tests expect, not an error."""
        try:
            self.writer.write(data)
        except ConnectionError:
            pass

    async def receive(self, timeout_s: float = 10.0) -> tuple[int, Any]:
        async with asyncio.timeout(timeout_s):
            while not self._pending:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed by the node")
                self._pending = self._frames.receive_data(data)
        return CODEC.decode(self._pending.pop(0))

    async def closed_by_peer(self, timeout_s: float = 10.0) -> bytes:
        """Everything the node sent until it closed the connection (fails if it does not)."""
        received = b""
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:  # reset, or our own write hit the closed socket
                    return received
                if not data:
                    return received
                received += data

    def close(self) -> None:
        self.writer.close()

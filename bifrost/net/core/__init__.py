"""Sans-I/O cores of the data port (see DESIGN.md, rule 1): the connection handshake."""

from bifrost.net.core._handshake import (
    MAX_HANDSHAKE_MESSAGE,
    MIN_SECRET_BYTES,
    NONCE_BYTES,
    Admit,
    Authenticated,
    DataReceived,
    Handshake,
    HandshakeFailed,
    HandshakeInput,
    HandshakeOutput,
    HandshakeState,
    Refusal,
    Role,
    SendBytes,
    Start,
)

__all__ = [
    "MAX_HANDSHAKE_MESSAGE",
    "MIN_SECRET_BYTES",
    "NONCE_BYTES",
    "Admit",
    "Authenticated",
    "DataReceived",
    "Handshake",
    "HandshakeFailed",
    "HandshakeInput",
    "HandshakeOutput",
    "HandshakeState",
    "Refusal",
    "Role",
    "SendBytes",
    "Start",
]

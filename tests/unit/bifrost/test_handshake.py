"""The data port's handshake core, driven with no I/O: every outcome, every byte split."""

from __future__ import annotations

import itertools

import pytest

from bifrost.core import LocalProtocolError
from bifrost.core._types import GenerationalNodeId
from bifrost.net.core import (
    MAX_HANDSHAKE_MESSAGE,
    Authenticated,
    DataReceived,
    Handshake,
    HandshakeFailed,
    HandshakeState,
    Refusal,
    Role,
    SendBytes,
    Start,
)

SECRET = b"s" * 32
CLIENT = GenerationalNodeId(2, 7)
SERVER = GenerationalNodeId(1, 3)
_nonces = itertools.count()


def nonce() -> bytes:
    return next(_nonces).to_bytes(32, "big")


def admit_all(peer: GenerationalNodeId) -> Refusal | None:
    return None


def pair(
    client_secret: bytes = SECRET,
    server_admit=admit_all,
    client_admit=admit_all,
    dial: int = SERVER.node,
    client: GenerationalNodeId = CLIENT,
) -> tuple[Handshake, Handshake]:
    c = Handshake(Role.CLIENT, client_secret, client, nonce(), client_admit, expect_node=dial)
    s = Handshake(Role.SERVER, SECRET, SERVER, nonce(), server_admit)
    return c, s


def sent(outputs: list) -> bytes:
    return b"".join(o.data for o in outputs if isinstance(o, SendBytes))


def run(c: Handshake, s: Handshake, split: int | None = None) -> tuple[list, list]:
    """Drive both ends to the end; each message is fed in two pieces cut at ``split``."""
    c_out, s_out = c.step(Start()), s.step(Start())
    to_client, to_server = sent(s_out), sent(c_out)
    c_all, s_all = list(c_out), list(s_out)
    while to_client or to_server:
        if to_client:
            data, to_client = to_client, b""
            for piece in _cut(data, split):
                out = c.step(DataReceived(piece))
                c_all += out
                to_server += sent(out)
        if to_server:
            data, to_server = to_server, b""
            for piece in _cut(data, split):
                if s.state in (HandshakeState.DONE, HandshakeState.FAILED):
                    break
                out = s.step(DataReceived(piece))
                s_all += out
                to_client += sent(out)
        if c.state in (HandshakeState.DONE, HandshakeState.FAILED) and not to_server:
            break
    return c_all, s_all


def _cut(data: bytes, split: int | None) -> list[bytes]:
    if split is None or split >= len(data):
        return [data]
    return [data[:split], data[split:]]


def test_both_ends_authenticate_each_other() -> None:
    c, s = pair()
    c_out, s_out = run(c, s)
    assert [o for o in s_out if isinstance(o, Authenticated)] == [Authenticated(CLIENT, b"")]
    assert [o for o in c_out if isinstance(o, Authenticated)] == [Authenticated(SERVER, b"")]
    assert (c.state, s.state) == (HandshakeState.DONE, HandshakeState.DONE)
    assert (c.peer, s.peer) == (SERVER, CLIENT)


@pytest.mark.parametrize("split", range(MAX_HANDSHAKE_MESSAGE + 1))
def test_every_byte_split(split: int) -> None:
    c, s = pair()
    run(c, s, split)
    assert (c.state, s.state) == (HandshakeState.DONE, HandshakeState.DONE)


def test_one_byte_at_a_time_and_trailing_bytes_are_handed_on() -> None:
    c, s = pair()
    hello = sent(s.step(Start()))
    c.step(Start())
    auth = b""
    for b in hello:
        auth += sent(c.step(DataReceived(bytes([b]))))
    out: list = []
    for b in auth[:-1]:
        out += s.step(DataReceived(bytes([b])))
    assert out == [] and s.state is HandshakeState.AWAIT_AUTH
    out = s.step(DataReceived(auth[-1:] + b"first frame"))
    assert out[-1] == Authenticated(CLIENT, b"first frame")
    welcome = sent(out)
    done: list = []
    for b in welcome + b"reply":
        if c.state is HandshakeState.DONE:
            break
        done += c.step(DataReceived(bytes([b])))
    assert done == [Authenticated(SERVER, b"")]


def _failure(outputs: list) -> HandshakeFailed:
    failed = [o for o in outputs if isinstance(o, HandshakeFailed)]
    assert len(failed) == 1, outputs
    return failed[0]


def test_a_wrong_secret_is_refused_by_the_server_and_the_client_hears_why() -> None:
    c, s = pair(client_secret=b"x" * 32)
    c_out, s_out = run(c, s)
    assert _failure(s_out).reason is Refusal.BAD_MAC
    assert _failure(c_out).reason is Refusal.BY_PEER and "bad mac" in _failure(c_out).detail
    assert not any(isinstance(o, Authenticated) for o in c_out + s_out)
    assert (c.state, s.state) == (HandshakeState.FAILED, HandshakeState.FAILED)


@pytest.mark.parametrize("refusal", [Refusal.UNKNOWN_NODE, Refusal.STALE_GENERATION])
def test_the_servers_identity_rule_refuses(refusal: Refusal) -> None:
    seen = []

    def admit(peer: GenerationalNodeId) -> Refusal | None:
        seen.append(peer)
        return refusal

    c, s = pair(server_admit=admit)
    c_out, s_out = run(c, s)
    assert seen == [CLIENT]
    assert _failure(s_out).reason is refusal
    assert refusal.name.lower().replace("_", " ") in _failure(c_out).detail


def test_a_client_refuses_a_server_that_is_not_the_node_it_dialled() -> None:
    c, s = pair(dial=9)
    c_out, s_out = run(c, s)
    # The client's MAC names node 9, so the real server (N1) cannot verify it either.
    assert _failure(s_out).reason is Refusal.BAD_MAC


def test_a_client_applies_its_identity_rule_to_the_server() -> None:
    c, s = pair(client_admit=lambda peer: Refusal.STALE_GENERATION)
    c_out, _ = run(c, s)
    assert _failure(c_out).reason is Refusal.STALE_GENERATION


def test_every_flipped_byte_of_auth_is_refused() -> None:
    c, s0 = pair()
    hello = sent(s0.step(Start()))
    c.step(Start())
    auth = sent(c.step(DataReceived(hello)))
    for i in range(len(auth)):
        s = Handshake(Role.SERVER, SECRET, SERVER, hello[5:], admit_all)
        s.step(Start())
        bad = bytearray(auth)
        bad[i] ^= 0x01
        out = s.step(DataReceived(bytes(bad)))
        assert s.state is HandshakeState.FAILED, i
        assert not any(isinstance(o, Authenticated) for o in out), i


def test_every_flipped_byte_of_welcome_is_refused() -> None:
    c_nonce = nonce()
    c0 = Handshake(Role.CLIENT, SECRET, CLIENT, c_nonce, admit_all, expect_node=SERVER.node)
    s = Handshake(Role.SERVER, SECRET, SERVER, nonce(), admit_all)
    hello = sent(s.step(Start()))
    c0.step(Start())
    auth = sent(c0.step(DataReceived(hello)))
    welcome = sent(s.step(DataReceived(auth)))
    for i in range(len(welcome)):
        c = Handshake(Role.CLIENT, SECRET, CLIENT, c_nonce, admit_all, expect_node=SERVER.node)
        c.step(Start())
        c.step(DataReceived(hello))
        bad = bytearray(welcome)
        bad[i] ^= 0x80
        out = c.step(DataReceived(bytes(bad)))
        assert c.state is HandshakeState.FAILED, i
        assert not any(isinstance(o, Authenticated) for o in out), i


def test_garbage_is_refused_at_its_first_wrong_byte() -> None:
    _, s = pair()
    s.step(Start())
    out = s.step(DataReceived(b"\x00"))  # a frame length header, not our magic
    assert _failure(out).reason is Refusal.MALFORMED
    assert sent(out).endswith(bytes((Refusal.MALFORMED.value,)))


def test_a_replayed_auth_fails_against_a_fresh_nonce() -> None:
    c, s = pair()
    hello = sent(s.step(Start()))
    c.step(Start())
    auth = sent(c.step(DataReceived(hello)))
    s2 = Handshake(Role.SERVER, SECRET, SERVER, nonce(), admit_all)
    s2.step(Start())
    assert _failure(s2.step(DataReceived(auth))).reason is Refusal.BAD_MAC


def test_inputs_outside_the_table_fail_the_core() -> None:
    c, s = pair()
    run(c, s)
    with pytest.raises(LocalProtocolError, match="no transition for DataReceived in done"):
        s.step(DataReceived(b"more"))
    assert s.state is HandshakeState.FAILED
    fresh = Handshake(Role.SERVER, SECRET, SERVER, nonce(), admit_all)
    with pytest.raises(LocalProtocolError):
        fresh.step(DataReceived(b"x"))


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Handshake(Role.SERVER, b"short", SERVER, nonce(), admit_all)
    with pytest.raises(ValueError, match="nonce"):
        Handshake(Role.SERVER, SECRET, SERVER, b"n", admit_all)
    with pytest.raises(ValueError, match="dialled"):
        Handshake(Role.CLIENT, SECRET, CLIENT, nonce(), admit_all)

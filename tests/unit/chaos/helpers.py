"""Blocking socket helpers for driving a proxy from test code; every wait has a deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

DEADLINE_S = 5.0


def address(listen: str) -> tuple[str, int]:
    host, port = listen.rsplit(":", 1)
    return host, int(port)


@contextmanager
def connected(listen: str, timeout: float = DEADLINE_S) -> Iterator[socket.socket]:
    sock = socket.create_connection(address(listen), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_to_eof(sock: socket.socket) -> tuple[bytes, list[int]]:
    """Everything until EOF, and the size of every read (to see how the bytes were cut)."""
    buf, sizes = bytearray(), []
    while chunk := sock.recv(65536):
        buf += chunk
        sizes.append(len(chunk))
    return bytes(buf), sizes


def round_trip(sock: socket.socket, payload: bytes) -> float:
    """Send `payload` through an echo and read it back; seconds it took."""
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def echo_all(listen: str, payload: bytes) -> tuple[bytes, list[int], float]:
    """One connection: send `payload` and half-close from a thread (so a large payload cannot
    deadlock against its own echo), read to EOF here. Returns bytes, read sizes, seconds."""
    with connected(listen) as sock:
        errors: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except BaseException as e:
                errors.append(e)

        sender = threading.Thread(target=send, daemon=True)
        start = time.monotonic()
        sender.start()
        data, sizes = read_to_eof(sock)
        elapsed = time.monotonic() - start
        sender.join(timeout=DEADLINE_S)
        assert not errors, errors
        return data, sizes, elapsed


def refuses_connections(listen: str) -> bool:
    try:
        socket.create_connection(address(listen), timeout=DEADLINE_S).close()
    except ConnectionRefusedError:
        return True
    return False

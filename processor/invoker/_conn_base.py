"""What the HTTP/2 and HTTP/1.1 connection shells share: connecting, writing, queueing, bookkeeping."""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

from processor.invoker._transport_errors import (
    ConnectFailed,
    ConnectTimeout,
    TransportClosed,
    TransportError,
)

if TYPE_CHECKING:
    from processor.invoker.transport import Endpoint, TransportConfig


class Registry:
    """The client's state that pools and connections share: config, open/closed, live connections."""

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self.closed = False
        self.connections: set[Connection] = set()
        self.connections_opened = 0

    def check_open(self) -> None:
        if self.closed:
            raise TransportClosed("transport closed")


class Waiters:
    """A FIFO of tasks waiting for a slot; a woken task that cannot use its turn goes back to the front."""

    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    async def wait(self, front: bool) -> None:
        fut = asyncio.get_running_loop().create_future()
        if front:
            self._queue.appendleft(fut)
        else:
            self._queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                self._queue.remove(fut)
            else:  # woken, then cancelled before using the turn: pass it on
                self.wake(1)
            raise

    def wake(self, count: int) -> None:
        while count > 0 and self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
                count -= 1

    def wake_all(self) -> None:
        self.wake(len(self._queue))


class Connection(asyncio.Protocol, abc.ABC):
    """An asyncio protocol around a sans-I/O session.

    Output is written once per event-loop turn (``write_soon``), so the frames one task
    produces in a row (HEADERS, DATA, END_STREAM) leave in one ``send`` call: on loopback a
    ``send`` costs far more than building a frame. Large bodies flush per frame (``flush``) and
    wait while the socket buffer is above its high-water mark.
    """

    def __init__(self, registry: Registry, endpoint: Endpoint) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.closed: asyncio.Future[None] = loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._flush_scheduled = False

    @property
    @abc.abstractmethod
    def live_streams(self) -> int: ...

    @abc.abstractmethod
    def data_to_send(self) -> bytes: ...

    @abc.abstractmethod
    def close(self, error: TransportError) -> None:
        """Fail what is in flight with ``error`` and drop the socket."""

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.registry.connections.add(self)
        self.registry.connections_opened += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        self.registry.connections.discard(self)
        self.closed.set_result(None)

    def lost_reason(self, exc: Exception | None) -> str:
        return (
            f"connection to {self.endpoint} lost: {exc}" if exc else f"{self.endpoint} closed the connection"
        )

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    @property
    def write_blocked(self) -> bool:
        """The socket buffer is over its high-water mark: write nothing more until ``drained``."""
        return not self._writable.is_set()

    async def drained(self) -> None:
        if not self._writable.is_set():
            await self._writable.wait()

    def write_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        data = self.data_to_send()
        if data and self.open:
            assert self.transport is not None
            self.transport.write(data)

    def close_socket(self) -> None:
        """Close after writing what is pending; abort if the peer is not reading it."""
        self.flush()
        if self.transport is None:
            return
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()


C = TypeVar("C", bound=Connection)


async def connect(
    endpoint: Endpoint,
    factory: Callable[[], C],
    timeout_s: float,
    ready: Callable[[C], asyncio.Future[None]] | None = None,
) -> C:
    """TCP connect and, when ``ready`` is given, wait for it (h2c: the server's SETTINGS), all
    within the connect timeout."""
    loop = asyncio.get_running_loop()
    conn: C | None = None
    try:
        async with asyncio.timeout(timeout_s):
            try:
                _, conn = await loop.create_connection(factory, endpoint.host, endpoint.port)
            except OSError as e:
                raise ConnectFailed(f"cannot connect to {endpoint}: {e}") from e
            if ready is not None:
                await ready(conn)
    except TimeoutError as e:
        error = ConnectTimeout(f"connecting to {endpoint} took over {timeout_s}s")
        if conn is not None:
            conn.close(error)
        raise error from e
    except BaseException:
        if conn is not None:
            conn.close(ConnectFailed(f"connecting to {endpoint} was abandoned"))
        raise
    if conn.registry.closed:  # the client was closed while this connection was being made
        conn.close(TransportClosed("transport closed"))
        raise TransportClosed("transport closed")
    return conn

"""One request/response exchange over either HTTP version: the object the invoker reads and writes."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from processor.invoker._transport_errors import (
    ProtocolViolation,
    StreamStateError,
    TransportError,
    UnexpectedStatus,
)
from processor.invoker._transport_events import (
    DataReceived,
    Headers,
    HeadReceived,
    StreamEnded,
    StreamEvent,
)


def find_header(headers: Headers, name: str) -> str | None:
    name = name.lower()
    for key, value in headers:
        if key == name:
            return value
    return None


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: Headers

    def get(self, name: str) -> str | None:
        return find_header(self.headers, name)


class Channel(Protocol):
    """What a stream needs from its connection."""

    async def send(self, stream: Stream, data: bytes) -> None: ...

    def end(self, stream: Stream) -> None: ...

    def reset(self, stream: Stream) -> None: ...

    def consumed(self, stream: Stream, size: int) -> None: ...


class Stream:
    """One request/response exchange (one invocation attempt).

    ``send``/``end`` write the request body; ``response()`` waits for the status and headers
    (raising ``UnexpectedStatus`` when the status is not the expected one); ``receive()``
    returns the next response body chunk, or None at the end. One task may read while another
    writes. Data received before a failure is returned before the failure is raised. Use it as
    an async context manager, or ``reset()`` it: leaving it unfinished frees nothing.
    """

    def __init__(
        self,
        channel: Channel,
        stream_id: int,
        expect_status: int | None,
        error_body_bytes: int,
        request_ended: bool = False,
    ) -> None:
        self._channel = channel
        self.stream_id = stream_id
        self._expect_status = expect_status
        self._error_body_bytes = error_body_bytes
        self._head: ResponseHead | None = None
        self._head_checked = False
        self._status_error: UnexpectedStatus | None = None
        self._chunks: deque[bytes] = deque()
        self.buffered = 0  # response bytes received and not yet read
        self._ended = False  # response complete
        self._error: TransportError | None = None
        self._local_done = request_ended  # request ended, or stream reset by us
        self._cancelled = False
        self._reader: asyncio.Future[None] | None = None
        self._sender: asyncio.Future[None] | None = None

    # -- reading -------------------------------------------------------------------------------

    @property
    def head(self) -> ResponseHead | None:
        """The response status and headers, once they arrived."""
        return self._head

    async def response(self) -> ResponseHead:
        """Wait for the response head; ``UnexpectedStatus`` (with up to a few KiB of body) if the
        status is not the expected one, after which the stream is reset."""
        if self._status_error is not None:
            raise self._status_error
        while self._head is None:
            self._check_cancelled()
            if self._error is not None:
                raise self._error
            if self._ended:
                raise ProtocolViolation(f"stream {self.stream_id} ended without a response")
            await self._wait_readable()
        head = self._head
        if not self._head_checked:
            if self._expect_status is not None and head.status != self._expect_status:
                # The exchange has failed; ending the request lets a server that finishes its
                # response only after the request ends (the Python SDK's 404) send the error body.
                await self.end()
                body = await self._error_body()
                self._status_error = UnexpectedStatus(head.status, head.headers, body)
                self.reset()
                raise self._status_error
            self._head_checked = True
        return head

    async def receive(self) -> bytes | None:
        """The next chunk of the response body as it arrived; None once the response ended."""
        if not self._head_checked:
            await self.response()
        return await self._next_chunk()

    async def _next_chunk(self) -> bytes | None:
        while True:
            self._check_cancelled()
            if self._chunks:
                data = self._chunks.popleft()
                self.buffered -= len(data)
                self._channel.consumed(self, len(data))
                return data
            if self._ended:
                return None
            if self._error is not None:
                raise self._error
            await self._wait_readable()

    async def _error_body(self) -> bytes:
        body = bytearray()
        try:
            while len(body) < self._error_body_bytes and (chunk := await self._next_chunk()) is not None:
                body += chunk
        except TransportError:
            pass
        return bytes(body[: self._error_body_bytes])

    async def _wait_readable(self) -> None:
        if self._reader is not None:
            raise StreamStateError(f"stream {self.stream_id} already has a reader")
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await self._reader
        finally:
            self._reader = None

    # -- writing -------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write request body bytes; waits for flow-control window and socket buffer room.

        Cancelled after part of ``data`` went out (h2c, large data), it resets the stream: the
        peer would otherwise see a truncated message."""
        self.check_can_send()
        if data:
            await self._channel.send(self, data)

    async def end(self) -> None:
        """Half-close: the request body is complete. A no-op once the stream can send no more."""
        if not self._local_done and self._error is None:
            self._local_done = True
            self._channel.end(self)

    def reset(self) -> None:
        """Cancel the exchange (RST_STREAM CANCEL on h2c, closing the connection on HTTP/1.1).
        Later calls on the stream raise ``StreamStateError``."""
        if self._cancelled:
            return
        self._cancelled = True
        self._local_done = True
        self._chunks.clear()
        self.buffered = 0
        self._channel.reset(self)
        self._wake_reader()
        self.wake_sender()

    def check_can_send(self) -> None:
        self._check_cancelled()
        if self._error is not None:
            raise self._error
        if self._local_done:
            raise StreamStateError(f"stream {self.stream_id}: the request body was already ended")

    def _check_cancelled(self) -> None:
        if self._cancelled:
            raise StreamStateError(f"stream {self.stream_id} was reset by the caller")

    async def wait_send_window(self) -> None:
        self._sender = asyncio.get_running_loop().create_future()
        try:
            await self._sender
        finally:
            self._sender = None

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not (self._local_done and self._ended):
            self.reset()

    # -- from the connection -------------------------------------------------------------------

    def on_event(self, event: StreamEvent) -> bool:
        """Apply what the session reported for this stream; True once the response side is over."""
        if isinstance(event, DataReceived):
            self.on_data(event.data)
            return False
        if isinstance(event, HeadReceived):
            self.on_head(event.status, event.headers)
            return False
        if isinstance(event, StreamEnded):
            self.on_end()
        else:
            self.on_fail(event.error)
        return True

    def on_head(self, status: int, headers: Headers) -> None:
        self._head = ResponseHead(status, headers)
        self._wake_reader()

    def on_data(self, data: bytes) -> None:
        if not self._cancelled:
            self._chunks.append(data)
            self.buffered += len(data)
            self._wake_reader()

    def on_end(self) -> None:
        self._ended = True
        self._wake_reader()

    def on_fail(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error
        self._wake_reader()
        self.wake_sender()

    def wake_sender(self) -> None:
        if self._sender is not None and not self._sender.done():
            self._sender.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

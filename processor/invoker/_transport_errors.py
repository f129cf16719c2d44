"""The transport's failures, as typed exceptions the invoker turns into retry decisions.

Every ``TransportError`` says whether the deployment may have seen the request
(``maybe_processed``): a request that certainly was not processed can be retried at once on a
new connection; one that may have been is retried like any other failed attempt (the journal
makes a replay safe either way). ``StreamStateError`` is not a transport failure but local
misuse of a stream (sending after ``end()``, two concurrent readers), like h11's
``LocalProtocolError``.
"""

from __future__ import annotations


class TransportError(Exception):
    """An invocation stream or request failed in transit."""

    maybe_processed: bool = True


class ConnectFailed(TransportError):
    """No connection to the deployment: refused, unreachable, or it does not speak the protocol."""

    maybe_processed = False


class ConnectTimeout(ConnectFailed):
    """The connection (TCP and, for h2c, the server's first SETTINGS) took longer than the timeout."""


class ConnectionLost(TransportError):
    """The connection closed or broke while this stream was still open."""


class NotProcessed(TransportError):
    """The deployment refused the stream before processing it (GOAWAY above it, REFUSED_STREAM)."""

    maybe_processed = False


class StreamReset(TransportError):
    """The deployment reset the stream with an HTTP/2 error code other than REFUSED_STREAM."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class ProtocolViolation(TransportError):
    """The deployment broke HTTP framing rules; the connection is closed."""


class UnexpectedStatus(TransportError):
    """The deployment answered with a status other than the expected one (normally 200)."""

    def __init__(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        snippet = body[:200].decode("utf-8", "replace")
        super().__init__(f"deployment answered HTTP {status}" + (f": {snippet}" if snippet else ""))
        self.status = status
        self.headers = headers
        self.body = body


class ResponseTooLarge(TransportError):
    """A one-shot response body exceeded the configured limit."""


class TransportClosed(TransportError):
    """The transport was closed while the stream or request was in progress."""


class StreamStateError(Exception):
    """A stream was used in a way its state does not allow (a bug in the caller)."""

"""Authentication of ``durastate.node.v1.NodeService`` calls with a token derived from the
cluster secret (node/secret.py). The standard gRPC health service stays open.

Construction: every call carries the metadata ``x-durastate-token: <t>.<mac>`` where ``t`` is the
caller's clock in whole Unix seconds and ``mac`` is the hex HMAC-SHA256, keyed with
``HMAC-SHA256(secret, "durastate/grpc/v1")``, of ``"durastate/grpc/token|" + t``. The server accepts
it while ``|now - t| <= TOKEN_VALIDITY_S`` (clock skew between machines included), so a token
seen on the wire stops working within minutes; the derived key keeps these MACs apart from the
data port's. Without TLS this authenticates callers, it does not hide traffic: keep the node
port on a trusted network.

Refused calls end with ``UNAUTHENTICATED`` and a one-line reason, and are counted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

TOKEN_METADATA = "x-durastate-token"
TOKEN_VALIDITY_S = 300
PROTECTED_PREFIX = "/durastate.node.v1.NodeService/"


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"durastate/grpc/v1", hashlib.sha256).digest()


def _mac(secret: bytes, t: int) -> str:
    return hmac.new(_key(secret), f"durastate/grpc/token|{t}".encode(), hashlib.sha256).hexdigest()


def make_token(secret: bytes, now_s: float) -> str:
    t = int(now_s)
    return f"{t}.{_mac(secret, t)}"


def check_token(secret: bytes, token: str | None, now_s: float) -> tuple[str, str] | None:
    """None if ``token`` is valid now, else (reason code for metrics, one line for the caller)."""
    if not token:
        return "missing-token", "no cluster token: the caller does not hold the cluster secret"
    stamp, _, mac = token.partition(".")
    if not stamp.isdigit() or len(stamp) > 12:
        return "malformed-token", "malformed cluster token"
    if not hmac.compare_digest(mac.encode(), _mac(secret, int(stamp)).encode()):
        return "wrong-token", "wrong cluster token: the caller's cluster secret differs from this node's"
    if abs(now_s - int(stamp)) > TOKEN_VALIDITY_S:
        return "expired-token", f"expired cluster token (clocks more than {TOKEN_VALIDITY_S}s apart?)"
    return None


def call_metadata(secret: bytes | None) -> tuple[tuple[str, str], ...]:
    """Metadata a client attaches to each call (none without a secret: the node will refuse)."""
    return () if secret is None else ((TOKEN_METADATA, make_token(secret, time.time())),)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, secret: bytes, on_refused: Callable[[str], None] = lambda reason: None) -> None:
        self._secret = secret
        self._on_refused = on_refused

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(PROTECTED_PREFIX):
            return handler
        token = next((v for k, v in details.invocation_metadata or () if k == TOKEN_METADATA), None)
        refused = check_token(self._secret, token if isinstance(token, str) else None, time.time())
        if refused is None:
            return handler
        code, message = refused
        self._on_refused(code)
        return _refusing(handler, message)


def _refusing(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape that refuses without deserialising the request."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        yield  # pragma: no cover (abort raises)

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream, response_serializer=handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(unary, response_serializer=handler.response_serializer)

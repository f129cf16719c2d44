"""The ingress HTTP API (:8080): how users invoke handlers, wire-compatible with Restate 1.7.

This module is the asyncio/aiohttp shell; the rules (routes, checks, invocation building, reply
shapes) are pure functions in ``node.ingress_rules``. For each valid invocation request it builds
a ``ServiceInvocation`` and hands it to a ``Submitter``, which appends it to the target
partition's log and waits for the partition leader's answer:

* ``await submitter.call(invocation) -> CallOutcome``: the invocation's result (or a rejection,
  e.g. a workflow run invoked twice), with ``expires_at_ms`` when it came from a retained
  completed invocation;
* ``await submitter.send(invocation) -> SendOutcome``: accepted, or previously accepted.

The invocation comes with ``response_sink``/``submit_sink`` unset: the submitter knows where its
answer must come back to (this node, its generation, a request id) and fills them in. If it cannot
reach the partition it raises ``SubmitUnavailable``, answered 503 as Restate does. A client that
goes away cancels the waiting call (aiohttp cancels the handler); the invocation itself goes on.

Routes served: ``/{Service}/{handler}``, ``/{Object|Workflow}/{key}/{handler}``, both with
``/send[?delay=]``, 1.7's ``/restate/call|send/…`` forms, and ``GET /restate/health``
(``{"services":[…]}``), ``/restate/invocation/…`` and ``/restate/workflow/…`` (attach: the
result once it ends; output: the result now, 470 while it runs, 404 when unknown) and
``POST /restate/awakeables/{id}/resolve|reject`` (202 once the signal is in the owner's log).
Like Restate's ingress, every origin may call it from a browser (CORS: the origin, method and
headers asked for are allowed).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from metadata.schema import OutputRules, Schema
from metadata.store import MetadataStore
from node.ingress_rules import (
    MAX_BODY_BYTES,
    AwakeableRoute,
    ById,
    ByIdempotencyKey,
    ByWorkflow,
    CallOutcome,
    HealthRoute,
    IngressError,
    IngressRequest,
    OutputRoute,
    Rejection,
    Reply,
    Route,
    SendOutcome,
    ServiceRoute,
    UnknownName,
    UnsupportedRoute,
    body_too_large,
    build_invocation,
    check_awakeable,
    check_method,
    check_output_method,
    cors_headers,
    cors_preflight,
    method_not_allowed,
    not_implemented,
    parse_path,
    render_call,
    render_error,
    render_health,
    render_send,
    resolve_handler,
    unavailable,
)
from node.schema_cache import SchemaCache
from processor.core._model import Failure, InvocationIdBytes, InvocationSignal, Result, ServiceInvocation
from processor.ids import AwakeableId, deterministic_id

__all__ = [
    "CallOutcome",
    "Ingress",
    "OutputRoutes",
    "NoSubmitter",
    "Rejection",
    "SendOutcome",
    "SubmitUnavailable",
    "Submitter",
    "add_ingress_routes",
]


class SubmitUnavailable(Exception):
    """The submitter could not get the request to its partition (no leader, log unavailable...).

    The message says why; the client gets 503 and may retry (safely with an idempotency key)."""


class ControlRefused(Exception):
    """The partition found nothing to act on for an admin action: ``code`` is the status the
    real server answers (404 unknown, 409 completed or not running)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Submitter(Protocol):
    """Appends an ingress request to its partition's log and waits for the leader's answer."""

    async def call(self, invocation: ServiceInvocation) -> CallOutcome: ...

    async def send(self, invocation: ServiceInvocation) -> SendOutcome: ...

    async def attach(self, invocation_id: InvocationIdBytes) -> CallOutcome:
        """The invocation's result once it ends (a rejection if the partition does not know it)."""
        ...

    async def output(self, invocation_id: InvocationIdBytes) -> CallOutcome:
        """The invocation's result now, or a rejection: 470 while it runs, 404 if unknown."""
        ...

    async def signal(self, signal: InvocationSignal) -> None:
        """Append a signal for its invocation (an awakeable's result); returns once appended."""
        ...


class NoSubmitter:
    """The submitter of a node that runs no partition processors yet: every request gets 503."""

    async def call(self, invocation: ServiceInvocation) -> CallOutcome:
        raise SubmitUnavailable("this node cannot reach the partition processors yet")

    async def send(self, invocation: ServiceInvocation) -> SendOutcome:
        raise SubmitUnavailable("this node cannot reach the partition processors yet")

    async def attach(self, invocation_id: InvocationIdBytes) -> CallOutcome:
        raise SubmitUnavailable("this node cannot reach the partition processors yet")

    async def output(self, invocation_id: InvocationIdBytes) -> CallOutcome:
        raise SubmitUnavailable("this node cannot reach the partition processors yet")

    async def signal(self, signal: InvocationSignal) -> None:
        raise SubmitUnavailable("this node cannot reach the partition processors yet")


def _target_id(query: ById | ByIdempotencyKey | ByWorkflow) -> InvocationIdBytes:
    """The invocation an attach/output route names (by id, by idempotency key, a workflow's run)."""
    if isinstance(query, ById):
        return query.invocation_id.to_bytes()
    if isinstance(query, ByWorkflow):
        found = deterministic_id(query.service, "", query.key, None, True)
    else:
        found = deterministic_id(query.service, query.handler, query.key, query.idempotency_key, False)
    assert found is not None  # both forms are deterministic by construction
    return found.to_bytes()


class OutputRoutes:
    """``/restate/invocation|workflow/…/attach|output`` and ``/restate/awakeables/…``: requests
    arrive here already checked (method, ids, path shape)."""

    def __init__(self, submitter: Submitter) -> None:
        self._submitter = submitter

    async def output(self, route: OutputRoute) -> Reply:
        invocation_id = _target_id(route.query)
        try:
            if route.attach:
                outcome = await self._submitter.attach(invocation_id)
            else:
                outcome = await self._submitter.output(invocation_id)
        except SubmitUnavailable as error:
            raise unavailable(str(error)) from None
        if outcome.rejection is not None:
            # "not found" and "not ready" are the ingress's answers, not the invocation's.
            raise IngressError(outcome.rejection.code, outcome.rejection.message)
        return render_call(outcome, OutputRules())

    async def awakeable(self, awakeable: AwakeableId, resolve: bool, body: bytes) -> Reply:
        if resolve:
            result = Result(value=body)
        else:
            result = Result(failure=Failure(500, body.decode("utf-8", "replace")))
        owner = awakeable.invocation_id.to_bytes()
        try:
            await self._submitter.signal(InvocationSignal(owner, index=awakeable.signal_index, result=result))
        except SubmitUnavailable as error:
            raise unavailable(str(error)) from None
        return Reply(202, (), b"")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ingress:
    """The ingress's request handler; ``routes()`` are mounted on the ingress app."""

    def __init__(
        self,
        schemas: SchemaCache,
        submitter: Submitter,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], int] = _now_ms,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.schemas = schemas
        self.submitter = submitter
        # Invocation ids of plain calls are random (ULIDs); SystemRandom keeps them unguessable.
        self._rng = rng if rng is not None else random.SystemRandom()
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        self._later = OutputRoutes(submitter)

    def routes(self) -> list[web.RouteDef]:
        # One catch-all: which path shapes exist depends on the schema (a key segment or not).
        return [web.route("*", "/{tail:.*}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("origin")
        asked_method = request.headers.get("access-control-request-method")
        if request.method == "OPTIONS" and origin is not None and asked_method is not None:
            reply = cors_preflight(
                origin, asked_method, request.headers.get("access-control-request-headers")
            )
        else:
            try:
                reply = await self._handle(request)
            except IngressError as error:
                reply = render_error(error)
        headers = (*reply.headers, *cors_headers(origin))
        return web.Response(status=reply.status, headers=headers, body=reply.body)

    async def _handle(self, request: web.Request) -> Reply:
        path, _, query = request.raw_path.partition("?")
        route = await self._route(path)
        if isinstance(route, HealthRoute):
            if request.method != "GET":
                raise method_not_allowed()
            return render_health(sorted(self.schemas.current.active))
        if isinstance(route, OutputRoute):
            check_output_method(request.method)
            return await self._later.output(route)
        if isinstance(route, AwakeableRoute):
            awakeable = check_awakeable(route, request.method)
            return await self._later.awakeable(awakeable, route.resolve, await self._read_body(request))
        if isinstance(route, UnsupportedRoute):
            raise not_implemented(route.what)
        return await self._invoke(route, request, path, query)

    async def _route(self, path: str) -> Route:
        seen = self.schemas.version
        try:
            return parse_path(path, self.schemas.current)
        except UnknownName:
            if (schema := await self._newer_schema(seen)) is None:
                raise
            return parse_path(path, schema)

    async def _newer_schema(self, seen: int) -> Schema | None:
        """A name was not found in schema version ``seen``: it may have been registered a moment
        ago, before the watch told us. Read the store; the newer schema if there is one."""
        schema = await self.schemas.refresh()
        return schema if self.schemas.version != seen else None

    async def _invoke(self, route: ServiceRoute, request: web.Request, path: str, query: str) -> Reply:
        headers = request.raw_headers
        seen = self.schemas.version
        try:
            resolved = resolve_handler(route, self.schemas.current, headers)
        except UnknownName:
            if (schema := await self._newer_schema(seen)) is None:
                raise
            resolved = resolve_handler(route, schema, headers)
        check_method(request.method)
        body = await self._read_body(request)
        ingress_request = IngressRequest(request.method, path, query, headers, body)
        invocation = build_invocation(resolved, ingress_request, self._rng, self._clock())
        try:
            if route.send:
                return render_send(await self.submitter.send(invocation))
            return render_call(await self.submitter.call(invocation), resolved.handler.output)
        except SubmitUnavailable as error:
            raise unavailable(str(error)) from None

    async def _read_body(self, request: web.Request) -> bytes:
        # Read the stream ourselves: aiohttp's request.read() stops at the app's 1 MiB default.
        if request.content_length is not None and request.content_length > self._max_body_bytes:
            raise body_too_large()
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self._max_body_bytes:
                raise body_too_large()
        return bytes(body)


def add_ingress_routes(
    app: web.Application,
    store: MetadataStore,
    submitter: Submitter | None = None,
    **options: object,
) -> Ingress:
    """Mount the ingress on ``app``: its schema cache follows the store while the app runs.

    ``options`` go to ``Ingress`` (``rng``, ``clock``, ``max_body_bytes``)."""
    schemas = SchemaCache(store)
    ingress = Ingress(schemas, submitter or NoSubmitter(), **options)  # type: ignore[arg-type]

    async def start(_app: web.Application) -> None:
        await schemas.start()

    async def stop(_app: web.Application) -> None:
        await schemas.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.add_routes(ingress.routes())
    return ingress

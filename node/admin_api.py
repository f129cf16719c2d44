"""The admin HTTP API (:9070): deployments and services, as Restate 1.7's admin serves them to its
CLI and UI (restate-protocol.md §7; crates/admin/src/rest_api, crates/admin/src/service.rs).

Versioning. The same routes are served unprefixed and under ``/v2``, ``/v3`` and ``/v4``; ``/v1``
is refused (400, text) as on the real server. ``GET /version`` reports ``SERVER_VERSION``,
``1.7.12+durastate.<our version>``: the CLI parses it as semver and compares by precedence,
which ignores the ``+…`` build metadata, so it treats us as 1.7.12 (it needs >= 1.5 for the
invocation queries it sends) while the string still says what answers.

Deployments. ``POST /deployments`` discovers the deployment (``node.discovery``: h2c by
default, HTTP/1.1 with ``use_http_11``) and registers it in the schema, which lives in the
metadata store under ``schema`` and changes only by compare-and-set (``metadata.schema``):

* ``force`` defaults to true on ``/v2`` and false elsewhere; without it a deployment already
  registered at that address is returned unchanged without calling discovery (200; 409 on
  ``/v2``), with it the deployment is overwritten in place (same id; 200, 201 on ``/v2``); a new
  address is a new deployment (201). ``location: deployments/{id}``.
* ``dry_run`` runs discovery and the registration rules and writes nothing.
* A discovery failure is 500 ``{"message":"[META0003] …","restate_code":"META0003"}`` (other
  codes per ``node.discovery``) and nothing is registered.
* A body that is not JSON is 400; JSON of the wrong shape 422; no JSON content type 415
  (axum's answers on the real server).

Errors are ``{"message": …, "restate_code": …}`` (with ``[CODE] `` before the message and the
docs link after it when there is a code, Restate's "decorated" form).

Invocations: ``PATCH /invocations/{id}/cancel`` (202: the cancel signal is in the invocation's
journal; 200: it had not started and ended at once), ``…/kill`` and ``…/purge`` (200),
``…/pause`` (202; 200 if paused or suspended already) and ``…/resume[?deployment=dp_…|keep]``
(200), and the old ``DELETE /invocations/{id}?mode=`` (202), through an ``InvocationControl``
(the node's ingress submitter). Each appends a command to the invocation's partition log and
waits for the leader's outcome: 404 for an unknown invocation, 409 for one that completed (or
is not running, or not completed for a purge). Without an answer in time (a leader change), the
append alone answers with the success code. ``resume?deployment=latest`` is refused (501): the
admin API does not know the invocation's service, so it cannot pick its latest deployment.

Deployments: ``DELETE /deployments/{id}?force=true`` (202); ``PATCH /deployments/{id}``
(``{uri?, additional_headers?, use_http_11?, dry_run?}``: discovered again and replaced in
place when sufficiently similar, 200 with the deployment's detail; META0016 otherwise).

Not served yet: service configuration changes, invocation
restart-as-new and purge-journal, and ``/query``; they answer 501 with a message, in ``_later_routes``,
so each can be filled in without touching the rest.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from metadata.errors import MetadataError
from metadata.schema import (
    Deployment,
    RegisterOutcome,
    Registration,
    SchemaError,
    deployment_detail_json,
    deployments_json,
    handler_json,
    load_schema,
    register,
    register_deployment,
    registration_json,
    remove_deployment,
    service_detail_json,
    service_json,
    services_json,
    update,
    update_deployment,
)
from metadata.store import MetadataStore
from node.discovery import HTTP11, Discovered, DiscoveryClient
from node.ingress import ControlRefused
from processor.core import AdminOutcome
from processor.ids import BadId, DeploymentId, InvocationId

DURASTATE_VERSION: Final = "0.1.0"
# What we are compatible with, then who we are (semver build metadata, ignored by the CLI's checks).
SERVER_VERSION: Final = f"1.7.12+durastate.{DURASTATE_VERSION}"
MIN_ADMIN_API_VERSION: Final = 2
MAX_ADMIN_API_VERSION: Final = 4
UNVERSIONED: Final = 0  # the unprefixed routes (Restate's AdminApiVersion::Unknown)
# Experimental features the CLI and UI look at; durastate runs none of them.
FEATURES: Final = {"protocol_v7": False, "vqueues": False}
_DOCS: Final = "For more details, look at the docs with https://restate.dev/doc/errors/{code}"
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Discoverer(Protocol):
    async def discover(
        self, uri: str, *, use_http_11: bool = False, headers: Mapping[str, str] | None = None
    ) -> Discovered: ...


class AdminError(Exception):
    """An admin refusal: ``{"message", "restate_code"}`` with ``status`` (or plain text if ``text``)."""

    def __init__(
        self, status: int, message: str, restate_code: str | None = None, *, text: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.restate_code = restate_code
        self.text = text

    @classmethod
    def from_schema(cls, error: SchemaError) -> AdminError:
        message = str(error)
        if error.restate_code is not None:
            message = f"[{error.restate_code}] {message}. {_DOCS.format(code=error.restate_code)}"
        return cls(error.status, message, error.restate_code)

    @classmethod
    def invalid_field(cls, name: str, reason: str) -> AdminError:
        return cls(400, f"The request field '{name}' is invalid. Reason: {reason}")

    def response(self) -> web.Response:
        if self.text:
            return web.Response(status=self.status, text=self.message)
        return _json({"message": self.message, "restate_code": self.restate_code}, self.status)


def _json(document: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return web.Response(status=status, body=body.encode(), content_type="application/json", headers=headers)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- POST /deployments request body -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    uri: str
    additional_headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    use_http_11: bool = False
    breaking: bool = False
    force: bool | None = None  # None: the API version's default
    dry_run: bool = False


def _shape_error(detail: str) -> AdminError:
    return AdminError(422, f"Failed to deserialize the JSON body into the target type: {detail}", text=True)


def _string_map(document: Mapping[str, Any], name: str) -> dict[str, str]:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _shape_error(f"`{name}` must be an object of strings")
    return dict(value)


def _flag(document: Mapping[str, Any], name: str) -> bool | None:
    value = document.get(name)
    if value is not None and not isinstance(value, bool):
        raise _shape_error(f"`{name}` must be a boolean")
    return value


def _json_object(content_type: str | None, body: bytes) -> dict[str, Any]:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        raise AdminError(415, "Expected request with `Content-Type: application/json`", text=True)
    try:
        document = json.loads(body)
    except ValueError as error:
        raise AdminError(400, f"Failed to parse the request body as JSON: {error}", text=True) from None
    if not isinstance(document, dict):
        raise _shape_error("expected a JSON object")
    if "uri" not in document and "arn" in document:
        raise AdminError.invalid_field("arn", "Lambda deployments are not supported by durastate")
    return document


def _endpoint_fields(document: Mapping[str, Any], uri: Any) -> tuple[str, dict[str, str]]:
    if not isinstance(uri, str):
        raise _shape_error("missing field `uri` (a string)")
    headers = _string_map(document, "additional_headers")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise _shape_error(f"`additional_headers` has an invalid HTTP header: {name!r}")
    _check_uri(uri)
    return _normalized(uri), headers


def parse_register_request(content_type: str | None, body: bytes) -> RegisterRequest:
    """The body of ``POST /deployments``, or the ``AdminError`` the real server would answer."""
    document = _json_object(content_type, body)
    uri, headers = _endpoint_fields(document, document.get("uri"))
    return RegisterRequest(
        uri=uri,
        additional_headers=headers,
        metadata=_string_map(document, "metadata"),
        use_http_11=bool(_flag(document, "use_http_11")),
        breaking=bool(_flag(document, "breaking")),
        force=_flag(document, "force"),
        dry_run=bool(_flag(document, "dry_run")),
    )


def parse_update_request(content_type: str | None, body: bytes, current: Deployment) -> RegisterRequest:
    """The body of ``PATCH /deployments/{id}``: what it leaves out stays as ``current`` has it."""
    document = _json_object(content_type, body)
    uri, headers = _endpoint_fields(document, document.get("uri", current.uri))
    use_http_11 = _flag(document, "use_http_11")
    return RegisterRequest(
        uri=uri,
        additional_headers=headers if "additional_headers" in document else dict(current.additional_headers),
        metadata=dict(current.metadata),
        use_http_11=current.http_version == HTTP11 if use_http_11 is None else use_http_11,
        dry_run=bool(_flag(document, "dry_run")),
    )


def _check_uri(uri: str) -> None:
    scheme, separator, rest = uri.partition("://")
    if not separator or not scheme or not rest or rest.startswith("/"):
        raise AdminError.invalid_field(
            "uri", f"The provided uri {uri} is not absolute, only absolute URIs can be used."
        )
    if scheme.lower() != "http":
        raise AdminError.invalid_field(
            "uri", f"durastate reaches deployments over http:// (h2c or HTTP/1.1) only, not {scheme}://"
        )


def _normalized(uri: str) -> str:
    """As Restate prints a URI: an empty path is "/" ("http://host:9080" -> "http://host:9080/")."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path="/")) if not parts.path else uri


# --- the API --------------------------------------------------------------------------------------------


class InvocationControl(Protocol):
    """Appends cancel, kill, purge, pause and resume to an invocation's partition log; each
    returns the partition's `AdminOutcome` (None: no answer in time, but it is in the log) or
    raises `ControlRefused` (404 unknown, 409 completed or not running)."""

    async def cancel(self, invocation_id: bytes) -> bytes | None: ...
    async def kill(self, invocation_id: bytes) -> bytes | None: ...
    async def purge(self, invocation_id: bytes) -> bytes | None: ...
    async def pause(self, invocation_id: bytes) -> bytes | None: ...
    async def resume(self, invocation_id: bytes, deployment_id: str | None) -> bytes | None: ...


class AdminApi:
    """The admin routes over one metadata store; ``routes()`` are mounted on the admin app."""

    def __init__(
        self,
        store: MetadataStore,
        *,
        ingress_url: str,
        discovery: Discoverer | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], int] = _now_ms,
        health: Handler | None = None,
        invocations: InvocationControl | None = None,
    ) -> None:
        self._store = store
        self._ingress_url = ingress_url
        self._discovery = discovery or DiscoveryClient()
        self._rng = rng if rng is not None else random.SystemRandom()
        self._clock = clock
        self._health = health
        self._invocations = invocations

    def routes(self) -> list[web.RouteDef]:
        routes = []
        for version in (UNVERSIONED, *range(MIN_ADMIN_API_VERSION, MAX_ADMIN_API_VERSION + 1)):
            prefix = f"/v{version}" if version else ""
            for method, path, handler in self._versioned(version):
                routes.append(web.route(method, prefix + path, _guarded(handler)))
        routes += [
            web.route("*", "/v1", self._v1),
            web.route("*", "/v1/{tail:.*}", self._v1),
        ]
        return routes

    def _versioned(self, version: int) -> list[tuple[str, str, Handler]]:
        async def create(request: web.Request) -> web.StreamResponse:
            return await self._create_deployment(request, version)

        return [
            ("GET", "/version", self._version),
            ("GET", "/health", self._health or _empty_ok),
            ("GET", "/deployments", self._list_deployments),
            ("POST", "/deployments", create),
            ("GET", "/deployments/{deployment}", self._get_deployment),
            ("DELETE", "/deployments/{deployment}", self._delete_deployment),
            ("PATCH", "/deployments/{deployment}", self._update_deployment),
            ("GET", "/services", self._list_services),
            ("GET", "/services/{service}", self._get_service),
            ("GET", "/services/{service}/handlers", self._list_handlers),
            ("GET", "/services/{service}/handlers/{handler}", self._get_handler),
            ("PATCH", "/invocations/{invocation}/cancel", self._cancel),
            ("PATCH", "/invocations/{invocation}/kill", self._kill),
            ("PATCH", "/invocations/{invocation}/purge", self._purge),
            ("PATCH", "/invocations/{invocation}/pause", self._pause),
            ("PATCH", "/invocations/{invocation}/resume", self._resume),
            ("DELETE", "/invocations/{invocation}", self._delete_invocation),
            *_later_routes(version),
        ]

    # --- invocations ---

    def _control(self, request: web.Request) -> tuple[InvocationControl, bytes]:
        try:
            invocation = InvocationId.parse(request.match_info["invocation"])
        except BadId as bad:
            raise AdminError.invalid_field("invocation_id", bad.reason) from None
        if self._invocations is None:
            raise AdminError(503, "this node runs no partition processors: it cannot reach invocations")
        return self._invocations, invocation.to_bytes()

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        control, invocation = self._control(request)
        outcome = await _reach(control.cancel(invocation))
        return web.Response(status=200 if outcome == AdminOutcome.DONE else 202)

    async def _kill(self, request: web.Request) -> web.StreamResponse:
        control, invocation = self._control(request)
        await _reach(control.kill(invocation))
        return web.Response(status=200)

    async def _purge(self, request: web.Request) -> web.StreamResponse:
        control, invocation = self._control(request)
        await _reach(control.purge(invocation))
        return web.Response(status=200)

    async def _pause(self, request: web.Request) -> web.StreamResponse:
        control, invocation = self._control(request)
        outcome = await _reach(control.pause(invocation))
        return web.Response(status=200 if outcome == AdminOutcome.ALREADY else 202)

    async def _resume(self, request: web.Request) -> web.StreamResponse:
        control, invocation = self._control(request)
        wanted = request.query.get("deployment", "keep")
        deployment_id: str | None = None
        if wanted == "latest":
            raise AdminError(501, "resuming on the latest deployment is not supported yet: name the deployment id")
        if wanted != "keep":
            deployment_id = _deployment_id(wanted)
            if (await load_schema(self._store)).deployment(deployment_id) is None:
                raise _deployment_not_found(deployment_id)
        await _reach(control.resume(invocation, deployment_id))
        return web.Response(status=200)

    async def _delete_invocation(self, request: web.Request) -> web.StreamResponse:
        """The old API: ``DELETE /invocations/{id}?mode=cancel|kill|purge`` (default cancel)."""
        mode = request.query.get("mode", "cancel")
        control, invocation = self._control(request)
        if mode == "cancel":
            await _reach(control.cancel(invocation))
        elif mode == "kill":
            await _reach(control.kill(invocation))
        elif mode == "purge":
            await _reach(control.purge(invocation))
        else:
            raise AdminError(400, f"unknown mode {mode!r}: use cancel, kill or purge")
        return web.Response(status=202)

    async def _v1(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=400,
            text=f"Unsupported Admin API version V1. This server supports versions between "
            f"V{MIN_ADMIN_API_VERSION} and V{MAX_ADMIN_API_VERSION}.",
        )

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "version": SERVER_VERSION,
                "min_admin_api_version": MIN_ADMIN_API_VERSION,
                "max_admin_api_version": MAX_ADMIN_API_VERSION,
                "ingress_endpoint": self._ingress_url,
                "features": FEATURES,
            }
        )

    # --- deployments ---

    async def _create_deployment(self, request: web.Request, version: int) -> web.StreamResponse:
        wanted = parse_register_request(request.headers.get("content-type"), await request.read())
        force = wanted.force if wanted.force is not None else version == 2
        schema = await load_schema(self._store)
        existing = None if force else schema.find_deployment(wanted.uri, wanted.additional_headers)
        if existing is not None:
            # Restate does not even call discovery for an address it already has.
            return _registered(Registration(schema, existing, RegisterOutcome.UNCHANGED), version)
        deployment = await self._discover(wanted)
        if wanted.dry_run:
            registration = register(schema, deployment, force=force, breaking=wanted.breaking)
        else:
            registration = await register_deployment(
                self._store, deployment, force=force, breaking=wanted.breaking
            )
        return _registered(registration, version)

    async def _update_deployment(self, request: web.Request) -> web.StreamResponse:
        """Discover the deployment again (maybe at a new address) and replace it in place, if
        the new manifest is sufficiently similar (`metadata.schema.update`); 200 and the
        deployment's detail."""
        deployment_id = _deployment_id(request.match_info["deployment"])
        schema = await load_schema(self._store)
        current = schema.deployment(deployment_id)
        if current is None:
            raise _deployment_not_found(deployment_id)
        wanted = parse_update_request(request.headers.get("content-type"), await request.read(), current)
        discovered = await self._discover(wanted)
        if wanted.dry_run:
            schema, _ = update(schema, deployment_id, discovered)
        else:
            schema = await update_deployment(self._store, deployment_id, discovered)
        detail = deployment_detail_json(schema, deployment_id)
        assert detail is not None  # update keeps the id
        return _json(detail)

    async def _discover(self, wanted: RegisterRequest) -> Deployment:
        """Call discovery and describe what answered as a deployment with a fresh id."""
        try:
            discovered = await self._discovery.discover(
                wanted.uri, use_http_11=wanted.use_http_11, headers=wanted.additional_headers
            )
        except ValueError as bad_uri:  # the transport refuses the URI (e.g. no host)
            if isinstance(bad_uri, SchemaError):
                raise
            raise AdminError.invalid_field("uri", str(bad_uri)) from None
        now = self._clock()
        manifest = discovered.manifest
        deployment = Deployment(
            id=str(DeploymentId.random(self._rng, now)),
            uri=wanted.uri,
            protocol_type=manifest.protocol_mode,
            http_version=discovered.http_version,
            created_at_ms=now,
            min_protocol_version=manifest.min_protocol_version,
            max_protocol_version=manifest.max_protocol_version,
            sdk_version=discovered.sdk_version,
            additional_headers=wanted.additional_headers,
            metadata=wanted.metadata,
            services=manifest.services,
        )
        return deployment

    async def _list_deployments(self, request: web.Request) -> web.StreamResponse:
        return _json(deployments_json(await load_schema(self._store)))

    async def _get_deployment(self, request: web.Request) -> web.StreamResponse:
        deployment_id = _deployment_id(request.match_info["deployment"])
        detail = deployment_detail_json(await load_schema(self._store), deployment_id)
        if detail is None:
            raise _deployment_not_found(deployment_id)
        return _json(detail)

    async def _delete_deployment(self, request: web.Request) -> web.StreamResponse:
        """Forced removal only: the deployment's services fall back to older deployments (or
        go); invocations pinned to it can no longer run (Restate's ``force=true``)."""
        deployment_id = _deployment_id(request.match_info["deployment"])
        if request.query.get("force", "false") != "true":
            raise AdminError(501, "only the forced removal of a deployment is supported (add ?force=true)")
        try:
            await remove_deployment(self._store, deployment_id)
        except SchemaError as e:
            raise _deployment_not_found(deployment_id, e.status) from None
        except MetadataError as e:
            raise AdminError(503, f"the metadata store is unavailable: {e}") from None
        return web.Response(status=202)

    # --- services and handlers ---

    async def _list_services(self, request: web.Request) -> web.StreamResponse:
        return _json(services_json(await load_schema(self._store)))

    async def _get_service(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["service"]
        detail = service_detail_json(await load_schema(self._store), name)
        if detail is None:
            raise _service_not_found(name)
        return _json(detail)

    async def _list_handlers(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["service"]
        schema = await load_schema(self._store)
        deployment, service = schema.deployment_for_service(name), schema.service(name)
        if deployment is None or service is None:
            raise _service_not_found(name)
        return _json({"handlers": service_json(service, deployment)["handlers"]})

    async def _get_handler(self, request: web.Request) -> web.StreamResponse:
        name, handler_name = request.match_info["service"], request.match_info["handler"]
        schema = await load_schema(self._store)
        deployment, service = schema.deployment_for_service(name), schema.service(name)
        handler = None if service is None else service.handler(handler_name)
        if deployment is None or service is None or handler is None:
            raise AdminError(
                404, f"The requested handler '{handler_name}' on service '{name}' does not exist"
            )
        return _json(handler_json(service, handler, deployment))


def _registered(registration: Registration, version: int) -> web.StreamResponse:
    deployment_id = registration.deployment.id
    current = version == UNVERSIONED or version >= 3
    match registration.outcome:
        case RegisterOutcome.CREATED:
            status = 201
        case RegisterOutcome.UNCHANGED if not current:
            raise AdminError(409, f"Conflict: deployment {deployment_id} already exists")
        case RegisterOutcome.OVERWRITTEN if not current:
            status = 201
        case _:
            status = 200
    return _json(registration_json(registration), status, {"location": f"deployments/{deployment_id}"})


def _deployment_id(text: str) -> str:
    try:
        return str(DeploymentId.parse(text))
    except BadId as bad:
        raise AdminError(
            400, f"Invalid URL: Cannot parse `deployment` with value `{text}`: {bad.reason}", text=True
        ) from None


def _deployment_not_found(deployment_id: str, status: int = 404) -> AdminError:
    return AdminError(status, f"The requested deployment '{deployment_id}' does not exist")


def _service_not_found(name: str) -> AdminError:
    return AdminError(404, f"The requested service '{name}' does not exist")


async def _empty_ok(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200)


def _guarded(handler: Handler) -> Handler:
    """Turn refusals into the admin's error replies."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AdminError as error:
            return error.response()
        except SchemaError as error:
            return AdminError.from_schema(error).response()
        except MetadataError as error:
            # Not applied, or unknown whether applied: the client re-reads (GET) before retrying.
            return AdminError(503, f"the metadata store could not serve the request: {error}").response()

    return guarded


# --- not served yet (issue 10) ---------------------------------------------------------------------------


def _later(what: str) -> Handler:
    async def later(request: web.Request) -> web.StreamResponse:
        if "invocation" in request.match_info:
            try:
                InvocationId.parse(request.match_info["invocation"])
            except BadId as bad:
                raise AdminError.invalid_field("invocation_id", bad.reason) from None
        raise AdminError(501, f"{what} is not implemented yet by durastate")

    return later


_INVOCATION_ACTIONS: Final = ("restart-as-new", "purge-journal")


async def _reach(action: Awaitable[bytes | None]) -> bytes | None:
    try:
        return await action
    except ControlRefused as refused:
        raise AdminError(refused.code, refused.message) from None
    except Exception as e:  # the partition's log is unavailable: nothing was appended
        raise AdminError(503, f"the invocation's partition cannot be reached: {e}") from None


def _later_routes(version: int) -> list[tuple[str, str, Handler]]:
    routes: list[tuple[str, str, Handler]] = [
        ("PATCH", "/services/{service}", _later("changing a service's configuration")),
        ("POST", "/services/{service}/state", _later("editing state")),
        ("POST", "/query", _later("the SQL query endpoint")),
    ]
    routes += [
        ("PATCH", f"/invocations/{{invocation}}/{action}", _later(f"the invocation action '{action}'"))
        for action in _INVOCATION_ACTIONS
    ]
    if version == UNVERSIONED or version >= 3:
        routes.append(("PUT", "/deployments/{deployment}", _deprecated_put))
    else:
        routes.append(("PUT", "/deployments/{deployment}", _later("updating a deployment")))
    return routes


async def _deprecated_put(request: web.Request) -> web.StreamResponse:
    raise AdminError(405, "PUT deployment is deprecated, use PATCH instead")


def add_admin_routes(app: web.Application, store: MetadataStore, **options: Any) -> AdminApi:
    """Mount the admin API on ``app``; ``options`` go to ``AdminApi`` (``ingress_url`` required)."""
    api = AdminApi(store, **options)
    app.add_routes(api.routes())
    return api

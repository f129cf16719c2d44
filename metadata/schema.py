"""The schema registry: registered deployments, the services they serve, and the admin's JSON views.

Record. ``Schema`` holds every ``Deployment`` (id, URI, protocol type and HTTP version,
creation time, protocol range, SDK version, headers, metadata, and the ``Service`` definitions it
serves, each with a revision) plus ``active``, the index of which deployment serves the latest
revision of each service. The index is derived data, rebuilt by every change. The schema is
stored under ``SCHEMA_KEY`` with ``metadata.records`` (format byte + msgpack map) and changed
only by compare-and-set (``register_deployment``, ``update_deployment``, ``remove_deployment``).

Registration follows Restate 1.7's admin (crates/types/src/schema/metadata/updater):
  * A deployment is "the same" as a registered one when the URI's authority and path match
    (scheme aside) and the configured routing headers match (none by default).
  * Same deployment, no ``force``: nothing changes and the existing deployment is returned (HTTP
    200), even if the endpoint now serves other services or signatures. Restate does not even
    call discovery in that case, so the admin should ask ``Schema.find_deployment`` first.
  * Same deployment with ``force``: it is overwritten in place (same id, 200); services it no
    longer lists disappear unless another deployment serves them.
  * Otherwise a new deployment (201). Every service it serves gets revision = latest + 1
    (1 if new) and becomes the active one; older deployments keep their revisions, which still
    serve invocations pinned to them.
  * A service may change type (service/object/workflow) only with ``breaking`` or ``force``
    (409 otherwise); names starting with "restate" or equal to "openapi" are reserved (400).
  An invocation is pinned to the deployment that is active for its service when it starts.

Update (``PATCH /deployments/{id}``, ``update``): the deployment is discovered again (possibly
at a new address) and replaced in place, same id, so that invocations pinned to it go on there.
The new manifest must be "sufficiently similar" (META0016): every service it served, of the same
type, with at least its handlers, and the same protocol versions. Services keep their revisions.

Simplifications, on purpose: Lambda deployments, the per-service settings that the admin can
patch later (``PATCH /services``), JSON-schema compilation, and the ``info`` notes of the
admin views are not modelled.

Durations are stored as integer milliseconds (``None`` = not set; the renderers apply the
server defaults below) and rendered in Restate's friendly form ("1d", "500ms", "1h 30m").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

import msgspec

from metadata.records import decode, encode
from metadata.store import MetadataStore, read_modify_write

SCHEMA_KEY: Final = "schema"

MINUTE_MS: Final = 60_000
DAY_MS: Final = 24 * 60 * MINUTE_MS
# Restate 1.7's defaults where neither the manifest nor the admin set a value (restate-protocol.md §2.2).
DEFAULT_INACTIVITY_TIMEOUT_MS: Final = MINUTE_MS
DEFAULT_ABORT_TIMEOUT_MS: Final = 10 * MINUTE_MS
DEFAULT_JOURNAL_RETENTION_MS: Final = DAY_MS
DEFAULT_IDEMPOTENCY_RETENTION_MS: Final = DAY_MS
DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS: Final = DAY_MS
DEFAULT_RETRY_INITIAL_INTERVAL_MS: Final = 500
DEFAULT_RETRY_FACTOR: Final = 2.0
DEFAULT_RETRY_MAX_ATTEMPTS: Final = 70
DEFAULT_RETRY_MAX_INTERVAL_MS: Final = MINUTE_MS


class SchemaError(ValueError):
    """A registration the schema refuses; ``status`` is the admin's HTTP code, ``restate_code`` its tag."""

    def __init__(self, message: str, *, status: int = 400, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.restate_code = restate_code


class ServiceType(enum.Enum):
    SERVICE = "SERVICE"
    VIRTUAL_OBJECT = "VIRTUAL_OBJECT"
    WORKFLOW = "WORKFLOW"


class HandlerType(enum.Enum):
    EXCLUSIVE = "EXCLUSIVE"
    SHARED = "SHARED"
    WORKFLOW = "WORKFLOW"


class ProtocolType(enum.Enum):
    BIDI_STREAM = "BIDI_STREAM"
    REQUEST_RESPONSE = "REQUEST_RESPONSE"


class OnMaxAttempts(enum.Enum):
    PAUSE = "PAUSE"
    KILL = "KILL"


class RetryPolicy(msgspec.Struct, frozen=True, omit_defaults=True):
    """Overrides from the manifest (v4); ``None`` fields fall back to the next level up."""

    initial_interval_ms: int | None = None
    max_interval_ms: int | None = None
    max_attempts: int | None = None
    exponentiation_factor: float | None = None
    on_max_attempts: OnMaxAttempts | None = None


class InputRules(msgspec.Struct, frozen=True, omit_defaults=True):
    """What request bodies a handler accepts (the manifest's ``input``).

    ``accepts_empty``: no body and no content type is fine. ``content_type``: the accepted
    content type, possibly ``type/*`` or ``*/*`` (``None``: only an empty request). ``json``: the
    body must also be a non-empty JSON value (the manifest gave a JSON schema).
    """

    accepts_empty: bool = True
    content_type: str | None = "*/*"
    json: bool = False
    json_schema: Any = None

    def validate(self, content_type: str | None, body: bytes) -> str | None:
        """``None`` if a request with this content type and body is acceptable, else why not."""
        if self.accepts_empty:
            if not body and content_type is None:
                return None
            shown = "None" if content_type is None else f'Some("{content_type}")'
            problem = f"Expected body and content-type to be empty, but wasn't with content-type '{shown}'"
        else:
            problem = "Bad configuration of the input validation rules"
        if self.content_type is None:
            return problem
        if content_type is None:
            return "Empty content-type"
        if not _content_type_matches(self.content_type, content_type):
            return f"Content-type '{content_type}' does not match '{self.content_type}'"
        if self.json and not body:
            return "Empty body not allowed"
        return None

    def describe(self) -> str:
        """The admin's ``input_description``, e.g. "none", "JSON string", "application/json"."""
        if self.content_type is None:
            return "none" if self.accepts_empty else "<invalid rules>"
        return _json_description(self.json_schema if self.json else None) or self.content_type


class OutputRules(msgspec.Struct, frozen=True, omit_defaults=True):
    """The response content type of a handler (the manifest's ``output``); ``None``: none is set."""

    content_type: str | None = "application/json"
    set_content_type_if_empty: bool = False
    json_schema: Any = None

    def content_type_for(self, empty: bool) -> str | None:
        """The content type of a response, applying ``setContentTypeIfEmpty``."""
        if self.content_type is None or (empty and not self.set_content_type_if_empty):
            return None
        return self.content_type

    def describe(self) -> str:
        described = _json_description(self.json_schema)
        if described:
            return described
        if self.content_type is None:
            return "none"
        return ("optional " if self.set_content_type_if_empty else "") + self.content_type


def _content_type_matches(accepted: str, given: str) -> bool:
    major, _, minor = accepted.partition("/")
    if major == "*":
        return True
    given_major, slash, given_minor = given.split(";", 1)[0].strip().partition("/")
    if not slash or given_major != major:
        return False
    return minor == "*" or given_minor == minor


def _json_description(schema: Any) -> str | None:
    if isinstance(schema, dict):
        if isinstance(schema.get("title"), str):
            return f"JSON '{schema['title']}'"
        if isinstance(schema.get("type"), str):
            return f"JSON {schema['type']}"
    return None


class Handler(msgspec.Struct, frozen=True, omit_defaults=True):
    """One handler. ``ty`` is resolved (``None`` for plain services); ``public`` ``None`` = the service's."""

    name: str
    ty: HandlerType | None = None
    input: InputRules = InputRules()
    output: OutputRules = OutputRules()
    documentation: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    eager_state_keys: tuple[str, ...] | None = None  # manifest v5 (Python SDK)
    public: bool | None = None
    retry: RetryPolicy = RetryPolicy()


class Service(msgspec.Struct, frozen=True, omit_defaults=True):
    """One service as a deployment serves it; ``revision`` is set at registration (0 before)."""

    name: str
    ty: ServiceType
    handlers: tuple[Handler, ...] = ()
    revision: int = 0
    documentation: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    public: bool = True
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    eager_state_keys: tuple[str, ...] | None = None
    retry: RetryPolicy = RetryPolicy()

    def handler(self, name: str) -> Handler | None:
        for handler in self.handlers:
            if handler.name == name:
                return handler
        return None


class Deployment(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str  # dp_1...
    uri: str
    protocol_type: ProtocolType
    http_version: str  # "HTTP/2.0" or "HTTP/1.1", as the admin API prints it
    created_at_ms: int
    min_protocol_version: int
    max_protocol_version: int
    sdk_version: str | None = None  # the SDK's x-restate-server header
    additional_headers: dict[str, str] = msgspec.field(default_factory=dict)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    services: tuple[Service, ...] = ()

    def service(self, name: str) -> Service | None:
        for service in self.services:
            if service.name == name:
                return service
        return None


class Schema(msgspec.Struct, frozen=True, omit_defaults=True):
    deployments: dict[str, Deployment] = msgspec.field(default_factory=dict)
    # service name -> id of the deployment serving its latest revision (derived, see _indexed)
    active: dict[str, str] = msgspec.field(default_factory=dict)

    def deployment(self, deployment_id: str) -> Deployment | None:
        return self.deployments.get(deployment_id)

    def deployment_for_service(self, service_name: str) -> Deployment | None:
        """The deployment a new invocation of this service is pinned to (the latest serving it)."""
        deployment_id = self.active.get(service_name)
        return None if deployment_id is None else self.deployments[deployment_id]

    def service(self, service_name: str) -> Service | None:
        """The latest revision of a service."""
        deployment = self.deployment_for_service(service_name)
        return None if deployment is None else deployment.service(service_name)

    def handler(self, service_name: str, handler_name: str) -> Handler | None:
        service = self.service(service_name)
        return None if service is None else service.handler(handler_name)

    def services(self) -> list[Service]:
        """The latest revision of every service, by name."""
        return [s for name in sorted(self.active) if (s := self.service(name)) is not None]

    def find_deployment(
        self, uri: str, headers: Mapping[str, str] | None = None, routing_headers: Iterable[str] = ()
    ) -> Deployment | None:
        """The newest deployment at the same address (see the module doc), if any."""
        matches = [
            d
            for d in self.deployments.values()
            if _same_address(d.uri, uri)
            and all(
                _header(d.additional_headers, name) == _header(headers or {}, name)
                for name in routing_headers
            )
        ]
        return max(matches, key=lambda d: (d.created_at_ms, d.id), default=None)


def _address(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri.strip())
    return parts.netloc.lower(), parts.path or "/"


def _same_address(a: str, b: str) -> bool:
    return _address(a) == _address(b)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _indexed(deployments: dict[str, Deployment]) -> Schema:
    active: dict[str, tuple[int, str]] = {}
    for deployment in deployments.values():
        for service in deployment.services:
            current = active.get(service.name)
            if current is None or service.revision > current[0]:
                active[service.name] = (service.revision, deployment.id)
    return Schema(deployments=deployments, active={name: ref[1] for name, ref in sorted(active.items())})


# --- registration ----------------------------------------------------------------------------


class RegisterOutcome(enum.Enum):
    CREATED = "created"  # 201
    UNCHANGED = "unchanged"  # 200: same address, no force
    OVERWRITTEN = "overwritten"  # 200: same address, force


class Registration(NamedTuple):
    schema: Schema
    deployment: Deployment  # as stored: the existing one when unchanged, else with revisions set
    outcome: RegisterOutcome

    @property
    def created(self) -> bool:
        return self.outcome is RegisterOutcome.CREATED


def check_service_name(name: str) -> None:
    """Refuse Restate's reserved service names (400, META0005)."""
    lowered = name.lower()
    if lowered.startswith("restate") or lowered == "openapi":
        raise SchemaError(
            f"cannot insert/modify service '{name}' as it contains a reserved name",
            restate_code="META0005",
        )


def register(
    schema: Schema,
    deployment: Deployment,
    *,
    force: bool = False,
    breaking: bool = False,
    routing_headers: Iterable[str] = (),
) -> Registration:
    """Add ``deployment`` (freshly discovered, with a new id) to ``schema`` by the rules above.

    Pure: returns the new schema; raises ``SchemaError`` and changes nothing when refused.
    """
    for service in deployment.services:
        check_service_name(service.name)
    existing = schema.find_deployment(deployment.uri, deployment.additional_headers, routing_headers)
    if existing is not None and not force:
        return Registration(schema, existing, RegisterOutcome.UNCHANGED)
    if existing is not None:
        deployment = msgspec.structs.replace(deployment, id=existing.id)
        outcome = RegisterOutcome.OVERWRITTEN
    else:
        outcome = RegisterOutcome.CREATED
    services = []
    for service in deployment.services:
        previous = schema.service(service.name)
        if previous is not None and previous.ty != service.ty and not (breaking or force):
            raise SchemaError(
                f"detected a new service revision for '{service.name}' changing the service type from "
                "previous revision. Service type cannot be changed across revisions.",
                status=409,
                restate_code="META0006",
            )
        revision = 1 if previous is None else previous.revision + 1
        services.append(msgspec.structs.replace(service, revision=revision))
    deployment = msgspec.structs.replace(deployment, services=tuple(services))
    deployments = dict(schema.deployments)
    deployments[deployment.id] = deployment
    return Registration(_indexed(deployments), deployment, outcome)


def _insufficiently_similar(why: str) -> SchemaError:
    return SchemaError(
        f"cannot update the deployment with the discovered metadata: {why}",
        restate_code="META0016",
    )


def update(schema: Schema, deployment_id: str, discovered: Deployment) -> tuple[Schema, Deployment]:
    """Replace deployment ``deployment_id`` by ``discovered`` (its id, creation time and
    metadata kept) if it is sufficiently similar (see the module doc). Pure."""
    old = schema.deployment(deployment_id)
    if old is None:
        raise SchemaError(f"The requested deployment '{deployment_id}' does not exist", status=404)
    if (discovered.min_protocol_version, discovered.max_protocol_version) != (
        old.min_protocol_version,
        old.max_protocol_version,
    ):
        raise _insufficiently_similar(
            f"it speaks protocol versions {discovered.min_protocol_version}-{discovered.max_protocol_version}, "
            f"the deployment {old.min_protocol_version}-{old.max_protocol_version}"
        )
    services = []
    for service in discovered.services:
        check_service_name(service.name)
        before = old.service(service.name)
        if before is None:
            previous = schema.service(service.name)
            revision = 1 if previous is None else previous.revision + 1
        else:
            if before.ty != service.ty:
                raise _insufficiently_similar(f"service '{service.name}' changed its type")
            missing = sorted({h.name for h in before.handlers} - {h.name for h in service.handlers})
            if missing:
                raise _insufficiently_similar(f"service '{service.name}' lost handlers {', '.join(missing)}")
            revision = before.revision
        services.append(msgspec.structs.replace(service, revision=revision))
    lost = sorted({s.name for s in old.services} - {s.name for s in discovered.services})
    if lost:
        raise _insufficiently_similar(f"it no longer serves {', '.join(lost)}")
    updated = msgspec.structs.replace(
        discovered,
        id=old.id,
        created_at_ms=old.created_at_ms,
        metadata=old.metadata,
        services=tuple(services),
    )
    deployments = dict(schema.deployments)
    deployments[old.id] = updated
    return _indexed(deployments), updated


def remove(schema: Schema, deployment_id: str) -> Schema:
    """``schema`` without that deployment; its services fall back to older deployments, if any."""
    if deployment_id not in schema.deployments:
        raise SchemaError(f"not found in the schema registry: {deployment_id}", status=404)
    deployments = {k: v for k, v in schema.deployments.items() if k != deployment_id}
    return _indexed(deployments)


# --- storage -----------------------------------------------------------------------------------


def decode_schema(raw: bytes | None) -> Schema:
    return Schema() if raw is None else decode(Schema, raw)


async def load_schema(store: MetadataStore) -> Schema:
    current = await store.get(SCHEMA_KEY)
    return decode_schema(None if current is None else current.value)


class _NoWrite(Exception):
    def __init__(self, result: Any) -> None:
        self.result = result


async def _update(store: MetadataStore, change: Callable[[Schema], tuple[Schema | None, Any]]) -> Any:
    """Apply ``change`` under CAS; a ``None`` schema means "nothing to write"."""
    outcome: list[Any] = []

    def apply(raw: bytes | None) -> bytes:
        new_schema, result = change(decode_schema(raw))
        if new_schema is None:
            raise _NoWrite(result)
        outcome[:] = [result]
        return encode(new_schema)

    try:
        await read_modify_write(store, SCHEMA_KEY, apply)
    except _NoWrite as unchanged:
        return unchanged.result
    return outcome[0]


async def register_deployment(
    store: MetadataStore,
    deployment: Deployment,
    *,
    force: bool = False,
    breaking: bool = False,
    routing_headers: Iterable[str] = (),
) -> Registration:
    """``register`` against the stored schema, by compare-and-set (retried on concurrent changes)."""
    routing = tuple(routing_headers)

    def change(schema: Schema) -> tuple[Schema | None, Registration]:
        registration = register(schema, deployment, force=force, breaking=breaking, routing_headers=routing)
        unchanged = registration.outcome is RegisterOutcome.UNCHANGED
        return (None if unchanged else registration.schema), registration

    return await _update(store, change)


async def update_deployment(store: MetadataStore, deployment_id: str, discovered: Deployment) -> Schema:
    """``update`` against the stored schema, by compare-and-set."""

    def change(schema: Schema) -> tuple[Schema | None, Schema]:
        new_schema, _ = update(schema, deployment_id, discovered)
        return new_schema, new_schema

    return await _update(store, change)


async def remove_deployment(store: MetadataStore, deployment_id: str) -> Schema:
    """``remove`` against the stored schema, by compare-and-set."""

    def change(schema: Schema) -> tuple[Schema | None, Schema]:
        new_schema = remove(schema, deployment_id)
        return new_schema, new_schema

    return await _update(store, change)


# --- admin API views (JSON-ready dicts) ----------------------------------------------------------

_SERVICE_TYPE_NAMES: Final = {
    ServiceType.SERVICE: "Service",
    ServiceType.VIRTUAL_OBJECT: "VirtualObject",
    ServiceType.WORKFLOW: "Workflow",
}
_HANDLER_TYPE_NAMES: Final = {
    HandlerType.EXCLUSIVE: "Exclusive",
    HandlerType.SHARED: "Shared",
    HandlerType.WORKFLOW: "Workflow",
}
_ON_MAX_NAMES: Final = {OnMaxAttempts.PAUSE: "Pause", OnMaxAttempts.KILL: "Kill"}
_PROTOCOL_TYPE_NAMES: Final = {
    ProtocolType.BIDI_STREAM: "BidiStream",
    ProtocolType.REQUEST_RESPONSE: "RequestResponse",
}
_UNITS: Final = (("d", DAY_MS), ("h", 60 * MINUTE_MS), ("m", MINUTE_MS), ("s", 1000), ("ms", 1))


def friendly_duration(ms: int) -> str:
    """Restate's compact duration text: "0s", "500ms", "1m", "1d 12h 4m 2s"."""
    if ms < 0:
        raise ValueError("durations are not negative")
    parts = []
    for unit, size in _UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"


def rfc3339_ms(ms: int) -> str:
    """A UTC timestamp as the admin API prints it: milliseconds only when there are some."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    fraction = f".{ms % 1000:03d}" if ms % 1000 else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != {}:
        out[key] = value


def _duration(ms: int | None) -> str | None:
    return None if ms is None else friendly_duration(ms)


def handler_json(service: Service, handler: Handler, deployment: Deployment) -> dict[str, Any]:
    """HandlerMetadata of the admin API (§7.2)."""
    request_response = deployment.protocol_type is ProtocolType.REQUEST_RESPONSE
    out: dict[str, Any] = {"name": handler.name}
    _put(out, "ty", None if handler.ty is None else _HANDLER_TYPE_NAMES[handler.ty])
    _put(out, "documentation", handler.documentation)
    _put(out, "metadata", handler.metadata)
    _put(out, "idempotency_retention", _duration(handler.idempotency_retention_ms))
    _put(out, "journal_retention", _duration(handler.journal_retention_ms))
    _put(out, "inactivity_timeout", None if request_response else _duration(handler.inactivity_timeout_ms))
    _put(out, "abort_timeout", _duration(handler.abort_timeout_ms))
    _put(out, "enable_lazy_state", handler.enable_lazy_state)
    out["public"] = service.public if handler.public is None else handler.public
    out["input_description"] = handler.input.describe()
    out["output_description"] = handler.output.describe()
    _put(out, "input_json_schema", handler.input.json_schema if handler.input.json else None)
    _put(out, "output_json_schema", handler.output.json_schema)
    retry = handler.retry
    policy: dict[str, Any] = {}
    _put(policy, "initial_interval", _duration(retry.initial_interval_ms))
    _put(policy, "exponentiation_factor", retry.exponentiation_factor)
    policy["max_attempts"] = retry.max_attempts
    _put(policy, "max_interval", _duration(retry.max_interval_ms))
    _put(
        policy,
        "on_max_attempts",
        None if retry.on_max_attempts is None else _ON_MAX_NAMES[retry.on_max_attempts],
    )
    out["retry_policy"] = policy
    return out


def service_json(service: Service, deployment: Deployment) -> dict[str, Any]:
    """ServiceMetadata of the admin API (§7.2) for ``service`` as ``deployment`` serves it."""
    request_response = deployment.protocol_type is ProtocolType.REQUEST_RESPONSE
    retry = service.retry
    out: dict[str, Any] = {
        "name": service.name,
        "ty": _SERVICE_TYPE_NAMES[service.ty],
        "handlers": [handler_json(service, h, deployment) for h in service.handlers],
    }
    _put(out, "documentation", service.documentation)
    _put(out, "metadata", service.metadata)
    out["deployment_id"] = deployment.id
    out["revision"] = service.revision
    out["public"] = service.public
    out["idempotency_retention"] = friendly_duration(
        _or(service.idempotency_retention_ms, DEFAULT_IDEMPOTENCY_RETENTION_MS)
    )
    if service.ty is ServiceType.WORKFLOW:
        from_handlers = [h.workflow_completion_retention_ms for h in service.handlers]
        chosen = next(
            (ms for ms in from_handlers if ms is not None), DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS
        )
        out["workflow_completion_retention"] = friendly_duration(chosen)
    out["journal_retention"] = friendly_duration(
        _or(service.journal_retention_ms, DEFAULT_JOURNAL_RETENTION_MS)
    )
    out["inactivity_timeout"] = friendly_duration(
        0 if request_response else _or(service.inactivity_timeout_ms, DEFAULT_INACTIVITY_TIMEOUT_MS)
    )
    out["abort_timeout"] = friendly_duration(_or(service.abort_timeout_ms, DEFAULT_ABORT_TIMEOUT_MS))
    out["enable_lazy_state"] = bool(service.enable_lazy_state)
    out["retry_policy"] = {
        "initial_interval": friendly_duration(
            _or(retry.initial_interval_ms, DEFAULT_RETRY_INITIAL_INTERVAL_MS)
        ),
        "exponentiation_factor": _or(retry.exponentiation_factor, DEFAULT_RETRY_FACTOR),
        "max_attempts": _or(retry.max_attempts, DEFAULT_RETRY_MAX_ATTEMPTS),
        "max_interval": friendly_duration(_or(retry.max_interval_ms, DEFAULT_RETRY_MAX_INTERVAL_MS)),
        "on_max_attempts": _ON_MAX_NAMES[_or(retry.on_max_attempts, OnMaxAttempts.PAUSE)],
    }
    return out


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def services_json(schema: Schema) -> dict[str, Any]:
    """``GET /services``: the latest revision of every service."""
    return {"services": [_active_service_json(schema, s.name) for s in schema.services()]}


def _active_service_json(schema: Schema, name: str) -> dict[str, Any]:
    deployment = schema.deployment_for_service(name)
    assert deployment is not None
    service = deployment.service(name)
    assert service is not None
    return service_json(service, deployment)


def service_detail_json(schema: Schema, name: str) -> dict[str, Any] | None:
    """``GET /services/{name}``, or ``None`` if there is no such service."""
    return None if name not in schema.active else _active_service_json(schema, name)


def _deployment_fields(deployment: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": deployment.id,
        "uri": deployment.uri,
        "protocol_type": _PROTOCOL_TYPE_NAMES[deployment.protocol_type],
        "http_version": deployment.http_version,
    }
    _put(out, "additional_headers", deployment.additional_headers)
    _put(out, "metadata", deployment.metadata)
    out["created_at"] = rfc3339_ms(deployment.created_at_ms)
    out["min_protocol_version"] = deployment.min_protocol_version
    out["max_protocol_version"] = deployment.max_protocol_version
    _put(out, "sdk_version", deployment.sdk_version)
    return out


def deployments_json(schema: Schema) -> dict[str, Any]:
    """``GET /deployments``: every deployment, oldest first, with its services' names and revisions."""
    listed = []
    for deployment in sorted(schema.deployments.values(), key=lambda d: (d.created_at_ms, d.id)):
        out = _deployment_fields(deployment)
        out["services"] = [{"name": s.name, "revision": s.revision} for s in deployment.services]
        listed.append(out)
    return {"deployments": listed}


def deployment_detail_json(schema: Schema, deployment_id: str) -> dict[str, Any] | None:
    """``GET /deployments/{id}`` (services in full), or ``None`` if there is no such deployment."""
    deployment = schema.deployment(deployment_id)
    if deployment is None:
        return None
    out = _deployment_fields(deployment)
    out["services"] = [service_json(s, deployment) for s in deployment.services]
    return out


def registration_json(registration: Registration) -> dict[str, Any]:
    """The body of ``POST /deployments`` (201 when created, else 200)."""
    deployment = registration.deployment
    out: dict[str, Any] = {
        "id": deployment.id,
        "services": [service_json(s, deployment) for s in deployment.services],
        "min_protocol_version": deployment.min_protocol_version,
        "max_protocol_version": deployment.max_protocol_version,
    }
    _put(out, "sdk_version", deployment.sdk_version)
    return out

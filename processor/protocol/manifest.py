"""Service discovery: the request we send, and the endpoint manifest we get back, validated.

Request: ``GET {deployment}/discover`` with ``discovery_request_headers()``, whose ``accept``
lists manifest versions 1-4 like Restate 1.7 (the Python SDK answers the highest it finds; it
also knows v5, whose only addition we read is ``eagerStateKeysWhitelist``). The reply must carry
``application/vnd.restate.endpointmanifest.vN+json`` (``manifest_version``) and a JSON body
(``parse_manifest``) that becomes an ``Endpoint`` of ``metadata.schema.Service`` values.

Validation is Restate's (crates/service-protocol-v4/src/discovery.rs, the manifest JSON schema
and the schema updater): ``protocolMode`` present; protocol versions in [1, 2^31-1], min <= max,
and the range meeting [5, 7]; the name patterns; known enum values; non-negative integer
durations; handler types that fit the service type (objects default to EXCLUSIVE, workflow
handlers to SHARED, plain services have none); ``workflowCompletionRetention`` only on the
workflow handler and ``idempotencyRetention`` never there; no public handler in a private
service; parsable content types; no reserved service names. We also refuse duplicate service or
handler names (Restate keeps the last one silently). Unknown fields are ignored rather than
refused, so a newer SDK cannot break registration. Errors are ``ManifestError`` with the
admin's status (500 for a bad SDK reply, 400 for a service definition Restate refuses) and the
wording of Restate's messages where it has one.

Defaults for absent fields follow Restate: no ``input`` accepts an empty request or any content
type; ``input: {}`` accepts only an empty request; no ``output`` answers ``application/json``;
``output`` without ``contentType`` sets none; ``setContentTypeIfEmpty`` is false.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from metadata.schema import (
    Handler,
    HandlerType,
    InputRules,
    OnMaxAttempts,
    OutputRules,
    ProtocolType,
    RetryPolicy,
    SchemaError,
    Service,
    ServiceType,
    check_service_name,
)
from processor.protocol._versions import MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, accepts_range

DISCOVERY_PATH: Final = "/discover"
REQUESTED_MANIFEST_VERSIONS: Final = (1, 2, 3, 4)
READABLE_MANIFEST_VERSIONS: Final = (1, 2, 3, 4, 5)
_MANIFEST_CONTENT_TYPE: Final = "application/vnd.restate.endpointmanifest.v{}+json"
_I32_MAX: Final = 2**31 - 1
_SERVICE_NAME: Final = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$")
_HANDLER_NAME: Final = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$")
# TypeScript SDKs before 1.2.2 advertised versions they could not speak; Restate caps them at 1.
_BROKEN_TS_SDKS: Final = tuple(f"restate-sdk-typescript/1.{minor}." for minor in (0, 1, 2))


class ManifestError(SchemaError):
    """A discovery reply we refuse; ``status`` 500 for a bad SDK reply, 400 for a refused service."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A validated manifest: how to talk to the deployment and what it serves (revisions unset)."""

    protocol_mode: ProtocolType
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[Service, ...]
    lambda_compression: str | None = None


def manifest_content_type(version: int) -> str:
    return _MANIFEST_CONTENT_TYPE.format(version)


def discovery_request_headers() -> dict[str, str]:
    """Headers of the discovery request (add the deployment's own headers to these)."""
    return {"accept": ", ".join(manifest_content_type(v) for v in REQUESTED_MANIFEST_VERSIONS)}


def manifest_version(content_type: str | None) -> int:
    """The manifest version of a discovery reply, from its exact content type."""
    expected = discovery_request_headers()["accept"]
    if content_type is None:
        raise _bad_response(
            f"No content type header was specified. Expected one of '{expected}' content type."
        )
    for version in READABLE_MANIFEST_VERSIONS:
        if content_type == manifest_content_type(version):
            return version
    raise _bad_response(f"Bad content type header: {content_type!r}. Expected one of '{expected}'")


def _bad_response(detail: str) -> ManifestError:
    return ManifestError(
        f"received a bad response from the SDK: {detail}", status=500, restate_code="META0013"
    )


class _Undecodable(Exception):
    """Internal: the body does not fit the manifest schema (Restate's serde decode error)."""


def parse_manifest(body: bytes | str | Mapping[str, Any], *, sdk_version: str | None = None) -> Endpoint:
    """Validate a discovery reply body; ``sdk_version`` is its ``x-restate-server`` header."""
    try:
        document = json.loads(body) if isinstance(body, (bytes, str)) else body
        endpoint = _endpoint(document)
    except (_Undecodable, ValueError) as error:
        if isinstance(error, SchemaError):
            raise
        shown = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        raise ManifestError(
            f"received a bad response from the SDK that cannot be decoded: {error}. Discovery response: {shown}",
            status=500,
        ) from None
    return _checked_versions(endpoint, sdk_version)


def _checked_versions(endpoint: Endpoint, sdk_version: str | None) -> Endpoint:
    low, high = endpoint.min_protocol_version, endpoint.max_protocol_version
    if low > high:
        raise _bad_response(
            "Expected min protocol version to be <= max protocol version. "
            f"Received min protocol version '{low}', max protocol version '{high}'"
        )
    if sdk_version is not None and sdk_version.startswith(_BROKEN_TS_SDKS):
        high = 1
    if not accepts_range(low, high):
        raise ManifestError(
            f"unsupported service protocol versions: [{low}, {high}]. Supported versions by this runtime are "
            f"[{MIN_PROTOCOL_VERSION}, {MAX_PROTOCOL_VERSION}]. Please upgrade the SDK and try registering again.",
            status=500,
            restate_code="META0012",
        )
    return endpoint


# --- field readers: each raises _Undecodable naming the path of the bad field -------------------


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Undecodable(f"{path} must be a JSON object")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _Undecodable(f"{path} must be a string")
    return value


def _bool(doc: Mapping[str, Any], field: str, path: str) -> bool | None:
    value = doc.get(field)
    if value is not None and not isinstance(value, bool):
        raise _Undecodable(f"{path}.{field} must be a boolean")
    return value


def _uint(
    doc: Mapping[str, Any], field: str, path: str, minimum: int = 0, maximum: int = 2**64 - 1
) -> int | None:
    value = doc.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _Undecodable(f"{path}.{field} must be an integer in [{minimum}, {maximum}]")
    return value


def _enum(doc: Mapping[str, Any], field: str, path: str, choices: type[Any]) -> Any:
    value = doc.get(field)
    if value is None:
        return None
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(c.value for c in choices)
        raise _Undecodable(f"{path}.{field} must be one of {allowed}, got {value!r}") from None


def _string_map(doc: Mapping[str, Any], field: str, path: str) -> dict[str, str]:
    value = doc.get(field)
    if value is None:
        return {}
    entries = _object(value, f"{path}.{field}")
    if not all(isinstance(v, str) for v in entries.values()):
        raise _Undecodable(f"{path}.{field} values must be strings")
    return dict(entries)


def _string_list(doc: Mapping[str, Any], field: str, path: str) -> tuple[str, ...] | None:
    value = doc.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Undecodable(f"{path}.{field} must be a list of strings")
    return tuple(value)


def _retry(doc: Mapping[str, Any], path: str) -> RetryPolicy:
    factor = doc.get("retryPolicyExponentiationFactor")
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))):
        raise _Undecodable(f"{path}.retryPolicyExponentiationFactor must be a number")
    attempts = _uint(doc, "retryPolicyMaxAttempts", path)
    return RetryPolicy(
        initial_interval_ms=_uint(doc, "retryPolicyInitialInterval", path),
        max_interval_ms=_uint(doc, "retryPolicyMaxInterval", path),
        # Restate reads 0 attempts as 1 (no retry).
        max_attempts=None if attempts is None else max(attempts, 1),
        exponentiation_factor=None if factor is None else float(factor),
        on_max_attempts=_enum(doc, "retryPolicyOnMaxAttempts", path, OnMaxAttempts),
    )


# --- the manifest ---------------------------------------------------------------------------------


def _endpoint(document: Any) -> Endpoint:
    doc = _object(document, "the manifest")
    mode = _enum(doc, "protocolMode", "manifest", ProtocolType)
    low = _uint(doc, "minProtocolVersion", "manifest", 1)
    high = _uint(doc, "maxProtocolVersion", "manifest", 1)
    if low is None or high is None:
        raise _Undecodable("manifest.minProtocolVersion and manifest.maxProtocolVersion are required")
    if "services" not in doc or not isinstance(doc["services"], list):
        raise _Undecodable("manifest.services must be a list")
    compression = doc.get("lambdaCompression")
    if compression is not None and compression != "zstd":
        raise _Undecodable(f"manifest.lambdaCompression must be zstd, got {compression!r}")
    services = tuple(_service(s, f"services[{i}]") for i, s in enumerate(doc["services"]))
    _no_duplicates([s.name for s in services], "service", "the manifest")
    if mode is None:
        raise _bad_response("missing protocol mode")
    for bound, value in (("min", low), ("max", high)):
        if value > _I32_MAX:
            raise _bad_response(f"{bound} protocol version must be in [1, {_I32_MAX}]")
    for service in services:
        try:
            check_service_name(service.name)
        except SchemaError as refused:
            raise ManifestError(
                str(refused), status=refused.status, restate_code=refused.restate_code
            ) from None
    return Endpoint(mode, low, high, services, compression)


def _no_duplicates(names: list[str], what: str, where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ManifestError(f"{what} '{name}' appears twice in {where}", status=400)
        seen.add(name)


def _service(value: Any, path: str) -> Service:
    doc = _object(value, path)
    name = _string(doc.get("name"), f"{path}.name")
    if not _SERVICE_NAME.match(name):
        raise _Undecodable(f"{path}.name {name!r} does not match {_SERVICE_NAME.pattern}")
    ty = _enum(doc, "ty", path, ServiceType)
    if ty is None:
        raise _Undecodable(f"{path}.ty is required")
    if not isinstance(doc.get("handlers"), list):
        raise _Undecodable(f"{path}.handlers must be a list")
    private = _bool(doc, "ingressPrivate", path)
    public = not private if private is not None else True
    handlers = tuple(
        _handler(h, f"{path}.handlers[{i}]", name, ty, public) for i, h in enumerate(doc["handlers"])
    )
    _no_duplicates([h.name for h in handlers], "handler", f"service '{name}'")
    documentation = doc.get("documentation")
    return Service(
        name=name,
        ty=ty,
        handlers=handlers,
        documentation=None if documentation is None else _string(documentation, f"{path}.documentation"),
        metadata=_string_map(doc, "metadata", path),
        public=public,
        inactivity_timeout_ms=_uint(doc, "inactivityTimeout", path),
        abort_timeout_ms=_uint(doc, "abortTimeout", path),
        journal_retention_ms=_uint(doc, "journalRetention", path),
        idempotency_retention_ms=_uint(doc, "idempotencyRetention", path),
        enable_lazy_state=_bool(doc, "enableLazyState", path),
        eager_state_keys=_string_list(doc, "eagerStateKeysWhitelist", path),
        retry=_retry(doc, path),
    )


# (service type, handler type given) -> resolved handler type; other pairs are refused.
_HANDLER_TYPES: Final[dict[tuple[ServiceType, HandlerType | None], HandlerType | None]] = {
    (ServiceType.SERVICE, None): None,
    (ServiceType.SERVICE, HandlerType.SHARED): None,
    (ServiceType.VIRTUAL_OBJECT, None): HandlerType.EXCLUSIVE,
    (ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE): HandlerType.EXCLUSIVE,
    (ServiceType.VIRTUAL_OBJECT, HandlerType.SHARED): HandlerType.SHARED,
    (ServiceType.WORKFLOW, None): HandlerType.SHARED,
    (ServiceType.WORKFLOW, HandlerType.SHARED): HandlerType.SHARED,
    (ServiceType.WORKFLOW, HandlerType.WORKFLOW): HandlerType.WORKFLOW,
}


def _handler(value: Any, path: str, service: str, service_ty: ServiceType, service_public: bool) -> Handler:
    doc = _object(value, path)
    name = _string(doc.get("name"), f"{path}.name")
    if not _HANDLER_NAME.match(name):
        raise _Undecodable(f"{path}.name {name!r} does not match {_HANDLER_NAME.pattern}")
    given = _enum(doc, "ty", path, HandlerType)
    if (service_ty, given) not in _HANDLER_TYPES:
        shown = "None" if given is None else f"Some({given.value.title()})"
        raise ManifestError(
            f"invalid combination of service type and handler type '({service_ty.value}, {shown})'",
            status=400,
        )
    ty = _HANDLER_TYPES[service_ty, given]
    workflow_completion = _uint(doc, "workflowCompletionRetention", path)
    idempotency = _uint(doc, "idempotencyRetention", path)
    if workflow_completion is not None and ty is not HandlerType.WORKFLOW:
        raise ManifestError(
            f"{name} sets the workflow_completion_retention, but it's not a WORKFLOW handler", status=400
        )
    if idempotency is not None and ty is HandlerType.WORKFLOW:
        raise ManifestError(f"{name} sets the idempotency_retention, but it's a WORKFLOW handler", status=400)
    private = _bool(doc, "ingressPrivate", path)
    if not service_public and private is False:
        raise ManifestError(
            f"The service {service} is private, but the {name} is explicitly set as public. This is not "
            "supported. Please make the service public, and hide the individual handlers",
            status=400,
        )
    documentation = doc.get("documentation")
    return Handler(
        name=name,
        ty=ty,
        input=_input(doc.get("input"), f"{path}.input", name),
        output=_output(doc.get("output"), f"{path}.output", name),
        documentation=None if documentation is None else _string(documentation, f"{path}.documentation"),
        metadata=_string_map(doc, "metadata", path),
        inactivity_timeout_ms=_uint(doc, "inactivityTimeout", path),
        abort_timeout_ms=_uint(doc, "abortTimeout", path),
        journal_retention_ms=_uint(doc, "journalRetention", path),
        idempotency_retention_ms=idempotency,
        workflow_completion_retention_ms=workflow_completion,
        enable_lazy_state=_bool(doc, "enableLazyState", path),
        eager_state_keys=_string_list(doc, "eagerStateKeysWhitelist", path),
        public=None if private is None else not private,
        retry=_retry(doc, path),
    )


def _input(value: Any, path: str, handler: str) -> InputRules:
    if value is None:
        return InputRules()
    doc = _object(value, path)
    required = _bool(doc, "required", path) or False
    content_type = doc.get("contentType")
    if content_type is None:
        return InputRules(accepts_empty=not required, content_type=None)
    accepted = _accepted_content_type(_string(content_type, f"{path}.contentType"), handler)
    schema = doc.get("jsonSchema")
    return InputRules(
        accepts_empty=not required, content_type=accepted, json=schema is not None, json_schema=schema
    )


def _accepted_content_type(text: str, handler: str) -> str:
    """Normalise an accept-style content type (``*/*``, ``type/*``, ``type/sub``) as Restate parses it."""
    major, slash, minor = text.strip().partition("/")
    reason = None
    if not slash:
        reason = "must contain one /"
    elif major == "*" and minor != "*":
        reason = "the wildcard format */subType is not supported"
    if reason is not None:
        raise ManifestError(
            f"the handler '{handler}' input content-type is not valid: can't parse the content-type "
            f"'{text}': {reason}",
            status=400,
        )
    return f"{major}/{minor}"


def _output(value: Any, path: str, handler: str) -> OutputRules:
    if value is None:
        return OutputRules()
    doc = _object(value, path)
    set_if_empty = _bool(doc, "setContentTypeIfEmpty", path) or False
    content_type = doc.get("contentType")
    if content_type is None:
        return OutputRules(content_type=None, set_content_type_if_empty=set_if_empty)
    content_type = _string(content_type, f"{path}.contentType")
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in content_type):
        raise ManifestError(
            f"the handler '{handler}' output content-type is not valid: failed to parse header value",
            status=400,
        )
    return OutputRules(content_type, set_if_empty, doc.get("jsonSchema"))

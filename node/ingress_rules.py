"""The ingress's rules, without I/O: request -> route -> ``ServiceInvocation``, outcome -> reply.

Everything here is a pure function of its arguments (the schema, the request's parts, an
injected ``random.Random`` and a clock reading), so the asyncio shell in ``node.ingress`` only
reads the request, calls these, awaits the submitter and writes the reply.

Paths follow Restate 1.7's ingress (restate-protocol.md §6; crates/ingress-http handler/
path_parsing.rs, service_handler.rs, responses.rs, error.rs), checked in the same order, so the
first error a request hits is the one the real server answers:

  1. 2 to 7 '/' in the raw path, else 400 ``bad path: {path}``.
  2. ``/restate/health``, ``/restate/awakeables|a/…``, ``/restate/invocation/…``,
     ``/restate/workflow/…``, ``/restate/call|send|scope|attach|output|lookup…``, ``/openapi``,
     else ``/{service}[/{key}]/{handler}[/send]``: the service must exist (404) and its type
     says whether a key segment comes (URL-decoded, UTF-8).
  3. For an invocation: the handler must exist (404), be public (400), accept no
     ``idempotency-key`` if it is a workflow's run (400); the method must be GET or POST (405);
     the body must fit the handler's input rules (400); ``?delay=`` must parse (400) and only
     on a send (400).

Errors are ``IngressError`` (status + message); every error reply has
``x-restate-error-source: ingress`` and the JSON body ``{"code","message","source"}``. A
handler's terminal failure is rendered with ``"source":"invocation"`` and its own code as the
HTTP status when that is a usable status (200-999), else 500. Only replies about an invocation
carry ``x-restate-id`` (as on the real server, ingress-side refusals do not).

Deviation from Restate 1.7.12, on purpose (its §6.2 recommendation): ``?delay=`` also accepts a
bare integer as milliseconds, which is what the official Python client sends.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import parse_qsl, unquote_to_bytes

from metadata.schema import (
    DEFAULT_IDEMPOTENCY_RETENTION_MS,
    DEFAULT_JOURNAL_RETENTION_MS,
    DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS,
    Handler,
    HandlerType,
    OutputRules,
    Schema,
    Service,
    ServiceType,
)
from processor.core._model import (
    Failure,
    InvocationIdBytes,
    Result,
    ServiceInvocation,
    Target,
)
from processor.core._model import HandlerType as TargetHandlerType
from processor.core._model import ServiceType as TargetServiceType
from processor.ids import AwakeableId, BadId, InvocationId, new_invocation_id

# Restate's message size limit: a larger request body is refused before it is read whole.
MAX_BODY_BYTES: Final = 32 << 20
APPLICATION_JSON: Final = "application/json"
X_RESTATE_ID: Final = "x-restate-id"
X_RESTATE_ERROR_SOURCE: Final = "x-restate-error-source"
IDEMPOTENCY_KEY: Final = "idempotency-key"
IDEMPOTENCY_EXPIRES: Final = "idempotency-expires"
X_RESTATE_INGRESS_PATH: Final = "x-restate-ingress-path"
# Request headers never handed to the handler (Restate's parse_headers).
_NOT_FORWARDED: Final = frozenset({"connection", "host", IDEMPOTENCY_KEY, IDEMPOTENCY_EXPIRES})
_MIN_SEGMENTS, _MAX_SEGMENTS = 2, 7

BAD_SERVICE_PATH: Final = (
    "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
)
BAD_AWAKEABLES_PATH: Final = (
    "bad path, expected either /restate/awakeables/:id/resolve or /restate/awakeables/:id/reject"
)
BAD_INVOCATION_PATH: Final = (
    "bad path, expected either /restate/invocation/:invocation_id/output or "
    "/restate/invocation/:invocation_id/attach or /restate/invocation/:invocation_target/:idempotency_key/output "
    "or /restate/invocation/:invocation_target/:idempotency_key/attach"
)
BAD_WORKFLOW_PATH: Final = (
    "bad path, expected either /restate/workflow/:workflow_name/:workflow_key/output or "
    "/restate/workflow/:workflow_name/:workflow_key/attach"
)
BAD_RESTATE_API_PATH: Final = (
    "bad path, expected /restate/call/:service/:handler, /restate/send/:service/:handler, "
    "/restate/scope/:scope/call/:service/:handler, /restate/attach/:invocation_id, "
    "/restate/output/:invocation_id, or /restate/lookup"
)


# --- errors and replies ---------------------------------------------------------------------------


class IngressError(Exception):
    """A request the ingress refuses; rendered as ``{"code","message","source":"ingress"}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found() -> IngressError:
    return IngressError(404, "not found")


def method_not_allowed() -> IngressError:
    return IngressError(405, "method not allowed")


class UnknownName(IngressError):
    """A service or handler the schema does not have (404): maybe registered a moment ago."""


def service_not_found(service: str) -> IngressError:
    return UnknownName(
        404, f"service '{service}' not found, make sure to register the service before calling it."
    )


def handler_not_found(service: str, handler: str) -> IngressError:
    return UnknownName(
        404,
        f"the service '{service}' exists, but the handler '{handler}' was not found, check that the handler "
        "exists in the latest registered service version.",
    )


def body_too_large() -> IngressError:
    return IngressError(413, "cannot read body: length limit exceeded")


def unavailable(reason: str) -> IngressError:
    """The submitter could not reach the partition (Restate's InvocationDispatcherError, 503)."""
    return IngressError(
        503,
        f"internal routing error: {reason}. If the request has an 'idempotency-key', it can be safely "
        "retried, otherwise submitting it again may result in executing the invocation twice.",
    )


def not_implemented(what: str) -> IngressError:
    return IngressError(501, f"{what} is not implemented yet by durastate")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _json(value: object) -> bytes:
    # serde_json's compact form: no spaces, non-ASCII as UTF-8.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def render_error(error: IngressError) -> Reply:
    body = _json({"code": error.status, "message": error.message, "source": "ingress"})
    return Reply(
        error.status, ((X_RESTATE_ERROR_SOURCE, "ingress"), ("content-type", APPLICATION_JSON)), body
    )


# --- durations and timestamps ------------------------------------------------------------------------

_NS: Final = {
    "w": 7 * 86_400 * 10**9,
    "d": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}
_UNIT_NAMES: Final = {
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "w"),
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), "ms"),
    **dict.fromkeys(("us", "µs", "μs", "usec", "usecs", "microsecond", "microseconds"), "us"),
    **dict.fromkeys(("ns", "nsec", "nsecs", "nanosecond", "nanoseconds"), "ns"),
}
_CALENDAR_UNITS: Final = frozenset({"y", "yr", "yrs", "year", "years", "mo", "mos", "month", "months"})
_UNIT_ORDER: Final = tuple(_NS)
_MAX_SECONDS: Final = 631_107_417_600  # the largest span Restate's duration parser accepts
_FRIENDLY_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Zµμ]+)")
_FRIENDLY_SEPARATOR = re.compile(r"[\s,]*")
_ISO = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+(?:[.,]\d{1,9})?)H)?(?:(?P<m>\d+(?:[.,]\d{1,9})?)M)?(?:(?P<s>\d+(?:[.,]\d{1,9})?)S)?)?",
    re.IGNORECASE,
)
_HMS = re.compile(r"(\d+):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")


def parse_duration_ms(text: str) -> int:
    """A non-negative duration in milliseconds (rounded down), or ``ValueError`` saying why not.

    Accepts what Restate's ``FriendlyDuration`` does -- "2s", "500ms", "1h 30m", "1 hour,
    2 minutes", "60 sec", "1.5s", "01:30:00", ISO 8601 "PT2S"/"P1DT2H" (no years or months) and
    "0" -- plus a bare integer as milliseconds.
    """
    body = text.strip()
    if body.isdigit() and body.isascii():
        return int(body)
    negative = False
    if body.startswith(("+", "-")):
        negative, body = body[0] == "-", body[1:].lstrip()
    if body.lower().endswith(" ago"):
        negative, body = True, body[:-4].rstrip()
    if not body:
        raise ValueError(f"'{text}' is not a duration")
    if body[:1] in "Pp":
        nanos = _iso_nanos(body, text)
    elif (hms := _HMS.fullmatch(body)) is not None:
        hours, minutes, seconds, fraction = hms.groups()
        nanos = (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 10**9
        nanos += int((fraction or "0").ljust(9, "0"))
    else:
        nanos = _friendly_nanos(body, text)
    if negative and nanos:
        raise ValueError("negative signed durations cannot be converted to an unsigned duration")
    if nanos > _MAX_SECONDS * 10**9:
        raise ValueError(f"'{text}' is too large")
    return nanos // 10**6


def _fraction_nanos(number: str, unit_ns: int) -> int:
    whole, _, fraction = number.replace(",", ".").partition(".")
    nanos = int(whole) * unit_ns
    if fraction:
        nanos += int(fraction.ljust(9, "0")[:9]) * unit_ns // 10**9
    return nanos


def _iso_nanos(body: str, text: str) -> int:
    match = _ISO.fullmatch(body)
    if match is None or not any(match.group(u) for u in ("years", "months", "w", "d", "h", "m", "s")):
        raise ValueError(f"'{text}' is not an ISO 8601 duration (e.g. PT2S) nor a friendly one (e.g. 2s)")
    if match.group("years") or match.group("months"):
        raise ValueError(
            f"'{text}' uses years or months, which have no fixed length: use days or smaller units"
        )
    present = [u for u in ("w", "d", "h", "m", "s") if match.group(u)]
    if any(re.search(r"[.,]", match.group(u)) for u in present[:-1]):
        raise ValueError(f"'{text}': only the smallest unit may have a fraction")
    return sum(_fraction_nanos(match.group(u), _NS[u]) for u in present)


def _friendly_nanos(body: str, text: str) -> int:
    position, total, previous = 0, 0, -1
    fractional_seen = False
    while position < len(body):
        match = _FRIENDLY_PART.match(body, position)
        if match is None and position == 0 and not body[:1].isdigit():
            raise ValueError(
                'failed to parse input in the "friendly" duration format: expected duration to start with a unit '
                "value (a decimal integer) after an optional sign, but no integer was found"
            )
        if match is None:
            raise ValueError(
                f"'{text}' is not a duration: expected a number and a unit such as 2s, 500ms, 1h 30m"
            )
        number, unit_text = match.groups()
        lowered = unit_text.lower()
        if lowered in _CALENDAR_UNITS:
            raise ValueError(
                f"'{text}' uses years or months, which have no fixed length: use days or smaller units"
            )
        unit = _UNIT_NAMES.get(lowered)
        if unit is None:
            raise ValueError(f"'{text}': unknown unit '{unit_text}'")
        rank = _UNIT_ORDER.index(unit)
        if rank <= previous or fractional_seen:
            raise ValueError(
                f"'{text}': units must go from largest to smallest, each once, a fraction only on the last"
            )
        previous, fractional_seen = rank, "." in number
        total += _fraction_nanos(number, _NS[unit])
        position = match.end()
        position = _FRIENDLY_SEPARATOR.match(body, position).end()  # type: ignore[union-attr]
    return total


def _utc(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def rfc3339_nanos(ms: int) -> str:
    """``executionTime`` of a send reply: always nine fraction digits, ``Z`` (Restate's humantime)."""
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}000000Z"


def rfc3339_offset(ms: int) -> str:
    """The ``idempotency-expires`` header: milliseconds only when non-zero, ``+00:00`` (chrono's form)."""
    fraction = f".{ms % 1000:03d}" if ms % 1000 else ""
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "+00:00"


# --- routes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthRoute:
    """``GET /restate/health``."""


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """``/{service}[/{key}]/{handler}[/send]``; ``key`` is URL-decoded."""

    service: str
    handler: str
    key: str | None
    send: bool


@dataclass(frozen=True, slots=True)
class ById:
    invocation_id: InvocationId


@dataclass(frozen=True, slots=True)
class ByIdempotencyKey:
    service: str
    key: str | None
    handler: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class ByWorkflow:
    service: str
    key: str


InvocationQuery = ById | ByIdempotencyKey | ByWorkflow


@dataclass(frozen=True, slots=True)
class OutputRoute:
    """``/restate/invocation/…`` and ``/restate/workflow/…``: wait for (``attach``) or peek at the result."""

    query: InvocationQuery
    attach: bool


@dataclass(frozen=True, slots=True)
class AwakeableRoute:
    """``POST /restate/awakeables/{id}/resolve|reject``; ``id`` is checked when the request is handled."""

    awakeable_id: str
    resolve: bool


@dataclass(frozen=True, slots=True)
class UnsupportedRoute:
    """A route of the real ingress that durastate does not serve yet (1.7's ``/restate/…`` verbs)."""

    what: str


Route = HealthRoute | ServiceRoute | OutputRoute | AwakeableRoute | UnsupportedRoute


def _decode_segment(raw: str) -> str:
    decoded = unquote_to_bytes(raw)
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError as error:
        # Worded as Restate's (Rust's FromUtf8Error, debug-printed).
        length = "None" if error.reason == "unexpected end of data" else f"Some({error.end - error.start})"
        detail = (
            f"FromUtf8Error {{ bytes: [{', '.join(map(str, decoded))}], "
            f"error: Utf8Error {{ valid_up_to: {error.start}, error_len: {length} }} }}"
        )
        raise IngressError(400, f"bad path, cannot decode key: {detail}") from None


def _service_type(schema: Schema, name: str) -> ServiceType:
    service = schema.service(name)
    if service is None:
        raise service_not_found(name)
    return service.ty


def _next(parts: list[str], message: str) -> str:
    if not parts:
        raise IngressError(400, message)
    return parts.pop(0)


def parse_path(path: str, schema: Schema) -> Route:
    """The route of a raw (still percent-encoded) path without its query, as Restate parses it."""
    if not _MIN_SEGMENTS <= path.count("/") <= _MAX_SEGMENTS:
        raise IngressError(400, f"bad path: {path}")
    parts = path.split("/")[1:]
    first = parts.pop(0)
    if first == "restate":
        verb = parts.pop(0)
        if verb == "health":
            return HealthRoute()
        if verb in ("awakeables", "a"):
            return _awakeable_route(parts)
        if verb == "invocation":
            return _invocation_route(parts, schema)
        if verb == "workflow":
            return _workflow_route(parts)
        return _restate_api_route(verb, parts, schema)
    if first == "openapi":
        raise not_found()  # Restate 1.7 answers 404 here too: its OpenAPI route is not served
    keyed = _service_type(schema, first) is not ServiceType.SERVICE
    key = _decode_segment(_next(parts, BAD_SERVICE_PATH)) if keyed else None
    handler = _next(parts, BAD_SERVICE_PATH)
    send = False
    if parts:
        if parts.pop(0) != "send" or parts:
            raise IngressError(400, BAD_SERVICE_PATH)
        send = True
    return ServiceRoute(first, handler, key, send)


def _awakeable_route(parts: list[str]) -> AwakeableRoute:
    awakeable_id = _next(parts, BAD_AWAKEABLES_PATH)
    action = _next(parts, BAD_AWAKEABLES_PATH)
    if action not in ("resolve", "reject"):
        raise not_found()
    return AwakeableRoute(awakeable_id, action == "resolve")


def _output_kind(last: str) -> bool:
    if last not in ("attach", "output"):
        raise not_found()
    return last == "attach"


def _invocation_route(parts: list[str], schema: Schema) -> OutputRoute:
    first = _next(parts, BAD_INVOCATION_PATH)
    second = _next(parts, BAD_INVOCATION_PATH)
    if not parts:
        attach = _output_kind(second)
        try:
            return OutputRoute(ById(InvocationId.parse(first)), attach)
        except BadId as bad:
            raise IngressError(400, str(bad)) from None
    third = parts.pop(0)
    if _service_type(schema, first) is ServiceType.SERVICE:
        key, handler, idempotency_key = None, second, third
    else:
        key, handler, idempotency_key = _decode_segment(second), third, _next(parts, BAD_INVOCATION_PATH)
    attach = _output_kind(_next(parts, BAD_INVOCATION_PATH))
    return OutputRoute(ByIdempotencyKey(first, key, handler, idempotency_key), attach)


def _workflow_route(parts: list[str]) -> OutputRoute:
    service = _next(parts, BAD_WORKFLOW_PATH)
    key = _decode_segment(_next(parts, BAD_WORKFLOW_PATH))
    return OutputRoute(ByWorkflow(service, key), _output_kind(_next(parts, BAD_WORKFLOW_PATH)))


def _restate_api_route(verb: str, parts: list[str], schema: Schema) -> Route:
    if verb in ("call", "send"):
        service = _next(parts, BAD_RESTATE_API_PATH)
        keyed = _service_type(schema, service) is not ServiceType.SERVICE
        key = _decode_segment(_next(parts, BAD_RESTATE_API_PATH)) if keyed else None
        handler = _next(parts, BAD_RESTATE_API_PATH)
        if parts:
            raise IngressError(400, BAD_RESTATE_API_PATH)
        return ServiceRoute(service, handler, key, verb == "send")
    if verb == "scope":
        _decode_segment(_next(parts, BAD_RESTATE_API_PATH))
        _next(parts, BAD_RESTATE_API_PATH)
        raise IngressError(400, "scoped invocations require vqueues to be enabled")
    if verb in ("attach", "output"):
        if len(parts) > 1:
            raise IngressError(400, BAD_RESTATE_API_PATH)
        if parts:
            try:
                return OutputRoute(ById(InvocationId.parse(parts[0])), verb == "attach")
            except BadId as bad:
                raise IngressError(400, str(bad)) from None
        return UnsupportedRoute(f"POST /restate/{verb}")
    if verb == "lookup":
        if parts:
            raise IngressError(400, BAD_RESTATE_API_PATH)
        return UnsupportedRoute("POST /restate/lookup")
    raise not_found()


def check_awakeable(route: AwakeableRoute, method: str) -> AwakeableId:
    """The awakeable id of a resolve/reject request (Restate checks the method first, then the id)."""
    if method != "POST":
        raise method_not_allowed()
    try:
        return AwakeableId.parse(route.awakeable_id)
    except BadId as bad:
        raise IngressError(400, str(bad)) from None


def check_output_method(method: str) -> None:
    if method != "GET":
        raise method_not_allowed()


# --- invocations ---------------------------------------------------------------------------------


_SERVICE_TYPES: Final = {
    ServiceType.SERVICE: TargetServiceType.SERVICE,
    ServiceType.VIRTUAL_OBJECT: TargetServiceType.VIRTUAL_OBJECT,
    ServiceType.WORKFLOW: TargetServiceType.WORKFLOW,
}
_HANDLER_TYPES: Final = {
    HandlerType.EXCLUSIVE: TargetHandlerType.EXCLUSIVE,
    HandlerType.SHARED: TargetHandlerType.SHARED,
    HandlerType.WORKFLOW: TargetHandlerType.WORKFLOW,
}


def _first(value: int | None, *fallbacks: int | None) -> int:
    for candidate in (value, *fallbacks):
        if candidate is not None:
            return candidate
    raise AssertionError("the last fallback is a default")


def compute_retention(service: Service, handler: Handler, has_idempotency_key: bool) -> tuple[int, int]:
    """(completion, journal) retention in ms of a new invocation: Restate's ``compute_retention``.

    A workflow's run or a request with an idempotency key keeps its completion for the
    workflow-completion (resp. idempotency) retention, and its journal at most that long;
    anything else keeps both for the journal retention. Handler settings override the
    service's, which override the server defaults (1 day each).
    """
    journal = _first(handler.journal_retention_ms, service.journal_retention_ms, DEFAULT_JOURNAL_RETENTION_MS)
    if handler.ty is HandlerType.WORKFLOW:
        completion = _first(
            handler.workflow_completion_retention_ms, DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS
        )
    else:
        completion = _first(
            handler.idempotency_retention_ms,
            service.idempotency_retention_ms,
            DEFAULT_IDEMPOTENCY_RETENTION_MS,
        )
    if handler.ty is HandlerType.WORKFLOW or has_idempotency_key:
        return completion, min(journal, completion)
    return journal, journal


_VISIBLE_ASCII = re.compile(rb"[\t\x20-\x7e]*")


def _header_text(name: str, raw: bytes) -> str:
    # Restate reads headers with http's to_str(): visible ASCII and tabs only.
    if _VISIBLE_ASCII.fullmatch(raw) is None:
        raise IngressError(400, f"bad header {name}: ToStrError {{ _priv: () }}")
    return raw.decode("ascii")


def request_header(raw_headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    """The first value of a request header (as Restate's ``HeaderMap::get``), checked as text."""
    wanted = name.encode()
    for raw_name, value in raw_headers:
        if raw_name.lower() == wanted:
            return _header_text(name, value)
    return None


def forwarded_headers(
    path_and_query: str, raw_headers: Sequence[tuple[bytes, bytes]]
) -> tuple[tuple[str, str], ...]:
    """The headers the handler sees: ``x-restate-ingress-path`` first, then each request header
    in order, lowercased, except connection/host/idempotency-key/idempotency-expires. Like
    Restate (which walks an ``http::HeaderMap``), only the first value of a repeated header goes."""
    out = [(X_RESTATE_INGRESS_PATH, path_and_query)]
    seen: set[str] = set()
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        if name in seen:
            continue
        seen.add(name)
        if name not in _NOT_FORWARDED:
            out.append((name, _header_text(name, raw_value)))
    return tuple(out)


def parse_delay(query: str) -> int | None:
    """The ``delay`` query parameter in ms (the first one, name case-insensitive), if any."""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.lower() == "delay":
            try:
                return parse_duration_ms(value)
            except ValueError as bad:
                raise IngressError(
                    400, f"bad delay query parameter, must be a ISO8601 duration: {bad}"
                ) from None
    return None


@dataclass(frozen=True, slots=True)
class IngressRequest:
    """What the rules need of an HTTP request: method, raw path and query, headers as sent, body."""

    method: str
    path: str
    query: str
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes

    @property
    def path_and_query(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


@dataclass(frozen=True, slots=True)
class ResolvedHandler:
    """A service route checked against the schema: what can be known before reading the body."""

    route: ServiceRoute
    service: Service
    handler: Handler
    deployment_id: str
    idempotency_key: str | None


def resolve_handler(
    route: ServiceRoute, schema: Schema, raw_headers: Sequence[tuple[bytes, bytes]]
) -> ResolvedHandler:
    """Handler lookup, visibility and the idempotency-key rule (the checks before the method's)."""
    service = schema.service(route.service)
    handler = None if service is None else service.handler(route.handler)
    deployment = schema.deployment_for_service(route.service)
    if service is None or handler is None or deployment is None:
        raise handler_not_found(route.service, route.handler)
    public = service.public if handler.public is None else handler.public
    if not public:
        raise IngressError(400, "the invoked service is not public")
    idempotency_key = request_header(raw_headers, IDEMPOTENCY_KEY)
    if idempotency_key is not None and handler.ty is HandlerType.WORKFLOW:
        raise IngressError(
            400,
            "cannot use the idempotency key with workflow handlers. The handler invocation will already be "
            "idempotent by the workflow key itself.",
        )
    return ResolvedHandler(route, service, handler, deployment.id, idempotency_key)


def check_method(method: str) -> None:
    if method not in ("GET", "POST"):
        raise method_not_allowed()


def build_invocation(
    resolved: ResolvedHandler, request: IngressRequest, rng: random.Random, now_ms: int
) -> ServiceInvocation:
    """The ``ServiceInvocation`` of a checked request (the body is validated here, sinks left unset:
    the submitter knows where the answer must come back to)."""
    route, service, handler = resolved.route, resolved.service, resolved.handler
    problem = handler.input.validate(request_header(request.headers, "content-type"), request.body)
    if problem is not None:
        raise IngressError(400, f"input validation error: {problem}")
    delay_ms = parse_delay(request.query)
    headers = forwarded_headers(request.path_and_query, request.headers)
    if delay_ms is not None and not route.send:
        raise IngressError(
            400, "cannot use the delay query parameter with calls. The delay is supported only with sends"
        )
    workflow_run = handler.ty is HandlerType.WORKFLOW
    invocation_id = new_invocation_id(
        service=route.service,
        handler=route.handler,
        rng=rng,
        now_ms=now_ms,
        key=route.key,
        idempotency_key=resolved.idempotency_key,
        workflow_run=workflow_run,
    )
    completion_ms, journal_ms = compute_retention(service, handler, resolved.idempotency_key is not None)
    target = Target(
        service=route.service,
        handler=route.handler,
        service_type=_SERVICE_TYPES[service.ty],
        handler_type=None if handler.ty is None else _HANDLER_TYPES[handler.ty],
        key=route.key,
    )
    return ServiceInvocation(
        invocation_id=invocation_id.to_bytes(),
        target=target,
        deployment_id=resolved.deployment_id,
        argument=request.body,
        headers=headers,
        idempotency_key=resolved.idempotency_key,
        execution_time_ms=now_ms + delay_ms if delay_ms else 0,
        completion_retention_ms=completion_ms,
        journal_retention_ms=journal_ms,
    )


# --- outcomes and their replies -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """The partition refused to run the request (e.g. a workflow's run invoked a second time)."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The answer to a call: the invocation's ``result``, or a ``rejection`` (exactly one).

    ``invocation_id`` is the invocation that answered (for a rejected workflow run, the run that
    exists). ``expires_at_ms`` is set when the result comes from a retained completed invocation."""

    invocation_id: InvocationIdBytes
    result: Result | None = None
    rejection: Rejection | None = None
    expires_at_ms: int = 0

    def __post_init__(self) -> None:
        if (self.result is None) == (self.rejection is None):
            raise ValueError("a CallOutcome has exactly one of result and rejection")


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The answer to a send: accepted now, or a duplicate of an earlier one (same id)."""

    invocation_id: InvocationIdBytes
    previously_accepted: bool = False
    execution_time_ms: int = 0


def failure_status(code: int) -> int:
    """The HTTP status of a terminal failure: its code when usable as a final status, else 500."""
    return code if 200 <= code <= 999 else 500


def render_call(outcome: CallOutcome, output: OutputRules) -> Reply:
    headers = [(X_RESTATE_ID, str(InvocationId.from_bytes(outcome.invocation_id)))]
    if outcome.expires_at_ms:
        headers.append((IDEMPOTENCY_EXPIRES, rfc3339_offset(outcome.expires_at_ms)))
    failure: Failure | None
    if outcome.rejection is not None:
        failure = Failure(outcome.rejection.code, outcome.rejection.message)
    else:
        assert outcome.result is not None
        failure = outcome.result.failure
    if failure is None:
        assert outcome.result is not None
        value = outcome.result.value or b""
        content_type = output.content_type_for(empty=not value)
        if content_type is not None:
            headers.append(("content-type", content_type))
        return Reply(200, tuple(headers), value)
    document: dict[str, object] = {"code": failure.code, "message": failure.message}
    if failure.metadata:
        document["metadata"] = dict(failure.metadata)
    document["source"] = "invocation"
    headers += [(X_RESTATE_ERROR_SOURCE, "invocation"), ("content-type", APPLICATION_JSON)]
    return Reply(failure_status(failure.code), tuple(headers), _json(document))


def render_send(outcome: SendOutcome) -> Reply:
    invocation_id = str(InvocationId.from_bytes(outcome.invocation_id))
    document: dict[str, object] = {"invocationId": invocation_id}
    if outcome.execution_time_ms:
        document["executionTime"] = rfc3339_nanos(outcome.execution_time_ms)
    document["status"] = "PreviouslyAccepted" if outcome.previously_accepted else "Accepted"
    return Reply(202, (("content-type", APPLICATION_JSON), (X_RESTATE_ID, invocation_id)), _json(document))


_CORS_VARY: Final = ("vary", "origin, access-control-request-method, access-control-request-headers")


def cors_headers(origin: str | None) -> tuple[tuple[str, str], ...]:
    """Added to every reply: Restate's ingress lets any origin call it, with credentials."""
    headers = (_CORS_VARY, ("access-control-allow-credentials", "true"))
    return headers if origin is None else (*headers, ("access-control-allow-origin", origin))


def cors_preflight(origin: str, method: str, request_headers: str | None) -> Reply:
    """The answer to a browser's preflight ``OPTIONS``: what it asks for is allowed."""
    headers = [("access-control-allow-methods", method)]
    if request_headers is not None:
        headers.append(("access-control-allow-headers", request_headers))
    return Reply(200, tuple(headers), b"")


def render_health(service_names: Iterable[str]) -> Reply:
    return Reply(200, (("content-type", APPLICATION_JSON),), _json({"services": list(service_names)}))

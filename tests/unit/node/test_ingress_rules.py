"""The ingress's pure rules: path parsing, header passing, content-type checks, delays, retention,
the invocation built for the partition, and every reply shape (restate-protocol.md §6, §8.3, §11).

The schema is the one the admin registers from the official SDK's manifest of
tests/sdk_services/catalog.py; bodies are compared byte for byte with the captured ones.
"""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from metadata.schema import DAY_MS, Handler, HandlerType, OutputRules, Service, ServiceType
from node.ingress_rules import (
    BAD_AWAKEABLES_PATH,
    BAD_INVOCATION_PATH,
    BAD_SERVICE_PATH,
    BAD_WORKFLOW_PATH,
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
    SendOutcome,
    ServiceRoute,
    UnsupportedRoute,
    build_invocation,
    check_awakeable,
    compute_retention,
    failure_status,
    forwarded_headers,
    parse_delay,
    parse_duration_ms,
    parse_path,
    render_call,
    render_error,
    render_health,
    render_send,
    resolve_handler,
    rfc3339_nanos,
    rfc3339_offset,
)
from processor.core._model import Failure, Result
from processor.core._model import HandlerType as TargetHandlerType
from processor.core._model import ServiceType as TargetServiceType
from processor.ids import AwakeableId, InvocationId, idempotent_uuid, partition_key_of, workflow_uuid

from .sdk_schema import DEPLOYMENT_ID, catalog_schema

SCHEMA = catalog_schema()
NOW_MS = 1_795_317_414_503  # 2026-11-22T03:16:54.503Z
INVOCATION = InvocationId(0x38C53FA9CAF15A44, 0xFDEC968E16BBED2DCA023E89C8EE73F2)
INVOCATION_TEXT = "inv_15RQUtD4KGmc7nv7IKqoqTgCMj4UOIwL37"  # captured pair (reference §8.1)


def error_of(call, *args) -> IngressError:
    with pytest.raises(IngressError) as caught:
        call(*args)
    return caught.value


def body_of(error: IngressError) -> dict:
    return json.loads(render_error(error).body)


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/Greeter/greet", ServiceRoute("Greeter", "greet", None, False)),
        ("/Greeter/greet/send", ServiceRoute("Greeter", "greet", None, True)),
        ("/Counter/my-key/add", ServiceRoute("Counter", "add", "my-key", False)),
        ("/Counter/a%2Fb%20c%C3%A9/add/send", ServiceRoute("Counter", "add", "a/b cé", True)),
        ("/Counter/a+b/get", ServiceRoute("Counter", "get", "a+b", False)),  # '+' is not a space in paths
        ("/Counter//add", ServiceRoute("Counter", "add", "", False)),
        ("/Signup/me%40x.io/run", ServiceRoute("Signup", "run", "me@x.io", False)),
        ("/Greeter/nope", ServiceRoute("Greeter", "nope", None, False)),  # the handler is checked later
        ("/restate/call/Greeter/greet", ServiceRoute("Greeter", "greet", None, False)),
        ("/restate/send/Counter/k/add", ServiceRoute("Counter", "add", "k", True)),
        ("/restate/health", HealthRoute()),
        (f"/restate/invocation/{INVOCATION_TEXT}/output", OutputRoute(ById(INVOCATION), attach=False)),
        (f"/restate/invocation/{INVOCATION_TEXT}/attach", OutputRoute(ById(INVOCATION), attach=True)),
        (
            "/restate/invocation/Greeter/greet/ik-1/attach",
            OutputRoute(ByIdempotencyKey("Greeter", None, "greet", "ik-1"), True),
        ),
        (
            "/restate/invocation/Counter/k%21/add/ik/output",
            OutputRoute(ByIdempotencyKey("Counter", "k!", "add", "ik"), False),
        ),
        ("/restate/workflow/Signup/a%20b/attach", OutputRoute(ByWorkflow("Signup", "a b"), True)),
        ("/restate/workflow/Signup/k/output", OutputRoute(ByWorkflow("Signup", "k"), False)),
        (f"/restate/output/{INVOCATION_TEXT}", OutputRoute(ById(INVOCATION), False)),
        ("/restate/awakeables/sign_1abc/resolve", AwakeableRoute("sign_1abc", True)),
        ("/restate/a/sign_1abc/reject", AwakeableRoute("sign_1abc", False)),
        ("/restate/attach", UnsupportedRoute("POST /restate/attach")),
        ("/restate/lookup", UnsupportedRoute("POST /restate/lookup")),
    ],
)
def test_routes(path, route):
    assert parse_path(path, SCHEMA) == route


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/", 400, "bad path: /"),
        ("/Greeter", 400, "bad path: /Greeter"),
        ("/a/b/c/d/e/f/g/h", 400, "bad path: /a/b/c/d/e/f/g/h"),
        ("/restate", 400, "bad path: /restate"),
        ("/Counter/add", 400, BAD_SERVICE_PATH),  # an object needs its key
        ("/Counter/k/add/extra", 400, BAD_SERVICE_PATH),
        ("/Greeter/greet/send/more", 400, BAD_SERVICE_PATH),
        ("/Greeter/greet/sned", 400, BAD_SERVICE_PATH),
        (
            "/Nope/greet",
            404,
            "service 'Nope' not found, make sure to register the service before calling it.",
        ),
        (
            "/restate/call/Nope/x",
            404,
            "service 'Nope' not found, make sure to register the service before calling it.",
        ),
        ("/openapi/x", 404, "not found"),
        ("/restate/nope", 404, "not found"),
        ("/restate/awakeables/only", 400, BAD_AWAKEABLES_PATH),
        ("/restate/awakeables/id/approve", 404, "not found"),
        ("/restate/invocation/only", 400, BAD_INVOCATION_PATH),
        ("/restate/invocation/garbage/output", 400, "bad invocation id 'garbage': bad format"),
        ("/restate/invocation/inv_1abc/attach", 400, "bad invocation id 'inv_1abc': bad length"),
        (f"/restate/invocation/{INVOCATION_TEXT}/wait", 404, "not found"),
        ("/restate/invocation/Counter/k/add/attach", 400, BAD_INVOCATION_PATH),  # keyed: the key comes first
        ("/restate/workflow/Signup/k", 400, BAD_WORKFLOW_PATH),
        ("/restate/scope/s1/call/Greeter/greet", 400, "scoped invocations require vqueues to be enabled"),
        (
            "/Counter/%FF/add",
            400,
            "bad path, cannot decode key: FromUtf8Error { bytes: [255], error: Utf8Error "
            "{ valid_up_to: 0, error_len: Some(1) } }",
        ),
        (
            "/Counter/a%C3/add",
            400,
            "bad path, cannot decode key: FromUtf8Error { bytes: [97, 195], error: "
            "Utf8Error { valid_up_to: 1, error_len: None } }",
        ),
    ],
)
def test_bad_paths(path, status, message):
    error = error_of(parse_path, path, SCHEMA)
    assert (error.status, error.message) == (status, message)


def test_awakeable_ids_are_checked_after_the_method():
    route = AwakeableRoute("garbage", True)
    assert error_of(check_awakeable, route, "GET").status == 405
    bad = error_of(check_awakeable, route, "POST")
    assert (bad.status, bad.message) == (400, "bad awakeable id 'garbage': bad format")
    valid = AwakeableId(INVOCATION, 17)
    assert check_awakeable(AwakeableRoute(str(valid), False), "POST") == valid


# --- durations -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2s", 2000),
        ("500ms", 500),
        ("1m", 60_000),
        ("1h 30m", 5_400_000),
        ("1h30m", 5_400_000),
        ("1 hour, 2 minutes", 3_720_000),
        ("60 sec", 60_000),
        ("1.5s", 1500),
        ("2d", 2 * DAY_MS),
        ("1w", 7 * DAY_MS),
        ("1500us", 1),
        ("999999ns", 0),
        ("PT2S", 2000),
        ("pt0.5s", 500),
        ("P1DT2H", DAY_MS + 7_200_000),
        ("PT1M30S", 90_000),
        ("01:30:00", 5_400_000),
        ("0", 0),
        ("1500", 1500),  # durastate's extension: a bare integer is milliseconds
        ("  250 ", 250),
    ],
)
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not a duration"),
        ("soon", "expected duration to start with a unit value"),
        ("1s soon", "not a duration"),
        ("2x", "unknown unit"),
        ("1y", "years or months"),
        ("2 months", "years or months"),
        ("P1M", "years or months"),
        ("P1Y2D", "years or months"),
        ("PT", "not an ISO 8601 duration"),
        ("-2s", "negative signed durations cannot be converted to an unsigned duration"),
        ("2s ago", "negative signed"),
        ("1s 2m", "largest to smallest"),
        ("1m 1m", "largest to smallest"),
        ("1.5m 2s", "largest to smallest"),
        ("PT1.5H2M", "only the smallest unit"),
        ("9999999999999999s", "too large"),
    ],
)
def test_bad_durations(text, why):
    with pytest.raises(ValueError, match=why):
        parse_duration_ms(text)


def test_delay_query_parameter():
    assert parse_delay("") is None
    assert parse_delay("x=1") is None
    assert parse_delay("delay=PT2S") == 2000
    assert parse_delay("DELAY=1+h&delay=1s") == 3_600_000  # form decoding; the first one counts
    assert parse_delay("delay=250") == 250
    bad = error_of(parse_delay, "delay=tomorrow")
    assert bad.status == 400
    assert bad.message.startswith("bad delay query parameter, must be a ISO8601 duration: ")


# --- headers ---------------------------------------------------------------------------------------------


def test_forwarded_headers_keep_order_and_drop_the_ingress_own():
    raw = [
        (b"Host", b"localhost:8080"),
        (b"Content-Type", b"application/json"),
        (b"Idempotency-Key", b"k1"),
        (b"X-Trace", b"a"),
        (b"connection", b"keep-alive"),
        (b"x-trace", b"b"),  # a repeated header: only its first value goes, as in Restate
        (b"idempotency-expires", b"x"),
        (b"User-Agent", b"curl/8"),
    ]
    assert forwarded_headers("/Greeter/greet?x=1", raw) == (
        ("x-restate-ingress-path", "/Greeter/greet?x=1"),
        ("content-type", "application/json"),
        ("x-trace", "a"),
        ("user-agent", "curl/8"),
    )


def test_a_header_that_is_not_visible_ascii_is_refused():
    error = error_of(forwarded_headers, "/Greeter/greet", [(b"x-name", "héllo".encode())])
    assert (error.status, error.message) == (400, "bad header x-name: ToStrError { _priv: () }")


# --- handler resolution and invocation building ------------------------------------------------------------


def request(
    path: str, body: bytes = b"", headers=(), method: str = "POST", query: str = ""
) -> IngressRequest:
    return IngressRequest(method, path, query, list(headers), body)


def invoke(path: str, body: bytes = b"", headers=(), query: str = "", seed: int = 1):
    route = parse_path(path, SCHEMA)
    resolved = resolve_handler(route, SCHEMA, list(headers))
    return build_invocation(resolved, request(path, body, headers, query=query), random.Random(seed), NOW_MS)


JSON_CT = (b"content-type", b"application/json")


def test_handler_checks():
    unknown = error_of(resolve_handler, parse_path("/Greeter/nope", SCHEMA), SCHEMA, [])
    assert unknown.status == 404
    assert unknown.message == (
        "the service 'Greeter' exists, but the handler 'nope' was not found, check that the handler exists "
        "in the latest registered service version."
    )
    private = error_of(resolve_handler, parse_path("/Internal/ping", SCHEMA), SCHEMA, [])
    assert (private.status, private.message) == (400, "the invoked service is not public")
    run_with_key = error_of(
        resolve_handler, parse_path("/Signup/k/run", SCHEMA), SCHEMA, [(b"idempotency-key", b"x")]
    )
    assert run_with_key.status == 400
    assert run_with_key.message.startswith("cannot use the idempotency key with workflow handlers.")
    # Only the workflow's run refuses one: its shared handlers take idempotency keys.
    shared = resolve_handler(parse_path("/Signup/k/confirm", SCHEMA), SCHEMA, [(b"idempotency-key", b"x")])
    assert shared.idempotency_key == "x"


@pytest.mark.parametrize(
    ("path", "body", "headers", "message"),
    [
        (
            "/Greeter/greet",
            b'"x"',
            [(b"content-type", b"text/plain")],
            "input validation error: Content-type 'text/plain' does not match 'application/json'",
        ),
        ("/Greeter/greet", b"", [JSON_CT], "input validation error: Empty body not allowed"),
        ("/Greeter/greet", b'"x"', [], "input validation error: Empty content-type"),
        (
            "/Counter/k/get",
            b"1",
            [JSON_CT],
            "input validation error: Expected body and content-type to be empty, but wasn't with content-type "
            "'Some(\"application/json\")'",
        ),
        (
            "/Counter/k/reset",
            b"x",
            [],
            "input validation error: Expected body and content-type to be empty, but wasn't with content-type 'None'",
        ),
        (
            "/Formats/shout",
            b"hi",
            [JSON_CT],
            "input validation error: Content-type 'application/json' does not match 'text/*'",
        ),
    ],
)
def test_input_rules(path, body, headers, message):
    error = error_of(invoke, path, body, headers)
    assert (error.status, error.message) == (400, message)


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/Greeter/greet", b"", []),  # no content type and no body: accepted when not required
        ("/Greeter/greet", b'"x"', [(b"content-type", b"application/json; charset=utf-8")]),
        ("/Counter/k/get", b"", []),
        ("/Formats/shout", b"hi", [(b"content-type", b"text/plain")]),
        ("/Formats/shout", b"hi", [(b"content-type", b"text/markdown")]),
    ],
)
def test_accepted_inputs(path, body, headers):
    assert invoke(path, body, headers).argument == body


def test_the_invocation_of_a_plain_call():
    invocation = invoke("/Greeter/greet", b'"Ada"', [JSON_CT, (b"x-custom", b"1")], query="a=b")
    assert invocation.target.service == "Greeter"
    assert invocation.target.handler == "greet"
    assert invocation.target.service_type is TargetServiceType.SERVICE
    assert invocation.target.handler_type is None
    assert invocation.target.key is None
    assert invocation.deployment_id == DEPLOYMENT_ID
    assert invocation.argument == b'"Ada"'
    assert invocation.headers == (
        ("x-restate-ingress-path", "/Greeter/greet?a=b"),
        ("content-type", "application/json"),
        ("x-custom", "1"),
    )
    assert (invocation.response_sink, invocation.submit_sink, invocation.caller) == (None, None, None)
    assert invocation.idempotency_key is None
    assert invocation.execution_time_ms == 0
    assert (invocation.completion_retention_ms, invocation.journal_retention_ms) == (DAY_MS, DAY_MS)
    # Random ids come from the injected rng and clock only: the same seed gives the same id.
    assert invoke("/Greeter/greet", b'"Ada"', [JSON_CT]).invocation_id == invocation.invocation_id
    assert invoke("/Greeter/greet", b'"Ada"', [JSON_CT], seed=2).invocation_id != invocation.invocation_id
    uuid = InvocationId.from_bytes(invocation.invocation_id).uuid
    assert uuid >> 80 == NOW_MS  # a ULID stamped with the clock reading


def test_keyed_and_idempotent_invocations_have_deterministic_ids():
    add = invoke("/Counter/k%201/add", b"1", [JSON_CT])
    assert add.target.key == "k 1"
    assert add.target.service_type is TargetServiceType.VIRTUAL_OBJECT
    assert add.target.handler_type is TargetHandlerType.EXCLUSIVE
    assert InvocationId.from_bytes(add.invocation_id).partition_key == partition_key_of("k 1")

    first = invoke("/Counter/k/add", b"1", [JSON_CT, (b"idempotency-key", b"ik")], seed=1)
    again = invoke("/Counter/k/add", b"1", [JSON_CT, (b"idempotency-key", b"ik")], seed=99)
    assert first.invocation_id == again.invocation_id
    assert InvocationId.from_bytes(first.invocation_id) == InvocationId(
        partition_key_of("k"), idempotent_uuid("Counter", "add", "ik", "k")
    )
    assert first.idempotency_key == "ik"
    assert all(name != "idempotency-key" for name, _ in first.headers)
    unkeyed = invoke("/Greeter/greet/send", b"", [(b"idempotency-key", b"ik")])
    assert InvocationId.from_bytes(unkeyed.invocation_id).partition_key == partition_key_of("ik")

    run = invoke("/Signup/me/run", b'"me"', [JSON_CT], seed=5)
    assert run.target.handler_type is TargetHandlerType.WORKFLOW
    assert InvocationId.from_bytes(run.invocation_id) == InvocationId(
        partition_key_of("me"), workflow_uuid("Signup", "me")
    )


def test_delayed_sends():
    send = invoke("/Greeter/greet/send", b"", query="delay=10s")
    assert send.execution_time_ms == NOW_MS + 10_000
    assert invoke("/Greeter/greet/send", b"", query="delay=0").execution_time_ms == 0
    on_call = error_of(invoke, "/Greeter/greet", b"", [], "delay=1s")
    assert on_call.status == 400
    assert (
        on_call.message
        == "cannot use the delay query parameter with calls. The delay is supported only with sends"
    )


# --- retention (§8.3) ---------------------------------------------------------------------------------------


def test_retention():
    service = Service("S", ServiceType.SERVICE)
    plain = Handler("h")
    assert compute_retention(service, plain, False) == (DAY_MS, DAY_MS)
    assert compute_retention(service, plain, True) == (DAY_MS, DAY_MS)
    tuned = msgspec.structs.replace(service, journal_retention_ms=60_000, idempotency_retention_ms=3_600_000)
    assert compute_retention(tuned, plain, False) == (60_000, 60_000)
    assert compute_retention(tuned, plain, True) == (3_600_000, 60_000)
    # A handler's setting wins over the service's.
    own = Handler("h", journal_retention_ms=7_200_000, idempotency_retention_ms=1000)
    assert compute_retention(tuned, own, True) == (1000, 1000)
    # No journal retention: nothing is kept after completion, unless an idempotency key asks.
    none_kept = msgspec.structs.replace(service, journal_retention_ms=0)
    assert compute_retention(none_kept, plain, False) == (0, 0)
    assert compute_retention(none_kept, plain, True) == (DAY_MS, 0)
    workflow = Service("W", ServiceType.WORKFLOW, idempotency_retention_ms=5)
    run = Handler("run", ty=HandlerType.WORKFLOW, workflow_completion_retention_ms=2 * DAY_MS)
    assert compute_retention(workflow, run, False) == (2 * DAY_MS, DAY_MS)
    assert compute_retention(workflow, Handler("run", ty=HandlerType.WORKFLOW), False) == (DAY_MS, DAY_MS)


# --- replies ------------------------------------------------------------------------------------------------


JSON_OUT = OutputRules("application/json", False)


def test_call_success_replies():
    reply = render_call(CallOutcome(INVOCATION.to_bytes(), Result(b'"Hello"')), JSON_OUT)
    assert reply.status == 200
    assert reply.headers == (("x-restate-id", INVOCATION_TEXT), ("content-type", "application/json"))
    assert reply.body == b'"Hello"'
    # An empty output (Python's None) has no content type unless setContentTypeIfEmpty.
    empty = render_call(CallOutcome(INVOCATION.to_bytes(), Result(b"")), JSON_OUT)
    assert (empty.status, empty.headers, empty.body) == (200, (("x-restate-id", INVOCATION_TEXT),), b"")
    forced = render_call(
        CallOutcome(INVOCATION.to_bytes(), Result(None)), OutputRules("application/json", True)
    )
    assert ("content-type", "application/json") in forced.headers
    no_type = render_call(CallOutcome(INVOCATION.to_bytes(), Result(b"x")), OutputRules(None))
    assert no_type.headers == (("x-restate-id", INVOCATION_TEXT),)
    retained = render_call(CallOutcome(INVOCATION.to_bytes(), Result(b"1"), expires_at_ms=NOW_MS), JSON_OUT)
    assert retained.headers[:2] == (
        ("x-restate-id", INVOCATION_TEXT),
        ("idempotency-expires", "2026-11-22T03:16:54.503+00:00"),
    )


def test_call_failure_replies():
    reply = render_call(CallOutcome(INVOCATION.to_bytes(), Result(failure=Failure(409, "nope"))), JSON_OUT)
    assert reply.status == 409
    assert reply.headers == (
        ("x-restate-id", INVOCATION_TEXT),
        ("x-restate-error-source", "invocation"),
        ("content-type", "application/json"),
    )
    assert reply.body == b'{"code":409,"message":"nope","source":"invocation"}'
    with_metadata = render_call(
        CallOutcome(INVOCATION.to_bytes(), Result(failure=Failure(500, "boom", (("k", "v"),)))), JSON_OUT
    )
    assert with_metadata.body == b'{"code":500,"message":"boom","metadata":{"k":"v"},"source":"invocation"}'
    rejected = render_call(
        CallOutcome(
            INVOCATION.to_bytes(), rejection=Rejection(409, "the workflow method was already invoked")
        ),
        JSON_OUT,
    )
    assert rejected.status == 409
    assert (
        rejected.body
        == b'{"code":409,"message":"the workflow method was already invoked","source":"invocation"}'
    )
    assert ("x-restate-id", INVOCATION_TEXT) in rejected.headers
    with pytest.raises(ValueError):
        CallOutcome(INVOCATION.to_bytes())


@pytest.mark.parametrize(
    ("code", "status"),
    [(409, 409), (470, 470), (200, 200), (999, 999), (100, 500), (0, 500), (1000, 500), (65535, 500)],
)
def test_failure_status(code, status):
    assert failure_status(code) == status


def test_send_replies():
    accepted = render_send(SendOutcome(INVOCATION.to_bytes()))
    assert accepted.status == 202
    assert accepted.headers == (("content-type", "application/json"), ("x-restate-id", INVOCATION_TEXT))
    assert accepted.body == f'{{"invocationId":"{INVOCATION_TEXT}","status":"Accepted"}}'.encode()
    again = render_send(SendOutcome(INVOCATION.to_bytes(), previously_accepted=True))
    assert again.body == f'{{"invocationId":"{INVOCATION_TEXT}","status":"PreviouslyAccepted"}}'.encode()
    delayed = render_send(SendOutcome(INVOCATION.to_bytes(), execution_time_ms=NOW_MS))
    assert (
        delayed.body
        == (
            f'{{"invocationId":"{INVOCATION_TEXT}","executionTime":"2026-11-22T03:16:54.503000000Z","status":"Accepted"}}'
        ).encode()
    )


def test_error_and_health_replies():
    reply = render_error(
        IngressError(404, "service 'Nope' not found, make sure to register the service before calling it.")
    )
    assert reply.status == 404
    assert reply.headers == (("x-restate-error-source", "ingress"), ("content-type", "application/json"))
    assert reply.body == (
        b'{"code":404,"message":"service \'Nope\' not found, make sure to register the service before calling it.",'
        b'"source":"ingress"}'
    )
    health = render_health(["Counter", "Greeter"])
    assert (health.status, health.body) == (200, b'{"services":["Counter","Greeter"]}')


def test_timestamps():
    assert rfc3339_nanos(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339_offset(NOW_MS - 503) == "2026-11-22T03:16:54+00:00"

"""The endpoint manifest: real manifests from the official Python SDK's discovery endpoint (run
in-process as the ASGI app users deploy), the defaults of §2.2, and every refusal."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from typing import Any

import pytest
import restate

from metadata.schema import HandlerType, InputRules, OnMaxAttempts, OutputRules, ProtocolType, ServiceType
from processor.protocol.manifest import (
    DISCOVERY_PATH,
    Endpoint,
    ManifestError,
    discovery_request_headers,
    manifest_version,
    parse_manifest,
)

ACCEPT = (
    "application/vnd.restate.endpointmanifest.v1+json, application/vnd.restate.endpointmanifest.v2+json, "
    "application/vnd.restate.endpointmanifest.v3+json, application/vnd.restate.endpointmanifest.v4+json"
)


def sdk_app() -> Any:
    greeter = restate.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: restate.Context, name: str) -> str:
        return f"Hello {name}"

    counter = restate.VirtualObject("Counter")

    @counter.handler()
    async def add(ctx: restate.ObjectContext, delta: int) -> int:
        return delta

    @counter.handler(kind="shared")
    async def get(ctx: restate.ObjectSharedContext) -> int:
        return 0

    @counter.handler()
    async def reset(ctx: restate.ObjectContext) -> None:
        return None

    signup = restate.Workflow("Signup")

    @signup.main()
    async def run(ctx: restate.WorkflowContext, email: str) -> str:
        return email

    @signup.handler()
    async def confirm(ctx: restate.WorkflowSharedContext, code: str) -> None:
        return None

    return restate.app([greeter, counter, signup])


def discover(app: Any, accept: str, http_version: str = "2") -> tuple[int, dict[str, str], bytes]:
    """One discovery request through the SDK's ASGI app, in-process."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": "GET",
        "scheme": "http",
        "path": DISCOVERY_PATH,
        "raw_path": DISCOVERY_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"accept", accept.encode())],
        "server": ("127.0.0.1", 9080),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    headers = {k.decode().lower(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture(scope="module")
def sdk_manifest() -> tuple[dict[str, str], bytes]:
    status, headers, body = discover(sdk_app(), discovery_request_headers()["accept"])
    assert status == 200
    return headers, body


def test_discovery_request_headers_are_the_real_servers():
    assert discovery_request_headers() == {"accept": ACCEPT}
    assert DISCOVERY_PATH == "/discover"


def test_the_python_sdk_manifest(sdk_manifest: tuple[dict[str, str], bytes]):
    headers, body = sdk_manifest
    assert manifest_version(headers["content-type"]) == 4
    endpoint = parse_manifest(body, sdk_version=headers["x-restate-server"])
    assert (endpoint.protocol_mode, endpoint.min_protocol_version, endpoint.max_protocol_version) == (
        ProtocolType.BIDI_STREAM,
        5,
        7,
    )
    services = {s.name: s for s in endpoint.services}
    assert {n: s.ty for n, s in services.items()} == {
        "Greeter": ServiceType.SERVICE,
        "Counter": ServiceType.VIRTUAL_OBJECT,
        "Signup": ServiceType.WORKFLOW,
    }
    types = {(s.name, h.name): h.ty for s in endpoint.services for h in s.handlers}
    assert types == {
        ("Greeter", "greet"): None,
        ("Counter", "add"): HandlerType.EXCLUSIVE,
        ("Counter", "get"): HandlerType.SHARED,
        ("Counter", "reset"): HandlerType.EXCLUSIVE,
        ("Signup", "run"): HandlerType.WORKFLOW,
        ("Signup", "confirm"): HandlerType.SHARED,
    }
    greet = services["Greeter"].handler("greet")
    assert greet is not None
    assert greet.input == InputRules(True, "application/json", True, {"type": "string"})
    assert greet.output == OutputRules("application/json", False, {"type": "string"})
    assert (greet.input.describe(), greet.output.describe()) == ("JSON string", "JSON string")
    get, reset = services["Counter"].handler("get"), services["Counter"].handler("reset")
    assert get is not None and reset is not None
    assert get.input == InputRules(accepts_empty=True, content_type=None) and get.input.describe() == "none"
    assert reset.output == OutputRules(None, False) and reset.output.describe() == "none"
    assert all(s.public and s.revision == 0 for s in endpoint.services)


def test_http11_discovery_gives_request_response():
    status, headers, body = discover(sdk_app(), discovery_request_headers()["accept"], http_version="1.1")
    assert status == 200
    assert parse_manifest(body).protocol_mode is ProtocolType.REQUEST_RESPONSE


def test_manifest_v5_eager_state_whitelist():
    lazy = restate.VirtualObject("Lazy", state_preload=["count"])

    @lazy.handler()
    async def touch(ctx: restate.ObjectContext) -> None:
        return None

    accept = discovery_request_headers()["accept"] + ", application/vnd.restate.endpointmanifest.v5+json"
    status, headers, body = discover(restate.app([lazy]), accept)
    assert status == 200 and manifest_version(headers["content-type"]) == 5
    (service,) = parse_manifest(body).services
    assert service.enable_lazy_state is True and service.eager_state_keys == ("count",)


# --- defaults and the input/output rules the ingress applies ---------------------------------------


def manifest(*handlers: dict[str, Any], ty: str = "SERVICE", **service: Any) -> dict[str, Any]:
    return {
        "protocolMode": "BIDI_STREAM",
        "minProtocolVersion": 5,
        "maxProtocolVersion": 7,
        "services": [{"name": "Svc", "ty": ty, "handlers": list(handlers), **service}],
    }


def only_handler(document: dict[str, Any]):
    (service,) = parse_manifest(document).services
    (handler,) = service.handlers
    return handler


def test_defaults_when_input_and_output_are_absent():
    handler = only_handler(manifest({"name": "h"}))
    assert handler.input == InputRules(accepts_empty=True, content_type="*/*")
    assert handler.output == OutputRules("application/json", False)
    assert handler.input.validate(None, b"") is None
    assert handler.input.validate("text/plain", b"anything") is None
    assert handler.output.content_type_for(empty=False) == "application/json"
    assert handler.output.content_type_for(empty=True) is None
    assert (handler.input.describe(), handler.output.describe()) == ("*/*", "application/json")


def test_json_input_validation_texts():
    rules = only_handler(
        manifest(
            {"name": "h", "input": {"required": False, "contentType": "application/json", "jsonSchema": {}}}
        )
    ).input
    assert rules.validate("application/json", b"1") is None
    assert rules.validate("application/json; charset=utf-8", b"1") is None
    assert rules.validate(None, b"") is None  # optional input: nothing at all is fine (§6.2)
    assert rules.validate("text/plain", b"1") == "Content-type 'text/plain' does not match 'application/json'"
    assert rules.validate(None, b"1") == "Empty content-type"
    assert rules.validate("application/json", b"") == "Empty body not allowed"
    required = only_handler(
        manifest({"name": "h", "input": {"required": True, "contentType": "application/*"}})
    )
    assert required.input.validate("application/octet-stream", b"") is None
    assert required.input.validate(None, b"") == "Empty content-type"
    assert required.input.describe() == "application/*"


def test_empty_input_accepts_only_nothing():
    rules = only_handler(manifest({"name": "h", "input": {}})).input
    assert rules.validate(None, b"") is None
    assert rules.validate("application/json", b"1") == (
        "Expected body and content-type to be empty, but wasn't with content-type 'Some(\"application/json\")'"
    )


def test_output_set_content_type_if_empty():
    output = only_handler(
        manifest({"name": "h", "output": {"contentType": "application/proto", "setContentTypeIfEmpty": True}})
    ).output
    assert output.content_type_for(empty=True) == output.content_type_for(empty=False) == "application/proto"
    assert output.describe() == "optional application/proto"


def test_every_v3_v4_setting_is_read():
    document = manifest(
        {
            "name": "run",
            "ty": "WORKFLOW",
            "workflowCompletionRetention": 5000,
            "journalRetention": 1,
            "inactivityTimeout": 2,
            "abortTimeout": 3,
            "enableLazyState": False,
            "ingressPrivate": True,
            "documentation": "doc",
            "metadata": {"a": "b"},
            "retryPolicyInitialInterval": 10,
            "retryPolicyMaxInterval": 20,
            "retryPolicyMaxAttempts": 0,
            "retryPolicyExponentiationFactor": 1.5,
            "retryPolicyOnMaxAttempts": "KILL",
        },
        ty="WORKFLOW",
        idempotencyRetention=7,
        journalRetention=8,
        inactivityTimeout=9,
        abortTimeout=10,
        enableLazyState=True,
        documentation="svc doc",
        metadata={"team": "x"},
        retryPolicyOnMaxAttempts="PAUSE",
        retryPolicyMaxAttempts=5,
    )
    (service,) = parse_manifest(document).services
    (handler,) = service.handlers
    assert (service.idempotency_retention_ms, service.journal_retention_ms) == (7, 8)
    assert (service.inactivity_timeout_ms, service.abort_timeout_ms, service.enable_lazy_state) == (
        9,
        10,
        True,
    )
    assert (service.documentation, service.metadata) == ("svc doc", {"team": "x"})
    assert (service.retry.on_max_attempts, service.retry.max_attempts) == (OnMaxAttempts.PAUSE, 5)
    assert handler.workflow_completion_retention_ms == 5000 and handler.public is False
    assert (handler.journal_retention_ms, handler.inactivity_timeout_ms, handler.abort_timeout_ms) == (
        1,
        2,
        3,
    )
    assert handler.retry.max_attempts == 1  # 0 attempts reads as 1, as in Restate
    assert (handler.retry.initial_interval_ms, handler.retry.max_interval_ms) == (10, 20)
    assert (handler.retry.exponentiation_factor, handler.retry.on_max_attempts) == (1.5, OnMaxAttempts.KILL)
    assert (handler.documentation, handler.metadata, handler.enable_lazy_state) == ("doc", {"a": "b"}, False)


def test_unknown_fields_are_ignored():
    document = manifest({"name": "h", "somethingNew": 1}, futureField=[1])
    document["lambdaCompression"] = "zstd"
    assert parse_manifest(json.dumps(document)).lambda_compression == "zstd"


def test_typescript_sdks_before_1_2_2_are_refused_like_restate_does():
    with pytest.raises(ManifestError, match=r"unsupported service protocol versions: \[5, 1\]"):
        parse_manifest(manifest({"name": "h"}), sdk_version="restate-sdk-typescript/1.2.1")
    assert isinstance(
        parse_manifest(manifest({"name": "h"}), sdk_version="restate-sdk-typescript/1.16.8"), Endpoint
    )


# --- refusals ------------------------------------------------------------------------------------------


def changed(path: str, value: Any) -> dict[str, Any]:
    """The one-handler manifest with one field replaced (``None`` deletes it)."""
    document = copy.deepcopy(manifest({"name": "h"}))
    target: Any = document
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return document


BAD_RESPONSE = "received a bad response from the SDK: "
UNDECODABLE = "received a bad response from the SDK that cannot be decoded: "


@pytest.mark.parametrize(
    ("document", "status", "message"),
    [
        (changed("protocolMode", None), 500, BAD_RESPONSE + "missing protocol mode"),
        (changed("protocolMode", "WEBSOCKET"), 500, UNDECODABLE + "manifest.protocolMode must be one of"),
        (
            changed("minProtocolVersion", 8),
            500,
            BAD_RESPONSE + "Expected min protocol version to be <= max protocol version. "
            "Received min protocol version '8', max protocol version '7'",
        ),
        (
            {**changed("minProtocolVersion", 1), "maxProtocolVersion": 4},
            500,
            "unsupported service protocol versions: [1, 4]. Supported versions by this runtime are [5, 7]. "
            "Please upgrade the SDK and try registering again.",
        ),
        (
            changed("maxProtocolVersion", 2**31),
            500,
            BAD_RESPONSE + "max protocol version must be in [1, 2147483647]",
        ),
        (
            changed("minProtocolVersion", 0),
            500,
            UNDECODABLE + "manifest.minProtocolVersion must be an integer",
        ),
        (changed("minProtocolVersion", None), 500, UNDECODABLE + "manifest.minProtocolVersion and"),
        (changed("minProtocolVersion", "5"), 500, UNDECODABLE),
        (changed("services", None), 500, UNDECODABLE + "manifest.services must be a list"),
        (changed("services.0.name", "1Svc"), 500, UNDECODABLE + "services[0].name '1Svc' does not match"),
        (changed("services.0.name", "Svc/x"), 500, "does not match"),
        (
            changed("services.0.ty", "ACTOR"),
            500,
            "services[0].ty must be one of SERVICE, VIRTUAL_OBJECT, WORKFLOW",
        ),
        (changed("services.0.ty", None), 500, "services[0].ty is required"),
        (changed("services.0.handlers", None), 500, "services[0].handlers must be a list"),
        (
            changed("services.0.handlers.0.name", "a.b"),
            500,
            "services[0].handlers[0].name 'a.b' does not match",
        ),
        (changed("services.0.handlers.0.name", None), 500, "services[0].handlers[0].name must be a string"),
        (
            changed("services.0.inactivityTimeout", -1),
            500,
            "services[0].inactivityTimeout must be an integer",
        ),
        (changed("services.0.abortTimeout", 1.5), 500, "services[0].abortTimeout must be an integer"),
        (changed("services.0.enableLazyState", "yes"), 500, "services[0].enableLazyState must be a boolean"),
        (changed("services.0.metadata", {"a": 1}), 500, "services[0].metadata values must be strings"),
        (changed("services.0.retryPolicyExponentiationFactor", "2"), 500, "must be a number"),
        (changed("services.0.retryPolicyOnMaxAttempts", "RETRY"), 500, "must be one of PAUSE, KILL"),
        (
            changed("services.0.handlers.0.input", []),
            500,
            "services[0].handlers[0].input must be a JSON object",
        ),
        (changed("lambdaCompression", "gzip"), 500, "manifest.lambdaCompression must be zstd"),
        (
            changed("services.0.name", "restateAdmin"),
            400,
            "cannot insert/modify service 'restateAdmin' as it contains a reserved name",
        ),
        (changed("services.0.name", "OpenAPI"), 400, "reserved name"),
        (
            changed("services.0.handlers.0.ty", "EXCLUSIVE"),
            400,
            "invalid combination of service type and handler type '(SERVICE, Some(Exclusive))'",
        ),
        (
            {**manifest({"name": "h", "ty": "WORKFLOW"}, ty="VIRTUAL_OBJECT")},
            400,
            "invalid combination of service type and handler type '(VIRTUAL_OBJECT, Some(Workflow))'",
        ),
        (
            manifest({"name": "h", "workflowCompletionRetention": 1}, ty="WORKFLOW"),
            400,
            "h sets the workflow_completion_retention, but it's not a WORKFLOW handler",
        ),
        (
            manifest({"name": "run", "ty": "WORKFLOW", "idempotencyRetention": 1}, ty="WORKFLOW"),
            400,
            "run sets the idempotency_retention, but it's a WORKFLOW handler",
        ),
        (
            manifest({"name": "h", "ingressPrivate": False}, ingressPrivate=True),
            400,
            "The service Svc is private, but the h is explicitly set as public.",
        ),
        (
            manifest({"name": "h", "input": {"contentType": "json"}}),
            400,
            "the handler 'h' input content-type is not valid: can't parse the content-type 'json': must contain one /",
        ),
        (
            manifest({"name": "h", "input": {"contentType": "*/json"}}),
            400,
            "the wildcard format */subType is not supported",
        ),
        (
            manifest({"name": "h", "output": {"contentType": "a/b\n"}}),
            400,
            "the handler 'h' output content-type is not valid",
        ),
        (manifest({"name": "h"}, {"name": "h"}), 400, "handler 'h' appears twice in service 'Svc'"),
    ],
)
def test_refusals(document: dict[str, Any], status: int, message: str):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps(document).encode())
    assert message in str(caught.value)
    assert caught.value.status == status


def test_duplicate_services_and_garbage_bodies():
    document = manifest({"name": "h"})
    document["services"].append(copy.deepcopy(document["services"][0]))
    with pytest.raises(ManifestError, match="service 'Svc' appears twice in the manifest"):
        parse_manifest(document)
    for body in (b"not json", b"[]", b'"text"', b"\xff\xfe"):
        with pytest.raises(ManifestError, match="cannot be decoded") as caught:
            parse_manifest(body)
        assert caught.value.status == 500


def test_reply_content_type_checks():
    assert manifest_version("application/vnd.restate.endpointmanifest.v2+json") == 2
    with pytest.raises(ManifestError, match="No content type header was specified") as caught:
        manifest_version(None)
    assert (caught.value.status, caught.value.restate_code) == (500, "META0013")
    for bad in ("application/json", "application/vnd.restate.endpointmanifest.v6+json", "text/plain"):
        with pytest.raises(ManifestError, match=re.escape(f"Bad content type header: '{bad}'")):
            manifest_version(bad)

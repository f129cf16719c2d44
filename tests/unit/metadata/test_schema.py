"""The schema registry: Restate's registration rules, lookups, storage by CAS, and the admin's JSON views."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from metadata import LocalMetadataStore
from metadata.records import decode, encode
from metadata.schema import (
    SCHEMA_KEY,
    Deployment,
    Handler,
    HandlerType,
    OnMaxAttempts,
    ProtocolType,
    RegisterOutcome,
    RetryPolicy,
    Schema,
    SchemaError,
    Service,
    ServiceType,
    deployment_detail_json,
    deployments_json,
    friendly_duration,
    handler_json,
    load_schema,
    register,
    register_deployment,
    registration_json,
    remove,
    remove_deployment,
    rfc3339_ms,
    service_detail_json,
    services_json,
)
from processor.protocol.manifest import parse_manifest

from .helpers import run_async

# The manifest observed from the Python SDK (restate-protocol.md §2.2), in full.
JSON_IN = {"required": False, "contentType": "application/json", "jsonSchema": {"type": "integer"}}
JSON_OUT = {
    "contentType": "application/json",
    "setContentTypeIfEmpty": False,
    "jsonSchema": {"type": "integer"},
}
MANIFEST = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 7,
    "services": [
        {
            "name": "Counter",
            "ty": "VIRTUAL_OBJECT",
            "handlers": [
                {"name": "add", "ty": "EXCLUSIVE", "input": JSON_IN, "output": JSON_OUT},
                {"name": "get", "ty": "SHARED", "input": {}, "output": JSON_OUT},
                {"name": "reset", "ty": "EXCLUSIVE", "input": {}, "output": {"setContentTypeIfEmpty": False}},
            ],
        },
        {
            "name": "Signup",
            "ty": "WORKFLOW",
            "handlers": [
                {"name": "run", "ty": "WORKFLOW", "input": JSON_IN, "output": JSON_OUT},
                {
                    "name": "confirm",
                    "ty": "SHARED",
                    "input": JSON_IN,
                    "output": {"setContentTypeIfEmpty": False},
                },
            ],
        },
        {
            "name": "Greeter",
            "ty": "SERVICE",
            "handlers": [{"name": "greet", "input": JSON_IN, "output": JSON_OUT}],
        },
    ],
}
T0 = 1_795_000_000_000


def deployment(
    id: str = "dp_1first",
    uri: str = "http://127.0.0.1:9080/",
    services: tuple[Service, ...] | None = None,
    created_at_ms: int = T0,
    **extra: Any,
) -> Deployment:
    endpoint = parse_manifest(MANIFEST)
    return Deployment(
        id=id,
        uri=uri,
        protocol_type=endpoint.protocol_mode,
        http_version="HTTP/2.0",
        created_at_ms=created_at_ms,
        min_protocol_version=endpoint.min_protocol_version,
        max_protocol_version=endpoint.max_protocol_version,
        sdk_version="restate-sdk-python/1.3.0",
        services=endpoint.services if services is None else services,
        **extra,
    )


def service(name: str, ty: ServiceType = ServiceType.SERVICE, *handlers: str) -> Service:
    return Service(name=name, ty=ty, handlers=tuple(Handler(name=h) for h in handlers or ("h",)))


def test_first_registration_creates_revision_1_of_each_service():
    registration = register(Schema(), deployment())
    assert registration.outcome is RegisterOutcome.CREATED and registration.created
    schema = registration.schema
    assert schema.active == {"Counter": "dp_1first", "Greeter": "dp_1first", "Signup": "dp_1first"}
    assert [s.revision for s in registration.deployment.services] == [1, 1, 1]
    assert schema.deployment_for_service("Counter") == registration.deployment
    counter = schema.service("Counter")
    assert counter is not None and counter.ty is ServiceType.VIRTUAL_OBJECT
    add = schema.handler("Counter", "add")
    assert add is not None and add.ty is HandlerType.EXCLUSIVE
    assert schema.handler("Counter", "nope") is None and schema.service("Nope") is None
    assert schema.deployment_for_service("Nope") is None
    assert [s.name for s in schema.services()] == ["Counter", "Greeter", "Signup"]


def test_same_uri_without_force_changes_nothing_even_if_the_endpoint_changed():
    first = register(Schema(), deployment())
    changed = deployment(id="dp_1second", uri="http://127.0.0.1:9080", services=(service("Other"),))
    again = register(first.schema, changed)
    assert again.outcome is RegisterOutcome.UNCHANGED and not again.created
    assert again.schema is first.schema
    assert again.deployment == first.deployment  # the existing id, for the 200 body


def test_same_uri_with_force_overwrites_in_place_and_drops_missing_services():
    first = register(Schema(), deployment())
    services = (service("Greeter", ServiceType.SERVICE, "greet", "wave"), service("Extra"))
    forced = register(
        first.schema, deployment(id="dp_1second", services=services, created_at_ms=T0 + 5), force=True
    )
    assert forced.outcome is RegisterOutcome.OVERWRITTEN
    assert forced.deployment.id == "dp_1first" and forced.deployment.created_at_ms == T0 + 5
    assert list(forced.schema.deployments) == ["dp_1first"]
    assert forced.schema.active == {"Extra": "dp_1first", "Greeter": "dp_1first"}
    assert forced.schema.service("Greeter").revision == 2  # type: ignore[union-attr]
    assert forced.schema.service("Extra").revision == 1  # type: ignore[union-attr]
    assert forced.schema.handler("Greeter", "wave") is not None and forced.schema.service("Counter") is None


def test_new_deployment_of_an_existing_service_raises_its_revision_and_takes_new_invocations():
    first = register(Schema(), deployment())
    v2 = deployment(
        id="dp_1second", uri="http://127.0.0.1:9081/", services=(service("Greeter", ServiceType.SERVICE),)
    )
    second = register(first.schema, v2)
    assert second.created
    schema = second.schema
    assert schema.service("Greeter").revision == 2  # type: ignore[union-attr]
    assert schema.deployment_for_service("Greeter").id == "dp_1second"  # type: ignore[union-attr]
    assert schema.deployment_for_service("Counter").id == "dp_1first"  # type: ignore[union-attr]
    # The old deployment still holds revision 1, for invocations pinned to it.
    assert schema.deployment("dp_1first").service("Greeter").revision == 1  # type: ignore[union-attr]
    # Removing the new deployment falls back to the old revision; removing both forgets the service.
    fallback = remove(schema, "dp_1second")
    assert fallback.deployment_for_service("Greeter").id == "dp_1first"  # type: ignore[union-attr]
    assert remove(fallback, "dp_1first") == Schema()
    with pytest.raises(SchemaError, match="not found in the schema registry: dp_1nope") as caught:
        remove(schema, "dp_1nope")
    assert caught.value.status == 404


def test_service_type_change_needs_breaking_or_force():
    first = register(Schema(), deployment())
    as_object = deployment(
        id="dp_1second", uri="http://h:2/", services=(service("Greeter", ServiceType.VIRTUAL_OBJECT),)
    )
    with pytest.raises(
        SchemaError, match="detected a new service revision for 'Greeter' changing the service type"
    ) as caught:
        register(first.schema, as_object)
    assert (caught.value.status, caught.value.restate_code) == (409, "META0006")
    assert (
        register(first.schema, as_object, breaking=True).schema.service("Greeter").ty
        is ServiceType.VIRTUAL_OBJECT
    )  # type: ignore[union-attr]
    assert register(first.schema, as_object, force=True).created


def test_reserved_names_are_refused():
    with pytest.raises(SchemaError, match="reserved name") as caught:
        register(Schema(), deployment(services=(service("Restate_internal"),)))
    assert (caught.value.status, caught.value.restate_code) == (400, "META0005")


def test_same_address_means_same_authority_and_path():
    schema = register(Schema(), deployment(uri="http://Host:9080")).schema
    for same in ("http://host:9080/", "https://host:9080/", " http://host:9080 "):
        assert schema.find_deployment(same) is not None, same
    for other in ("http://host:9081/", "http://host:9080/v2", "http://other:9080/"):
        assert schema.find_deployment(other) is None, other


def test_routing_headers_tell_deployments_apart_only_when_configured():
    schema = register(Schema(), deployment(additional_headers={"X-Version": "1"})).schema
    assert schema.find_deployment("http://127.0.0.1:9080/", {"x-version": "2"}) is not None
    assert schema.find_deployment("http://127.0.0.1:9080/", {"x-version": "2"}, ["x-version"]) is None
    assert schema.find_deployment("http://127.0.0.1:9080/", {"x-version": "1"}, ["X-Version"]) is not None
    v2 = deployment(id="dp_1v2", additional_headers={"x-version": "2"}, services=(service("Greeter"),))
    assert register(schema, v2, routing_headers=["x-version"]).created
    assert not register(schema, v2).created


def test_schema_record_round_trips():
    schema = register(Schema(), deployment(metadata={"team": "a"}, additional_headers={"k": "v"})).schema
    data = encode(schema)
    assert decode(Schema, data) == schema
    assert decode(Schema, encode(Schema())) == Schema()


def test_store_helpers_use_compare_and_set(tmp_path: Path):
    async def body() -> None:
        store = LocalMetadataStore.open(tmp_path / "metadata")
        try:
            assert await load_schema(store) == Schema()
            created = await register_deployment(store, deployment())
            assert created.created and await load_schema(store) == created.schema
            version = (await store.get(SCHEMA_KEY)).version  # type: ignore[union-attr]
            unchanged = await register_deployment(store, deployment(id="dp_1other"))
            assert unchanged.outcome is RegisterOutcome.UNCHANGED
            assert (await store.get(SCHEMA_KEY)).version == version  # type: ignore[union-attr]  # nothing written
            # Concurrent registrations of different deployments both land (CAS retries, no lost update).
            results = await asyncio.gather(
                *(
                    register_deployment(
                        store,
                        deployment(id=f"dp_1c{i}", uri=f"http://h:{9100 + i}/", services=(service(f"S{i}"),)),
                    )
                    for i in range(4)
                )
            )
            assert all(r.created for r in results)
            schema = await load_schema(store)
            assert sorted(schema.deployments) == ["dp_1c0", "dp_1c1", "dp_1c2", "dp_1c3", "dp_1first"]
            with pytest.raises(SchemaError, match="changing the service type"):
                await register_deployment(
                    store,
                    deployment(
                        id="dp_1bad", uri="http://x/", services=(service("S0", ServiceType.WORKFLOW),)
                    ),
                )
            assert await load_schema(store) == schema
            assert "dp_1c0" not in (await remove_deployment(store, "dp_1c0")).deployments
            assert "S0" not in (await load_schema(store)).active
        finally:
            await store.close()

    run_async(body())


# --- admin API views ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (500, "500ms"),
        (60_000, "1m"),
        (86_400_000, "1d"),
        (129_842_000, "1d 12h 4m 2s"),
        (90_001, "1m 30s 1ms"),
    ],
)
def test_friendly_durations(ms: int, text: str):
    assert friendly_duration(ms) == text


def test_timestamps():
    assert rfc3339_ms(0) == "1970-01-01T00:00:00Z"
    assert rfc3339_ms(1_764_000_000_123) == "2025-11-24T16:00:00.123Z"


def counter_json(deployment_id: str = "dp_1first") -> dict[str, Any]:
    json_integer = {"type": "integer"}
    return {
        "name": "Counter",
        "ty": "VirtualObject",
        "handlers": [
            {
                "name": "add",
                "ty": "Exclusive",
                "public": True,
                "input_description": "JSON integer",
                "output_description": "JSON integer",
                "input_json_schema": json_integer,
                "output_json_schema": json_integer,
                "retry_policy": {"max_attempts": None},
            },
            {
                "name": "get",
                "ty": "Shared",
                "public": True,
                "input_description": "none",
                "output_description": "JSON integer",
                "output_json_schema": json_integer,
                "retry_policy": {"max_attempts": None},
            },
            {
                "name": "reset",
                "ty": "Exclusive",
                "public": True,
                "input_description": "none",
                "output_description": "none",
                "retry_policy": {"max_attempts": None},
            },
        ],
        "deployment_id": deployment_id,
        "revision": 1,
        "public": True,
        "idempotency_retention": "1d",
        "journal_retention": "1d",
        "inactivity_timeout": "1m",
        "abort_timeout": "10m",
        "enable_lazy_state": False,
        "retry_policy": {
            "initial_interval": "500ms",
            "exponentiation_factor": 2.0,
            "max_attempts": 70,
            "max_interval": "1m",
            "on_max_attempts": "Pause",
        },
    }


def test_service_metadata_json():
    schema = register(Schema(), deployment()).schema
    assert service_detail_json(schema, "Counter") == counter_json()
    assert service_detail_json(schema, "Nope") is None
    signup = service_detail_json(schema, "Signup")
    assert (
        signup is not None and signup["ty"] == "Workflow" and signup["workflow_completion_retention"] == "1d"
    )
    assert [h.get("ty") for h in signup["handlers"]] == ["Workflow", "Shared"]
    greeter = service_detail_json(schema, "Greeter")
    assert (
        greeter is not None
        and "ty" not in greeter["handlers"][0]
        and "workflow_completion_retention" not in greeter
    )
    assert [s["name"] for s in services_json(schema)["services"]] == ["Counter", "Greeter", "Signup"]


def test_service_and_handler_overrides_show_up():
    custom = Service(
        name="Tuned",
        ty=ServiceType.WORKFLOW,
        public=False,
        documentation="doc",
        metadata={"a": "b"},
        idempotency_retention_ms=3_600_000,
        journal_retention_ms=0,
        inactivity_timeout_ms=30_000,
        enable_lazy_state=True,
        handlers=(
            Handler(name="run", ty=HandlerType.WORKFLOW, workflow_completion_retention_ms=7 * 86_400_000),
            Handler(
                name="peek",
                ty=HandlerType.SHARED,
                public=True,
                abort_timeout_ms=1500,
                inactivity_timeout_ms=5,
            ),
        ),
        retry=RetryPolicy(max_attempts=3, on_max_attempts=OnMaxAttempts.KILL),
    )
    rr = msgspec.structs.replace(deployment(services=(custom,)), protocol_type=ProtocolType.REQUEST_RESPONSE)
    registration = register(Schema(), rr)
    out = service_detail_json(registration.schema, "Tuned")
    assert out is not None
    assert (out["public"], out["documentation"], out["metadata"]) == (False, "doc", {"a": "b"})
    assert (out["idempotency_retention"], out["journal_retention"]) == ("1h", "0s")
    assert out["workflow_completion_retention"] == "7d"
    assert out["inactivity_timeout"] == "0s"  # request/response deployments have no inactivity timeout
    assert out["enable_lazy_state"] is True
    assert out["retry_policy"]["max_attempts"] == 3 and out["retry_policy"]["on_max_attempts"] == "Kill"
    peek = out["handlers"][1]
    assert peek["public"] is True and peek["abort_timeout"] == "1s 500ms" and "inactivity_timeout" not in peek
    assert out["handlers"][0]["public"] is False
    bidi = handler_json(custom, custom.handlers[1], deployment())
    assert bidi["inactivity_timeout"] == "5ms"


def test_deployment_views():
    first = register(Schema(), deployment(metadata={"team": "a"}))
    second = register(
        first.schema,
        deployment(
            id="dp_1second",
            uri="http://127.0.0.1:9081/",
            created_at_ms=T0 + 1,
            services=(service("Greeter", ServiceType.SERVICE, "greet"),),
        ),
    )
    listed = deployments_json(second.schema)["deployments"]
    assert [d["id"] for d in listed] == ["dp_1first", "dp_1second"]
    assert listed[0] == {
        "id": "dp_1first",
        "uri": "http://127.0.0.1:9080/",
        "protocol_type": "BidiStream",
        "http_version": "HTTP/2.0",
        "metadata": {"team": "a"},
        "created_at": rfc3339_ms(T0),
        "min_protocol_version": 5,
        "max_protocol_version": 7,
        "sdk_version": "restate-sdk-python/1.3.0",
        "services": [
            {"name": "Counter", "revision": 1},
            {"name": "Signup", "revision": 1},
            {"name": "Greeter", "revision": 1},
        ],
    }
    assert listed[1]["services"] == [{"name": "Greeter", "revision": 2}]
    detail = deployment_detail_json(second.schema, "dp_1first")
    assert detail is not None and detail["services"][0] == counter_json()
    assert {k: v for k, v in detail.items() if k != "services"} == {
        k: v for k, v in listed[0].items() if k != "services"
    }
    assert deployment_detail_json(second.schema, "dp_1nope") is None
    body = registration_json(first)
    assert body["id"] == "dp_1first" and body["services"][0] == counter_json()
    assert (body["min_protocol_version"], body["max_protocol_version"], body["sdk_version"]) == (
        5,
        7,
        "restate-sdk-python/1.3.0",
    )

"""The API state and its validation, with no server: Toxiproxy's defaults, messages and codes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chaos.proxy.core import ApiError, ApiState, Proxy


def refused(call, *args: object) -> tuple[int, str]:
    with pytest.raises(ApiError) as info:
        call(*args)
    return info.value.status, info.value.message


@pytest.fixture
def state() -> ApiState:
    s = ApiState()
    s.put(replace(s.new_proxy({"name": "db", "upstream": "127.0.0.1:5432"}), listen="127.0.0.1:40000"))
    return s


def test_new_proxy_defaults_and_listen_narrowing():
    s = ApiState()
    proxy = s.new_proxy({"name": "p", "upstream": "localhost:80"})
    assert proxy == Proxy(name="p", listen="127.0.0.1:0", upstream="localhost:80", enabled=True)
    assert proxy.to_json() == {
        "name": "p",
        "listen": "127.0.0.1:0",
        "upstream": "localhost:80",
        "enabled": True,
        "toxics": [],
    }
    for listen in ("localhost:7000", "0.0.0.0:7000", "[::]:7000", ":7000", "127.0.0.1:7000"):
        assert s.new_proxy({"name": "p", "upstream": "h:1", "listen": listen}).listen == "127.0.0.1:7000"
    assert s.new_proxy({"name": "p", "upstream": "h:1", "enabled": False}).enabled is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"upstream": "h:1"}, "missing required field: name"),
        ({"name": "p"}, "missing required field: upstream"),
        ({"name": "p", "upstream": "nohost"}, "bad request body: upstream must be host:port, got 'nohost'"),
        ({"name": "p", "upstream": "h:1", "enabled": "yes"}, "bad request body: enabled must be a boolean"),
        ({"name": 5, "upstream": "h:1"}, "bad request body: name must be a string"),
        ([], "bad request body: expected a JSON object"),
    ],
)
def test_new_proxy_refuses_bad_bodies_with_400(body, message):
    assert refused(ApiState().new_proxy, body) == (400, message)


def test_listen_outside_loopback_is_refused():
    status, message = refused(ApiState().new_proxy, {"name": "p", "upstream": "h:1", "listen": "10.1.2.3:80"})
    assert status == 400 and "127.0.0.1 only" in message


def test_existing_and_missing_proxies(state):
    assert refused(state.new_proxy, {"name": "db", "upstream": "h:1"}) == (409, "proxy already exists")
    assert refused(state.get, "nope") == (404, "proxy not found")
    assert refused(state.remove, "nope") == (404, "proxy not found")
    assert refused(state.add_toxic, "nope", {"type": "latency"}) == (404, "proxy not found")
    assert state.remove("db").name == "db"
    assert list(state) == []


def test_updated_proxy_keeps_unspecified_fields(state):
    assert state.updated_proxy("db", {"enabled": False}) == replace(state.get("db"), enabled=False)
    moved = state.updated_proxy("db", {"listen": "localhost:0", "upstream": "127.0.0.1:1"})
    assert (moved.listen, moved.upstream, moved.enabled) == ("127.0.0.1:0", "127.0.0.1:1", True)
    assert state.get("db").listen == "127.0.0.1:40000"  # nothing stored until put


def test_toxic_defaults_and_json_shape(state):
    toxic = state.add_toxic("db", {"type": "latency", "attributes": {"latency": 100}})
    assert toxic.to_json() == {
        "attributes": {"latency": 100, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
    }
    state.add_toxic("db", {"type": "timeout", "stream": "UPSTREAM", "toxicity": 0.5})
    names = [t["name"] for t in state.get("db").to_json()["toxics"]]
    assert names == ["timeout_upstream", "latency_downstream"]  # upstream chain first, as Toxiproxy
    assert state.get_toxic("db", "timeout_upstream").toxicity == 0.5


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"type": "latency", "stream": "sideways"},
            (400, "stream was invalid, can be either upstream or downstream"),
        ),
        ({"type": "fire"}, (400, "invalid toxic type")),
        ({}, (400, "invalid toxic type")),
        ({"type": "latency", "name": "taken"}, (409, "toxic already exists")),
        (
            {"type": "latency", "attributes": {"latency": "slow"}},
            (400, "bad request body: attribute latency of latency must be an integer"),
        ),
        (
            {"type": "latency", "attributes": {"latency": 1.5}},
            (400, "bad request body: attribute latency of latency must be an integer"),
        ),
        (
            {"type": "bandwidth", "attributes": {"rate": -1}},
            (400, "bad request body: attribute rate of bandwidth must not be negative"),
        ),
        (
            {"type": "slicer", "attributes": {"delay": 10}},
            (400, "bad request body: attribute average_size of slicer must be at least 1"),
        ),
        ({"type": "latency", "toxicity": 2}, (400, "bad request body: toxicity must be between 0 and 1")),
        ({"type": "latency", "toxicity": True}, (400, "bad request body: toxicity must be a number")),
        ({"type": "latency", "attributes": [1]}, (400, "bad request body: attributes must be an object")),
        ("latency", (400, "bad request body: expected a JSON object")),
    ],
)
def test_bad_toxics_are_refused_with_toxiproxys_codes(state, body, expected):
    state.add_toxic("db", {"type": "limit_data", "name": "taken"})
    assert refused(state.add_toxic, "db", body) == expected


def test_unknown_attributes_are_ignored_as_by_go(state):
    toxic = state.add_toxic("db", {"type": "timeout", "attributes": {"timeout": 5, "colour": "red"}})
    assert dict(toxic.attributes) == {"timeout": 5}


def test_update_toxic_merges_attributes_and_keeps_identity(state):
    state.add_toxic("db", {"type": "latency", "toxicity": 0.3, "attributes": {"latency": 100, "jitter": 10}})
    updated = state.update_toxic(
        "db", "latency_downstream", {"attributes": {"latency": 300}, "type": "timeout"}
    )
    assert (updated.type, dict(updated.attributes), updated.toxicity) == (
        "latency",
        {"latency": 300, "jitter": 10},
        0.3,
    )
    assert state.update_toxic("db", "latency_downstream", {"toxicity": 1}).toxicity == 1.0
    assert refused(state.update_toxic, "db", "nope", {}) == (404, "toxic not found")
    assert refused(state.update_toxic, "db", "latency_downstream", {"attributes": {"jitter": -2}})[0] == 400


def test_remove_and_clear_toxics(state):
    state.add_toxic("db", {"type": "latency"})
    state.add_toxic("db", {"type": "slow_close", "stream": "upstream"})
    assert state.remove_toxic("db", "latency_downstream").type == "latency"
    assert refused(state.remove_toxic, "db", "latency_downstream") == (404, "toxic not found")
    assert [t.name for t in state.clear_toxics("db")] == ["slow_close_upstream"]
    assert state.get("db").toxics == ()


def test_populate_plans_keep_or_replace_and_validates_everything_first(state):
    plan = state.populate(
        [
            {"name": "db", "upstream": "127.0.0.1:5432", "listen": "127.0.0.1:40000"},
            {"name": "cache", "upstream": "127.0.0.1:6379"},
        ]
    )
    assert [(p.name, keep) for p, keep in plan] == [("db", True), ("cache", False)]
    plan = state.populate(
        {"proxies": [{"name": "db", "upstream": "127.0.0.1:5433", "listen": "127.0.0.1:40000"}]}
    )
    assert [(p.upstream, keep) for p, keep in plan] == [("127.0.0.1:5433", False)]
    assert refused(state.populate, [{"name": "a", "upstream": "h:1"}, {"upstream": "h:2"}]) == (
        400,
        "missing required field: name at proxy 2",
    )
    assert refused(state.populate, {"name": "a"})[0] == 400

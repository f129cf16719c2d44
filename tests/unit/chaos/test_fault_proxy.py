"""The fault proxy driven exactly as a chaos test would: the stock toxiproxy-python client,
real sockets on loopback, an echo server upstream.

Elapsed times are measured to check that a delay was added, with generous bounds; nothing
here sleeps to synchronise (every blocking read has a socket deadline).
"""

from __future__ import annotations

import json
import random
import socket
import time

import pytest
import requests
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.proxy import VERSION

from .helpers import (
    DEADLINE_S,
    address,
    connected,
    echo_all,
    read_to_eof,
    recv_exactly,
    refuses_connections,
    round_trip,
)

FAST_S = 0.18  # a loopback round trip with no toxic is ~1 ms; this leaves room for a busy CI box


def api(fault_proxy) -> str:
    return f"http://127.0.0.1:{fault_proxy.port}"


def test_the_client_sees_a_toxiproxy(toxiproxy, echo):
    assert toxiproxy.running() is True
    assert json.loads(toxiproxy.version()) == {"version": VERSION}
    proxy = toxiproxy.create(upstream=echo, name="echo")
    host, port = address(proxy.listen)
    assert (host, proxy.upstream, proxy.enabled) == ("127.0.0.1", echo, True)
    assert port != 0
    assert set(toxiproxy.proxies()) == {"echo"}
    assert toxiproxy.get_proxy("echo").listen == proxy.listen
    with pytest.raises(ProxyExists):
        toxiproxy.create(upstream=echo, name="echo")
    wildcard = toxiproxy.create(upstream=echo, name="wildcard", listen="0.0.0.0:0")
    assert address(wildcard.listen)[0] == "127.0.0.1"  # never 0.0.0.0
    with pytest.raises(InvalidToxic):  # the client maps every 400 to InvalidToxic
        toxiproxy.create(upstream=echo, name="remote", listen="10.1.2.3:0")
    toxiproxy.destroy_all()
    assert toxiproxy.proxies() == {}
    assert refuses_connections(proxy.listen)


def test_http_errors_carry_toxiproxys_codes_and_bodies(toxiproxy, fault_proxy, echo):
    base = api(fault_proxy)
    proxy = toxiproxy.create(upstream=echo, name="echo")

    r = requests.post(f"{base}/proxies", json={"name": "echo", "upstream": echo}, timeout=DEADLINE_S)
    assert (r.status_code, r.json()) == (409, {"error": "proxy already exists", "status": 409})
    r = requests.get(f"{base}/proxies/nope", timeout=DEADLINE_S)
    assert (r.status_code, r.json()) == (404, {"error": "proxy not found", "status": 404})
    r = requests.post(f"{base}/proxies/echo/toxics", json={"type": "fire"}, timeout=DEADLINE_S)
    assert (r.status_code, r.json()) == (400, {"error": "invalid toxic type", "status": 400})
    r = requests.post(f"{base}/proxies/echo/toxics", data=b"{not json", timeout=DEADLINE_S)
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body")
    r = requests.get(f"{base}/version", headers={"User-Agent": "Mozilla/5.0"}, timeout=DEADLINE_S)
    assert r.status_code == 403  # as Toxiproxy: no browser may drive the proxy

    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="fire")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", stream="sideways")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", attributes={"latency": "slow"})
    proxy.add_toxic(type="latency", attributes={"latency": 1})
    with pytest.raises(ProxyExists):  # 409: toxic already exists
        proxy.add_toxic(type="latency", attributes={"latency": 1})
    with pytest.raises(NotFound):
        proxy.destroy_toxic("nope")
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/nope/toxics")
    assert set(proxy.toxics()) == {"latency_downstream"}
    assert proxy.get_toxic("latency_downstream").attributes == {"latency": 1, "jitter": 0}


def test_pass_through_is_byte_exact_for_a_megabyte(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    payload = random.Random(1).randbytes(1 << 20)
    data, _, _ = echo_all(proxy.listen, payload)  # also checks the half-close comes back as EOF
    assert data == payload


def test_latency_adds_delay_each_way_and_applies_to_open_connections(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    with connected(proxy.listen) as sock:
        assert round_trip(sock, b"warm") < FAST_S
        proxy.add_toxic(type="latency", attributes={"latency": 200})
        assert round_trip(sock, b"down") >= 0.19
        proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 200})
        assert round_trip(sock, b"both") >= 0.39
        proxy.destroy_toxic("latency_downstream")
        proxy.destroy_toxic("latency_upstream")
        assert round_trip(sock, b"gone") < FAST_S
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 200})
    with connected(proxy.listen) as sock:
        assert round_trip(sock, b"new") >= 0.19


def test_updating_a_toxic_changes_open_connections(toxiproxy, fault_proxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="latency", attributes={"latency": 100})
    url = f"{api(fault_proxy)}/proxies/echo/toxics/latency_downstream"
    with connected(proxy.listen) as sock:
        assert round_trip(sock, b"a") >= 0.09
        r = requests.post(url, json={"attributes": {"latency": 300}}, timeout=DEADLINE_S)
        assert (r.status_code, r.json()["attributes"]) == (200, {"latency": 300, "jitter": 0})
        assert round_trip(sock, b"b") >= 0.29
    assert requests.get(url, timeout=DEADLINE_S).json()["attributes"]["latency"] == 300


def test_bandwidth_caps_throughput(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="bandwidth", attributes={"rate": 200})  # KB/s, downstream
    payload = random.Random(2).randbytes(100_000)
    data, _, elapsed = echo_all(proxy.listen, payload)
    assert data == payload
    assert 0.4 <= elapsed < 3.0  # 0.5 s at the rate


def test_timeout_stops_data_then_closes(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="timeout", attributes={"timeout": 300})
    with connected(proxy.listen) as sock:
        start = time.monotonic()
        sock.sendall(b"hello")
        assert sock.recv(100) == b""  # no echo, only the close
        assert time.monotonic() - start >= 0.29


def test_timeout_zero_holds_data_until_removed_which_closes(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    with connected(proxy.listen, timeout=0.3) as sock:
        sock.sendall(b"hello")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        sock.settimeout(DEADLINE_S)
        proxy.destroy_toxic("timeout_downstream")
        assert sock.recv(100) == b""  # Toxiproxy closes a timeout toxic's links on removal
    with connected(proxy.listen) as sock:
        assert round_trip(sock, b"x") < FAST_S


def test_reset_peer_resets_the_connection(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 100})
    with connected(proxy.listen) as sock:
        start = time.monotonic()
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
        assert time.monotonic() - start >= 0.09


def test_limit_data_closes_after_n_bytes(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="limit_data", attributes={"bytes": 100})
    payload = random.Random(3).randbytes(1000)
    with connected(proxy.listen) as sock:
        sock.sendall(payload)
        data, _ = read_to_eof(sock)
    assert data == payload[:100]


def test_slicer_delivers_the_same_bytes_in_more_smaller_reads(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    payload = random.Random(4).randbytes(4096)
    plain, plain_sizes, _ = echo_all(proxy.listen, payload)
    proxy.add_toxic(type="slicer", attributes={"average_size": 64, "size_variation": 16, "delay": 2000})
    sliced, sizes, _ = echo_all(proxy.listen, payload)
    assert plain == sliced == payload
    assert len(sizes) >= 16 and len(sizes) > 2 * len(plain_sizes)
    assert sorted(sizes)[len(sizes) // 2] <= 256


def test_slow_close_delays_the_close_but_not_the_data(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="slow_close", attributes={"delay": 300})
    with connected(proxy.listen) as sock:
        assert round_trip(sock, b"data") < FAST_S
        start = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
        assert time.monotonic() - start >= 0.29


def test_disable_drops_and_refuses_and_enable_restores(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    with connected(proxy.listen) as sock:
        round_trip(sock, b"up")
        proxy.disable()
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass  # dropped either way: a FIN, or an RST if bytes were still in flight
    assert refuses_connections(proxy.listen)
    assert toxiproxy.get_proxy("echo").enabled is False
    proxy.enable()
    with connected(proxy.listen) as sock:
        assert round_trip(sock, b"back") < FAST_S
    with proxy.down():
        assert refuses_connections(proxy.listen)
    with connected(proxy.listen) as sock:
        round_trip(sock, b"again")


def test_toxicity_zero_never_applies(toxiproxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    proxy.add_toxic(type="latency", toxicity=0.0, attributes={"latency": 1000})
    for _ in range(10):
        with connected(proxy.listen) as sock:
            assert round_trip(sock, b"x") < FAST_S


def test_reset_enables_every_proxy_and_removes_every_toxic(toxiproxy, echo):
    slow = toxiproxy.create(upstream=echo, name="slow")
    off = toxiproxy.create(upstream=echo, name="off")
    slow.add_toxic(type="latency", attributes={"latency": 2000})
    off.disable()
    with connected(slow.listen) as held:
        start = time.monotonic()
        held.sendall(b"held")
        assert toxiproxy.reset() is True
        assert recv_exactly(held, 4) == b"held"
        assert time.monotonic() - start < 1.0  # released by the reset, not after 2 s
    assert slow.toxics() == {}
    assert toxiproxy.get_proxy("off").enabled is True
    with connected(off.listen) as sock:
        round_trip(sock, b"on")


def test_populate_creates_then_keeps_matching_proxies(toxiproxy, fault_proxy, echo):
    url = f"{api(fault_proxy)}/populate"
    r = requests.post(
        url,
        json=[{"name": "p1", "upstream": echo}, {"name": "p2", "upstream": echo, "enabled": False}],
        timeout=DEADLINE_S,
    )
    assert r.status_code == 201
    p1, p2 = r.json()["proxies"]
    assert (p1["name"], p1["enabled"], p2["enabled"]) == ("p1", True, False)
    with connected(p1["listen"]) as sock:
        round_trip(sock, b"populated")
    toxiproxy.get_proxy("p1").add_toxic(type="latency", attributes={"latency": 1})
    same = {"name": "p1", "upstream": echo, "listen": p1["listen"]}
    r = requests.post(url, json={"proxies": [same]}, timeout=DEADLINE_S)
    assert r.status_code == 201 and [t["name"] for t in r.json()["proxies"][0]["toxics"]] == [
        "latency_downstream"
    ]
    r = requests.post(url, json=[same, {"upstream": echo}], timeout=DEADLINE_S)
    assert r.status_code == 400 and r.json()["error"] == "missing required field: name at proxy 2"


def test_unreachable_upstream_closes_the_client(toxiproxy):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    proxy = toxiproxy.create(upstream=f"127.0.0.1:{dead_port}", name="dead")
    with connected(proxy.listen) as sock:
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass


def test_updating_the_upstream_restarts_the_proxy_on_the_same_port(toxiproxy, fault_proxy, echo):
    proxy = toxiproxy.create(upstream=echo, name="echo")
    url = f"{api(fault_proxy)}/proxies/echo"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    with connected(proxy.listen) as sock:
        round_trip(sock, b"before")
        r = requests.patch(url, json={"upstream": dead}, timeout=DEADLINE_S)
        assert (r.status_code, r.json()["upstream"], r.json()["listen"]) == (200, dead, proxy.listen)
        try:
            assert sock.recv(10) == b""  # a new upstream drops open connections, as Toxiproxy
        except ConnectionResetError:
            pass
    r = requests.post(url, json={"upstream": echo}, timeout=DEADLINE_S)
    assert r.status_code == 200
    with connected(proxy.listen) as sock:
        round_trip(sock, b"after")
    assert proxy.destroy() is True
    assert refuses_connections(proxy.listen)

"""The API's state as plain data: proxies, their toxics, and the validation of every request.

Each method either answers from the state, returns the value a request asks for without
storing it (`new_proxy`, `updated_proxy`, `populate`: the shell must bind a port before the
result is true), or changes the state and returns what changed (toxic methods, `put`,
`remove`). Refusals raise `ApiError` with Toxiproxy's message and status code.

Listen addresses: proxies always bind 127.0.0.1. A `listen` whose host is empty, `localhost`,
`127.0.0.1` or a wildcard (`0.0.0.0`, `::`) is narrowed to 127.0.0.1; any other host is a 400.
`listen` reads `127.0.0.1:0` until the proxy has been bound once, then the real port, which
later re-enables bind again (as Toxiproxy).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from ._errors import (
    bad_request_body,
    missing_field,
    proxy_already_exists,
    proxy_not_found,
    toxic_not_found,
)
from ._toxics import Stream, Toxic, parse_toxic, update_toxic

LISTEN_HOST = "127.0.0.1"
T = TypeVar("T", str, bool)

_LOOPBACK_OR_WILDCARD = frozenset({"", "localhost", "127.0.0.1", "0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class Proxy:
    name: str
    listen: str
    """Always `127.0.0.1:<port>`."""
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...] = ()
    """In the order they were added; each stream's chain keeps this order."""

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def upstream_address(self) -> tuple[str, int]:
        return parse_host_port(self.upstream, "upstream")

    def toxic(self, name: str) -> Toxic | None:
        return next((t for t in self.toxics if t.name == name), None)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": toxics_json(self.toxics),
        }


def toxics_json(toxics: tuple[Toxic, ...]) -> list[dict[str, object]]:
    # Toxiproxy lists the upstream chain, then the downstream one.
    return [t.to_json() for stream in Stream for t in toxics if t.stream is stream]


def parse_host_port(value: str, field: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise bad_request_body(f"{field} must be host:port, got {value!r}")
    return host.removeprefix("[").removesuffix("]"), int(port_text)


def normalize_listen(value: str) -> str:
    """`listen` as stored and reported: `127.0.0.1:<port>` (see the module docstring)."""
    if value == "":
        return f"{LISTEN_HOST}:0"
    host, port = parse_host_port(value, "listen")
    if host not in _LOOPBACK_OR_WILDCARD:
        raise bad_request_body(f"listen host {host!r} is not supported: proxies listen on {LISTEN_HOST} only")
    return f"{LISTEN_HOST}:{port}"


class ApiState:
    def __init__(self) -> None:
        self._proxies: dict[str, Proxy] = {}

    def __iter__(self) -> Iterator[Proxy]:
        return iter(list(self._proxies.values()))

    def get(self, name: str) -> Proxy:
        try:
            return self._proxies[name]
        except KeyError:
            raise proxy_not_found() from None

    def new_proxy(self, body: object) -> Proxy:
        """The proxy a `POST /proxies` asks for (not stored: bind it, then `put` it)."""
        proxy = _parse_proxy(body, index=None)
        if proxy.name in self._proxies:
            raise proxy_already_exists()
        return proxy

    def updated_proxy(self, name: str, body: object) -> Proxy:
        """The proxy a `POST /proxies/{name}` asks for; unspecified fields keep their values."""
        current = self.get(name)
        if not isinstance(body, dict):
            raise bad_request_body("expected a JSON object")
        listen = _field(body, "listen", str, current.listen)
        upstream = _field(body, "upstream", str, current.upstream)
        enabled = _field(body, "enabled", bool, current.enabled)
        if not upstream:
            raise missing_field("upstream")
        parse_host_port(upstream, "upstream")
        return replace(current, listen=normalize_listen(listen), upstream=upstream, enabled=enabled)

    def populate(self, body: object) -> list[tuple[Proxy, bool]]:
        """`POST /populate`: for each entry, the proxy wanted and whether the existing one with
        that name already matches it (same listen and upstream: keep it, toxics and all).

        Everything is validated before anything changes. Toxiproxy takes a JSON array; an
        object `{"proxies": [...]}` (its response shape, which some clients send) works too.
        """
        if isinstance(body, dict) and "proxies" in body:
            body = body["proxies"]
        if not isinstance(body, list):
            raise bad_request_body("expected a JSON array of proxies")
        wanted = [_parse_proxy(entry, index=i + 1) for i, entry in enumerate(body)]
        plan: list[tuple[Proxy, bool]] = []
        for proxy in wanted:
            existing = self._proxies.get(proxy.name)
            if existing is not None and not differs(existing, proxy):
                plan.append((existing, True))
            else:
                plan.append((proxy, False))
        return plan

    def put(self, proxy: Proxy) -> None:
        """Store `proxy`, replacing any proxy of that name (toxics travel in the value)."""
        self._proxies[proxy.name] = proxy

    def remove(self, name: str) -> Proxy:
        proxy = self.get(name)
        del self._proxies[name]
        return proxy

    def get_toxic(self, proxy_name: str, toxic_name: str) -> Toxic:
        toxic = self.get(proxy_name).toxic(toxic_name)
        if toxic is None:
            raise toxic_not_found()
        return toxic

    def add_toxic(self, proxy_name: str, body: object) -> Toxic:
        proxy = self.get(proxy_name)
        toxic = parse_toxic(body, lambda name: proxy.toxic(name) is not None)
        self.put(replace(proxy, toxics=(*proxy.toxics, toxic)))
        return toxic

    def update_toxic(self, proxy_name: str, toxic_name: str, body: object) -> Toxic:
        proxy = self.get(proxy_name)
        toxic = update_toxic(self.get_toxic(proxy_name, toxic_name), body)
        self.put(replace(proxy, toxics=tuple(toxic if t.name == toxic_name else t for t in proxy.toxics)))
        return toxic

    def remove_toxic(self, proxy_name: str, toxic_name: str) -> Toxic:
        proxy = self.get(proxy_name)
        toxic = self.get_toxic(proxy_name, toxic_name)
        self.put(replace(proxy, toxics=tuple(t for t in proxy.toxics if t.name != toxic_name)))
        return toxic

    def clear_toxics(self, proxy_name: str) -> tuple[Toxic, ...]:
        proxy = self.get(proxy_name)
        self.put(replace(proxy, toxics=()))
        return proxy.toxics


def differs(existing: Proxy, wanted: Proxy) -> bool:
    return existing.listen != wanted.listen or existing.upstream != wanted.upstream


def _parse_proxy(body: object, index: int | None) -> Proxy:
    at = "" if index is None else f" at proxy {index}"
    if not isinstance(body, dict):
        raise bad_request_body(f"expected a JSON object{at}")
    name = _field(body, "name", str, "")
    upstream = _field(body, "upstream", str, "")
    if not name:
        raise missing_field(f"name{at}")
    if not upstream:
        raise missing_field(f"upstream{at}")
    parse_host_port(upstream, "upstream")
    listen = normalize_listen(_field(body, "listen", str, ""))
    enabled = _field(body, "enabled", bool, True)
    return Proxy(name=name, listen=listen, upstream=upstream, enabled=enabled)


def _field(body: dict[str, object], key: str, kind: type[T], default: T) -> T:
    value = body.get(key)
    if value is None:
        return default
    if type(value) is not kind:
        raise bad_request_body(f"{key} must be a {'boolean' if kind is bool else 'string'}")
    return value

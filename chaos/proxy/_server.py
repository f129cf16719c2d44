"""The HTTP API (aiohttp) and the proxies' listeners: the asyncio shell around `ApiState`.

Routes, bodies, status codes and error messages follow Toxiproxy 2.12's `api.go`, which is
what `toxiproxy-python` (and the other clients) were written against. Every request that
changes state runs under one lock, because binding a port is the only await between checking
the state and committing to it.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace

from aiohttp import web

from ._relay import Relay
from .core import (
    LISTEN_HOST,
    ApiError,
    ApiState,
    Input,
    Proxy,
    Rng,
    Toxic,
    ToxicAdded,
    ToxicRemoved,
    ToxicUpdated,
)

VERSION = "2.12.0"
"""The Toxiproxy release whose API this server mirrors (clients may gate features on it)."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Listener:
    """One proxy's listening socket and its live connections."""

    def __init__(self, rng: Rng, lookup: Callable[[], Proxy | None]) -> None:
        self._rng = rng
        self._lookup = lookup
        self._server: asyncio.Server | None = None
        self.relays: set[Relay] = set()

    async def start(self, port: int) -> int:
        """Listen on 127.0.0.1:`port` and return the port bound (`port` 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, LISTEN_HOST, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Refuse new connections and drop the existing ones (Toxiproxy's `stop`)."""
        for relay in list(self.relays):
            relay.abort()
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    def broadcast(self, make: Callable[[float], Input]) -> None:
        now = asyncio.get_running_loop().time()
        for relay in list(self.relays):
            relay.feed(make(now))

    def _accept(self) -> asyncio.Protocol:
        proxy = self._lookup()
        # The lookup cannot miss while we listen (a deleted proxy stops first); the fallback
        # only keeps a racing accept from raising inside asyncio's accept loop.
        upstream = proxy.upstream_address if proxy is not None else (LISTEN_HOST, 0)
        relay = Relay(self._rng, upstream, self._toxics, self.relays.discard)
        self.relays.add(relay)
        return relay.client_protocol()

    def _toxics(self) -> tuple[Toxic, ...]:
        proxy = self._lookup()
        return proxy.toxics if proxy is not None else ()


class FaultProxyServer:
    """A Toxiproxy-compatible fault proxy: the HTTP API on `host:port`, proxies on 127.0.0.1.

    `port` 0 picks a free port (read it from `.port` after `start`). `rng` decides toxicity
    draws, latency jitter and slicer cuts; pass a seeded `random.Random` for repeatable runs.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8474, *, rng: random.Random | None = None
    ) -> None:
        self._host = host
        self._requested_port = port
        self._rng: Rng = rng if rng is not None else random.Random()
        self._state = ApiState()
        self._listeners: dict[str, _Listener] = {}
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxyServer is not started")
        return self._port

    async def start(self) -> None:
        app = web.Application(middlewares=[_edge])
        app.router.add_get("/version", self._version)
        app.router.add_post("/reset", self._reset)
        app.router.add_post("/populate", self._populate)
        app.router.add_get("/proxies", self._proxy_index)
        app.router.add_post("/proxies", self._proxy_create)
        app.router.add_get("/proxies/{proxy}", self._proxy_show)
        app.router.add_post("/proxies/{proxy}", self._proxy_update)
        app.router.add_patch("/proxies/{proxy}", self._proxy_update)
        app.router.add_delete("/proxies/{proxy}", self._proxy_delete)
        app.router.add_get("/proxies/{proxy}/toxics", self._toxic_index)
        app.router.add_post("/proxies/{proxy}/toxics", self._toxic_create)
        app.router.add_get("/proxies/{proxy}/toxics/{toxic}", self._toxic_show)
        app.router.add_post("/proxies/{proxy}/toxics/{toxic}", self._toxic_update)
        app.router.add_patch("/proxies/{proxy}/toxics/{toxic}", self._toxic_update)
        app.router.add_delete("/proxies/{proxy}/toxics/{toxic}", self._toxic_delete)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._requested_port), family=family)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        async with self._lock:
            for listener in self._listeners.values():
                await listener.stop()
            self._listeners.clear()
            self._state = ApiState()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._port = None

    # --- proxies ------------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=json.dumps({"version": VERSION}).encode() + b"\n",
            content_type="application/json",
            charset="utf-8",
        )

    async def _proxy_index(self, request: web.Request) -> web.StreamResponse:
        return _json({proxy.name: proxy.to_json() for proxy in self._state})

    async def _proxy_show(self, request: web.Request) -> web.StreamResponse:
        return _json(self._state.get(request.match_info["proxy"]).to_json())

    async def _proxy_create(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        async with self._lock:
            proxy = await self._add(self._state.new_proxy(body))
        return _json(proxy.to_json(), status=201)

    async def _proxy_update(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["proxy"]
        body = await _body(request)
        async with self._lock:
            current = self._state.get(name)
            wanted = self._state.updated_proxy(name, body)
            listener = self._listeners[name]
            running = current.enabled
            if running and (wanted.listen != current.listen or wanted.upstream != current.upstream):
                # As Toxiproxy: a new address or upstream restarts the proxy, dropping connections.
                await listener.stop()
                running = False
            if wanted.enabled and not running:
                wanted = await self._bind(listener, wanted, on_failure=replace(wanted, enabled=False))
            elif not wanted.enabled and running:
                await listener.stop()
            self._state.put(wanted)
        return _json(wanted.to_json())

    async def _proxy_delete(self, request: web.Request) -> web.StreamResponse:
        async with self._lock:
            self._state.remove(request.match_info["proxy"])
            await self._listeners.pop(request.match_info["proxy"]).stop()
        return web.Response(status=204)

    async def _populate(self, request: web.Request) -> web.StreamResponse:
        done: list[Proxy] = []
        try:
            body = await _body(request)
            async with self._lock:
                for wanted, keep in self._state.populate(body):
                    if not keep:
                        if wanted.name in self._listeners:
                            self._state.remove(wanted.name)
                            await self._listeners.pop(wanted.name).stop()
                        wanted = await self._add(wanted)
                    done.append(wanted)
        except ApiError as e:
            return _json({**e.to_json(), "proxies": [p.to_json() for p in done]}, status=e.status)
        return _json({"proxies": [p.to_json() for p in done]}, status=201)

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        async with self._lock:
            for proxy in self._state:
                listener = self._listeners[proxy.name]
                if not proxy.enabled:
                    await self._bind(listener, replace(proxy, enabled=True), on_failure=proxy)
                for toxic in self._state.clear_toxics(proxy.name):
                    listener.broadcast(lambda now, name=toxic.name: ToxicRemoved(name, now))
        return web.Response(status=204)

    async def _add(self, proxy: Proxy) -> Proxy:
        """Start (if enabled) and store a proxy that is not in the state yet."""
        listener = _Listener(self._rng, lambda name=proxy.name: self._lookup(name))
        if proxy.enabled:
            proxy = await self._bind(listener, proxy, on_failure=None)
        self._state.put(proxy)
        self._listeners[proxy.name] = listener
        return proxy

    async def _bind(self, listener: _Listener, proxy: Proxy, *, on_failure: Proxy | None) -> Proxy:
        """Listen for `proxy` and store it with its real port; on failure store `on_failure`
        (when given) and answer 500, as Toxiproxy does for a listen error."""
        try:
            port = await listener.start(proxy.listen_port)
        except OSError as e:
            if on_failure is not None:
                self._state.put(on_failure)
            raise ApiError(f"listen tcp {proxy.listen}: {e.strerror or e}", 500) from e
        bound = replace(proxy, listen=f"{LISTEN_HOST}:{port}")
        self._state.put(bound)
        return bound

    def _lookup(self, name: str) -> Proxy | None:
        try:
            return self._state.get(name)
        except ApiError:
            return None

    # --- toxics -------------------------------------------------------------------------

    async def _toxic_index(self, request: web.Request) -> web.StreamResponse:
        proxy = self._state.get(request.match_info["proxy"])
        return _json(proxy.to_json()["toxics"])

    async def _toxic_show(self, request: web.Request) -> web.StreamResponse:
        toxic = self._state.get_toxic(request.match_info["proxy"], request.match_info["toxic"])
        return _json(toxic.to_json())

    async def _toxic_create(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["proxy"]
        body = await _body(request)
        async with self._lock:
            toxic = self._state.add_toxic(name, body)
            self._listeners[name].broadcast(lambda now: ToxicAdded(toxic, now))
        return _json(toxic.to_json())

    async def _toxic_update(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["proxy"]
        body = await _body(request)
        async with self._lock:
            toxic = self._state.update_toxic(name, request.match_info["toxic"], body)
            self._listeners[name].broadcast(lambda now: ToxicUpdated(toxic, now))
        return _json(toxic.to_json())

    async def _toxic_delete(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["proxy"]
        async with self._lock:
            toxic = self._state.remove_toxic(name, request.match_info["toxic"])
            self._listeners[name].broadcast(lambda now: ToxicRemoved(toxic.name, now))
        return web.Response(status=204)


@web.middleware
async def _edge(request: web.Request, handler: _Handler) -> web.StreamResponse:
    # Toxiproxy refuses browsers so that a web page cannot drive a local proxy (CSRF).
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return web.Response(status=403, text="User agent not allowed\n")
    try:
        return await handler(request)
    except ApiError as e:
        return _json(e.to_json(), status=e.status)


async def _body(request: web.Request) -> object:
    raw = await request.read()
    if not raw.strip():
        raise ApiError("bad request body: EOF", 400)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(f"bad request body: {e}", 400) from None


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)

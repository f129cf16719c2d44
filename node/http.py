"""The ingress (:8080) and admin (:9070) HTTP servers: health, and metrics on the admin port."""

from __future__ import annotations

from aiohttp import web

from node import metrics
from node.config import NodeConfig
from node.log_role import LogRole


async def _health(request: web.Request) -> web.Response:
    # 503 with the reason when degraded: the node serves, but something needs attention.
    degraded = request.app["log_role"].health()
    if degraded is None:
        return web.json_response({"status": "ok", "node": request.app["node_name"]})
    return web.json_response(
        {"status": "degraded", "node": request.app["node_name"], "reason": degraded}, status=503
    )


def _app(cfg: NodeConfig, log_role: LogRole, routes: list[web.RouteDef]) -> web.Application:
    app = web.Application()
    app["node_name"] = cfg.node_name
    app["log_role"] = log_role
    app.add_routes(routes)
    return app


async def start_http_servers(cfg: NodeConfig, log_role: LogRole) -> list[web.AppRunner]:
    """Start ingress then admin; the caller calls this only once the node is ready."""

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(log_role), content_type="text/plain", charset="utf-8")

    runners = []
    for port, routes in (
        (cfg.ports.ingress, [web.get("/restate/health", _health)]),
        (cfg.ports.admin, [web.get("/health", _health), web.get("/metrics", metrics_handler)]),
    ):
        runner = web.AppRunner(_app(cfg, log_role, routes), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, cfg.address, port, reuse_address=True).start()
        runners.append(runner)
    return runners

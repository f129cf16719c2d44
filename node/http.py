"""The ingress (:8080) and admin (:9070) HTTP servers: the ingress API (node.ingress), the admin API
(node.admin_api) with the node's health as its ``/health``, and metrics on the admin port. Both
listen behind node/http_guard.py's connection cap and request-head timeout."""

from __future__ import annotations

from aiohttp import web

from metadata.store import MetadataStore
from node import metrics
from node.admin_api import add_admin_routes
from node.config import NodeConfig
from node.http_guard import HEADER_TIMEOUT_S, GuardedSite, HttpLimits, default_max_connections
from node.ingress import Submitter, add_ingress_routes
from node.log_role import LogRole
from processor.invoker.invoker import InvokerStats


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


SHUTDOWN_GRACE_S = 2.0


async def start_http_servers(
    cfg: NodeConfig,
    log_role: LogRole,
    store: MetadataStore,
    submitter: Submitter | None = None,
    invoker_stats: InvokerStats | None = None,
) -> list[web.AppRunner]:
    """Start ingress then admin; the caller calls this only once the node is ready."""

    async def metrics_handler(request: web.Request) -> web.Response:
        body = metrics.render(log_role, invoker_stats)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    ingress = _app(cfg, log_role, [])
    add_ingress_routes(ingress, store, submitter)
    admin = _app(cfg, log_role, [web.get("/metrics", metrics_handler)])
    add_admin_routes(
        admin,
        store,
        ingress_url=f"http://{cfg.address}:{cfg.ports.ingress}/",
        health=_health,
        invocations=submitter,  # the ingress submitter also appends cancel, kill and purge
    )
    runners = []
    limits = HttpLimits(default_max_connections())
    for name, port, app in (
        ("http-ingress", cfg.ports.ingress, ingress),
        ("http-admin", cfg.ports.admin, admin),
    ):
        # An idle kept-alive connection, or one slow with its next request head, closes as fast
        # as a new connection that is slow with its first.
        # At shutdown a request still in flight gets SHUTDOWN_GRACE_S, not aiohttp's 60 s: a
        # stopping node must free its ports promptly for its restart.
        runner = web.AppRunner(
            app, access_log=None, keepalive_timeout=HEADER_TIMEOUT_S, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await runner.setup()
        site = GuardedSite(
            runner, cfg.address, port, limits, lambda reason, name=name: metrics.EDGE.count(name, reason)
        )
        await site.start()
        runners.append(runner)
    return runners

"""The node's two HTTP APIs, as node/http.py mounts them, on free loopback ports in this process.

``run_apis(tmp_path, body, ...)`` starts the admin and ingress apps over one real metadata store
(RocksDB in ``tmp_path``), runs ``await body(apis)`` under a deadline, and stops everything.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from metadata import LocalMetadataStore
from node.admin_api import add_admin_routes
from node.discovery import DiscoveryClient
from node.ingress import CallOutcome, SendOutcome, add_ingress_routes
from node.ports import free_ports
from processor.core._model import Result, ServiceInvocation

DEADLINE_S = 60.0
# Discovery retries fast in tests; a real deployment that is down still fails every attempt.
FAST_DISCOVERY = DiscoveryClient(retry_delays_s=(0.01, 0.01), attempt_timeout_s=2.0)


@dataclass
class RecordingSubmitter:
    """Answers every call with ``result`` and every send as accepted; remembers what it got."""

    result: Result = field(default_factory=lambda: Result(b'"ok"'))
    calls: list[ServiceInvocation] = field(default_factory=list)
    sends: list[ServiceInvocation] = field(default_factory=list)

    async def call(self, invocation: ServiceInvocation) -> CallOutcome:
        self.calls.append(invocation)
        return CallOutcome(invocation.invocation_id, self.result)

    async def send(self, invocation: ServiceInvocation) -> SendOutcome:
        self.sends.append(invocation)
        return SendOutcome(invocation.invocation_id, False, invocation.execution_time_ms)


@dataclass
class Apis:
    admin: str
    ingress: str
    store: LocalMetadataStore
    session: aiohttp.ClientSession
    submitter: RecordingSubmitter

    async def request(
        self, method: str, url: str, document: Any = None, **kwargs: Any
    ) -> tuple[int, CIMultiDict[str], bytes]:
        if document is not None:
            kwargs["json"] = document
        async with self.session.request(method, url, **kwargs) as response:
            return response.status, CIMultiDict(response.headers), await response.read()


@asynccontextmanager
async def served(app: web.Application, port: int | None = None) -> AsyncIterator[str]:
    """``app`` on a loopback port (free unless given) while the block runs; yields its base URL."""
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


def run_apis(
    tmp_path: Path,
    body: Callable[[Apis], Awaitable[None]],
    *,
    discovery: DiscoveryClient = FAST_DISCOVERY,
    submitter: RecordingSubmitter | None = None,
) -> None:
    async def main() -> None:
        store = LocalMetadataStore.open(tmp_path / "metadata")
        recorder = submitter or RecordingSubmitter()
        admin_port, ingress_port = free_ports(2)
        ingress_url = f"http://127.0.0.1:{ingress_port}"
        admin_app, ingress_app = web.Application(), web.Application()
        add_admin_routes(admin_app, store, ingress_url=ingress_url + "/", discovery=discovery)
        add_ingress_routes(ingress_app, store, recorder, rng=random.Random(11))
        try:
            async with (
                served(ingress_app, ingress_port),
                served(admin_app, admin_port) as admin_url,
                aiohttp.ClientSession() as session,
                asyncio.timeout(DEADLINE_S),
            ):
                await body(Apis(admin_url, ingress_url, store, session, recorder))
        finally:
            await store.close()

    asyncio.run(main())

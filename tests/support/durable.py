"""Talking to a running node's ingress and admin APIs over plain HTTP, as a user's client would.

    http = NodeHttp(ingress_port, admin_port)
    http.register("http://127.0.0.1:9080")
    r = http.call("Greeter/greet", "Ada")      # JSON in, Response(status, headers, body) out
    r.json()                                    # "Hello, Ada!"

Synchronous (http.client) so that tests can call from threads while they kill processes.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

LOOPBACK = "127.0.0.1"
_NO_BODY = object()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Response:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass(frozen=True)
class NodeHttp:
    ingress: int
    admin: int

    def register(self, uri: str) -> dict[str, Any]:
        r = request(self.admin, "POST", "/deployments", json.dumps({"uri": uri}).encode(), _JSON)
        assert r.status in (200, 201), r
        return r.json()

    def call(
        self,
        path: str,
        arg: Any = _NO_BODY,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> Response:
        """POST /<path> with ``arg`` as JSON (no argument: an empty body, no content type)."""
        if arg is _NO_BODY:
            return request(self.ingress, "POST", f"/{path}", None, headers, timeout_s)
        return request(
            self.ingress,
            "POST",
            f"/{path}",
            json.dumps(arg).encode(),
            {**_JSON, **(headers or {})},
            timeout_s,
        )


_JSON = {"content-type": "application/json"}

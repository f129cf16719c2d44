"""Talking to a running node's ingress and admin APIs over plain HTTP, as a user's client would.

    http = NodeHttp(ingress_port, admin_port)
    http.register("http://127.0.0.1:9080")
    r = http.call("Greeter/greet", "Ada")      # JSON in, Response(status, headers, body) out
    r.json()                                    # "Hello, Ada!"

Synchronous (http.client) so that tests can call from threads while they kill processes.

``running_node(workdir)`` runs one `durastate server` with the defaults on free ports and stops it
by pid at the end; ``node.kill()`` / ``node.start()`` crash and restart it on the same ports.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.ports import free_ports
from tests.support.procs import DURASTATE, clean_env
from tests.support.wait import wait_until

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


@dataclass
class Node:
    """One `durastate server` process with the defaults, on free ports, in ``workdir``."""

    workdir: Path
    ports: tuple[int, int, int, int]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> NodeHttp:
        return NodeHttp(self.ports[0], self.ports[1])

    def start(self) -> Node:
        ingress, admin, node, data = self.ports
        env = clean_env(
            DURASTATE_PORTS_INGRESS=str(ingress),
            DURASTATE_PORTS_ADMIN=str(admin),
            DURASTATE_PORTS_NODE=str(node),
            DURASTATE_PORTS_DATA=str(data),
        )
        with open(self.workdir / "node.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*DURASTATE, "server"],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: self._exited() or self._healthy(), 60, "the node's ingress")
        assert not self._exited(), (self.workdir / "node.log").read_text()[-3000:]
        return self

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _healthy(self) -> bool:
        return request(self.ports[0], "GET", "/restate/health", timeout_s=1).status == 200

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(timeout=20) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(timeout=10)


@contextlib.contextmanager
def running_node(workdir: Path) -> Iterator[Node]:
    workdir.mkdir(parents=True, exist_ok=True)
    node = Node(workdir, tuple(free_ports(4)))  # type: ignore[arg-type]
    try:
        yield node.start()
    finally:
        node.stop()

"""The log-server role: the core ``LogServer`` over RocksDB, answering requests from the network.

Each ``Persist`` the core emits becomes one write set for the group-commit writer (one WriteBatch,
one fsync); its ``Persisted`` goes back into the core, which then releases the replies that
vouch for it. The core keeps at most one ``Persist`` in flight, so writes accepted meanwhile form
the next group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bifrost.core import LogServer, Persist, Persisted, Reply, Request
from bifrost.log_server.store import RocksLogStore

log = logging.getLogger(__name__)

Responder = Callable[[int, Any], None]


class LogServerService:
    def __init__(self, node_id: int, store: RocksLogStore) -> None:
        self._store = store
        self._core = LogServer(node_id, store)

    @property
    def core(self) -> LogServer:
        return self._core

    def handle(self, reply: Responder, request_id: int, message: Any) -> None:
        self._run(Request(reply, request_id, message))

    def _run(self, inp: Request | Persisted) -> None:
        for out in self._core.step(inp):
            if isinstance(out, Reply):
                responder: Responder = out.to  # type: ignore[assignment]
                responder(out.request_id, out.message)
            elif isinstance(out, Persist):
                self._persist(out)
            else:
                raise TypeError(f"unexpected log-server output {out!r}")

    def _persist(self, persist: Persist) -> None:
        durable = self._store.writer.submit(self._store.ops_for(persist.writes))

        def done(fut: Any) -> None:
            if fut.cancelled() or fut.exception() is not None:
                # A failed fsync leaves the disk in an unknown state: stop acknowledging anything.
                # The core never sees Persisted, so the waiting replies are never released.
                log.error(
                    "log-server write failed; refusing further writes", extra={"error": repr(fut.exception())}
                )
                return
            self._run(Persisted(persist.token))

        durable.add_done_callback(done)

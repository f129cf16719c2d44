"""The log-server role: the core ``LogServer`` over RocksDB, answering requests from the network.

Each ``Persist`` the core emits becomes one write set for the group-commit writer (one WriteBatch,
one fsync); its ``Persisted`` goes back into the core, which then releases the replies that
vouch for it. The core keeps at most one ``Persist`` in flight, so writes accepted meanwhile form
the next group.

A failed write (disk full, I/O error) is fed back as ``PersistFailed``: the core refuses writes
from then on (reads go on), and this shell tries to recover every ``DISK_RECOVERY_INTERVAL_S``: reopen
the database (RocksDB stays read-only after a failed WAL write until reopened), prove a synced
write works, then start a fresh core over the store (construction is recovery). A store that
cannot be read (corruption) is not retried: it needs an operator (see the README).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bifrost.core import LogServer, Persist, Persisted, PersistFailed, Reply, Request
from bifrost.log_server.store import RocksLogStore
from bifrost.policy import DISK_RECOVERY_INTERVAL_S

log = logging.getLogger(__name__)


Responder = Callable[[int, Any], None]


class LogServerService:
    def __init__(self, node_id: int, store: RocksLogStore) -> None:
        self._node_id = node_id
        self._store = store
        self._core = LogServer(node_id, store)
        self._recovery: asyncio.Task[None] | None = None
        self.faults = 0

    @property
    def core(self) -> LogServer:
        return self._core

    @property
    def fault(self) -> str | None:
        return self._core.fault

    def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()

    def handle(self, reply: Responder, request_id: int, message: Any) -> None:
        self._run(Request(reply, request_id, message))

    def _run(self, inp: Request | Persisted | PersistFailed) -> None:
        core = self._core
        had_fault = core.fault is not None
        outputs = core.step(inp)
        if core.fault is not None and not had_fault:
            self.faults += 1
            log.error("log-server refuses writes", extra={"reason": core.fault})
            if isinstance(inp, PersistFailed) and self._recovery is None:
                self._recovery = asyncio.ensure_future(self._recover())
        for out in outputs:
            if isinstance(out, Reply):
                responder: Responder = out.to  # type: ignore[assignment]
                responder(out.request_id, out.message)
            elif isinstance(out, Persist):
                self._persist(out)
            else:
                raise TypeError(f"unexpected log-server output {out!r}")

    def _persist(self, persist: Persist) -> None:
        durable = self._store.writer.submit(self._store.ops_for(persist.writes))

        core = self._core

        def done(fut: Any) -> None:
            if self._core is not core:
                return  # the answer of a core replaced by recovery
            if fut.cancelled():
                return  # the writer is closing
            error = fut.exception()
            if error is not None:
                self._run(
                    PersistFailed(persist.token, str(error).splitlines()[0] if str(error) else repr(error))
                )
                return
            self._run(Persisted(persist.token))

        durable.add_done_callback(done)

    async def _recover(self) -> None:
        try:
            while True:
                await asyncio.sleep(DISK_RECOVERY_INTERVAL_S)
                try:
                    self._store.reopen()
                    self._store.probe_write()
                except Exception as e:  # still failing: try again later
                    log.info("log-server still cannot write", extra={"error": str(e).splitlines()[0]})
                    continue
                self._core = LogServer(self._node_id, self._store)
                log.warning("log-server writes again")
                return
        finally:
            self._recovery = None

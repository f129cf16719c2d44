"""`Tables` in memory: the partition store for tests and the seeded simulation.

`MemoryStore` is the durable part (what survives a crash); `MemoryStore.transaction()` opens a
`MemoryTables` overlay that reads through to the store and keeps its writes apart until
`commit()` applies them all at once, like the RocksDB store's write batch. A crash is simply a
transaction that is never committed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Final

from processor.core._commands import AnnounceLeader, Dedup
from processor.core._model import (
    InvocationIdBytes,
    InvocationStatus,
    JournalEntry,
    OutboxMessage,
    PromiseRow,
    TimerKey,
)
from processor.core._tables import ProducerId

_DELETED: Final = object()


class MemoryStore:
    """The durable tables of one partition, as plain dicts (and a sorted timer list)."""

    def __init__(self) -> None:
        self.fsm: dict[str, object] = {}
        self.status: dict[InvocationIdBytes, InvocationStatus] = {}
        self.journal: dict[InvocationIdBytes, dict[int, JournalEntry]] = {}
        self.state: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self.promises: dict[tuple[str, str], dict[str, PromiseRow]] = {}
        self.locks: dict[tuple[str, str], InvocationIdBytes] = {}
        self.inbox: dict[tuple[str, str], dict[int, InvocationIdBytes]] = {}
        self.timers: list[TimerKey] = []
        self.outbox: dict[int, OutboxMessage] = {}

    def transaction(self) -> MemoryTables:
        return MemoryTables(self)


class MemoryTables:
    """One transaction over a `MemoryStore` (see the module docstring)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        # Pending writes, keyed by (table, key); _DELETED marks a delete.
        self._writes: dict[tuple[str, object], object] = {}
        self._cleared_state: set[tuple[str, str]] = set()
        self._cleared_promises: set[tuple[str, str]] = set()
        self._cleared_journal: set[InvocationIdBytes] = set()
        self._committed = False

    # --- overlay plumbing ---

    def _get(self, table: str, key: object, durable: object) -> object:
        pending = self._writes.get((table, key), None)
        if (table, key) in self._writes:
            return None if pending is _DELETED else pending
        return durable

    def _put(self, table: str, key: object, value: object) -> None:
        self._check_open()
        self._writes[(table, key)] = value

    def _check_open(self) -> None:
        if self._committed:
            raise RuntimeError("transaction already committed")

    def commit(self) -> None:
        self._check_open()
        s = self._store
        for service_key in self._cleared_state:
            s.state.pop(service_key, None)
        for service_key in self._cleared_promises:
            s.promises.pop(service_key, None)
        for inv in self._cleared_journal:
            s.journal.pop(inv, None)
        for (table, key), value in self._writes.items():
            deleted = value is _DELETED
            match table:
                case "fsm":
                    _set(s.fsm, key, value, deleted)
                case "status":
                    _set(s.status, key, value, deleted)
                case "journal":
                    inv, index = key  # type: ignore[misc]
                    if deleted:
                        s.journal.get(inv, {}).pop(index, None)
                    else:
                        s.journal.setdefault(inv, {})[index] = value  # type: ignore[assignment]
                case "state":
                    service, skey, name = key  # type: ignore[misc]
                    if deleted:
                        s.state.get((service, skey), {}).pop(name, None)
                    else:
                        s.state.setdefault((service, skey), {})[name] = value  # type: ignore[assignment]
                case "promises":
                    service, skey, name = key  # type: ignore[misc]
                    s.promises.setdefault((service, skey), {})[name] = value  # type: ignore[assignment]
                case "locks":
                    _set(s.locks, key, value, deleted)
                case "inbox":
                    service, skey, seq = key  # type: ignore[misc]
                    if deleted:
                        s.inbox.get((service, skey), {}).pop(seq, None)
                    else:
                        s.inbox.setdefault((service, skey), {})[seq] = value  # type: ignore[assignment]
                case "timers":
                    i = bisect.bisect_left(s.timers, key)  # type: ignore[arg-type]
                    present = i < len(s.timers) and s.timers[i] == key
                    if deleted and present:
                        s.timers.pop(i)
                    elif not deleted and not present:
                        s.timers.insert(i, key)  # type: ignore[arg-type]
                case "outbox":
                    _set(s.outbox, key, value, deleted)
        self._committed = True

    # --- fsm ---

    def applied_lsn(self) -> int:
        return int(self._get("fsm", "applied_lsn", self._store.fsm.get("applied_lsn", 0)))  # type: ignore[arg-type]

    def set_applied_lsn(self, lsn: int) -> None:
        self._put("fsm", "applied_lsn", lsn)

    def dedup(self, producer: ProducerId) -> Dedup | None:
        key = "dedup:" + producer
        return self._get("fsm", key, self._store.fsm.get(key))  # type: ignore[return-value]

    def set_dedup(self, producer: ProducerId, seq: Dedup) -> None:
        self._put("fsm", "dedup:" + producer, seq)

    def _counter(self, name: str) -> int:
        value = int(self._get("fsm", name, self._store.fsm.get(name, 0)))  # type: ignore[arg-type]
        self._put("fsm", name, value + 1)
        return value + 1

    def next_inbox_seq(self) -> int:
        return self._counter("inbox_seq")

    def next_outbox_index(self) -> int:
        return self._counter("outbox_index")

    def leader(self) -> AnnounceLeader | None:
        return self._get("fsm", "leader", self._store.fsm.get("leader"))  # type: ignore[return-value]

    def set_leader(self, announcement: AnnounceLeader) -> None:
        self._put("fsm", "leader", announcement)

    # --- status ---

    def get_status(self, invocation_id: InvocationIdBytes) -> InvocationStatus | None:
        return self._get("status", invocation_id, self._store.status.get(invocation_id))  # type: ignore[return-value]

    def put_status(self, invocation_id: InvocationIdBytes, status: InvocationStatus) -> None:
        self._put("status", invocation_id, status)

    def delete_status(self, invocation_id: InvocationIdBytes) -> None:
        self._put("status", invocation_id, _DELETED)

    # --- journal ---

    def journal(
        self, invocation_id: InvocationIdBytes, from_index: int = 0
    ) -> Iterator[tuple[int, JournalEntry]]:
        durable = {} if invocation_id in self._cleared_journal else self._store.journal.get(invocation_id, {})
        merged = dict(durable)
        for (table, key), value in self._writes.items():
            if table == "journal" and key[0] == invocation_id:  # type: ignore[index]
                if value is _DELETED:
                    merged.pop(key[1], None)  # type: ignore[index]
                else:
                    merged[key[1]] = value  # type: ignore[index]
        for index in sorted(i for i in merged if i >= from_index):
            yield index, merged[index]

    def put_journal(self, invocation_id: InvocationIdBytes, index: int, entry: JournalEntry) -> None:
        self._put("journal", (invocation_id, index), entry)

    def delete_journal(self, invocation_id: InvocationIdBytes) -> None:
        self._check_open()
        self._cleared_journal.add(invocation_id)
        for k in [k for k in self._writes if k[0] == "journal" and k[1][0] == invocation_id]:  # type: ignore[index]
            del self._writes[k]

    # --- state ---

    def get_state(self, service: str, key: str, name: bytes) -> bytes | None:
        durable = (
            None
            if (service, key) in self._cleared_state
            else self._store.state.get((service, key), {}).get(name)
        )
        return self._get("state", (service, key, name), durable)  # type: ignore[return-value]

    def put_state(self, service: str, key: str, name: bytes, value: bytes) -> None:
        self._put("state", (service, key, name), value)

    def delete_state(self, service: str, key: str, name: bytes) -> None:
        self._put("state", (service, key, name), _DELETED)

    def delete_all_state(self, service: str, key: str) -> None:
        self._check_open()
        self._cleared_state.add((service, key))
        for k in [k for k in self._writes if k[0] == "state" and k[1][:2] == (service, key)]:  # type: ignore[index]
            del self._writes[k]

    def all_state(self, service: str, key: str) -> Iterator[tuple[bytes, bytes]]:
        durable = {} if (service, key) in self._cleared_state else self._store.state.get((service, key), {})
        merged = dict(durable)
        for (table, k), value in self._writes.items():
            if table == "state" and k[:2] == (service, key):  # type: ignore[index]
                if value is _DELETED:
                    merged.pop(k[2], None)  # type: ignore[index]
                else:
                    merged[k[2]] = value  # type: ignore[index]
        for name in sorted(merged):
            yield name, merged[name]  # type: ignore[misc]

    # --- workflow promises ---

    def get_promise(self, service: str, key: str, name: str) -> PromiseRow | None:
        durable = (
            None
            if (service, key) in self._cleared_promises
            else self._store.promises.get((service, key), {}).get(name)
        )
        return self._get("promises", (service, key, name), durable)  # type: ignore[return-value]

    def put_promise(self, service: str, key: str, name: str, row: PromiseRow) -> None:
        self._put("promises", (service, key, name), row)

    def delete_all_promises(self, service: str, key: str) -> None:
        self._check_open()
        self._cleared_promises.add((service, key))
        for k in [k for k in self._writes if k[0] == "promises" and k[1][:2] == (service, key)]:  # type: ignore[index]
            del self._writes[k]

    # --- locks and inboxes ---

    def get_lock(self, service: str, key: str) -> InvocationIdBytes | None:
        return self._get("locks", (service, key), self._store.locks.get((service, key)))  # type: ignore[return-value]

    def put_lock(self, service: str, key: str, invocation_id: InvocationIdBytes) -> None:
        self._put("locks", (service, key), invocation_id)

    def delete_lock(self, service: str, key: str) -> None:
        self._put("locks", (service, key), _DELETED)

    def inbox_push(self, service: str, key: str, seq: int, invocation_id: InvocationIdBytes) -> None:
        self._put("inbox", (service, key, seq), invocation_id)

    def inbox_first(self, service: str, key: str) -> tuple[int, InvocationIdBytes] | None:
        merged = dict(self._store.inbox.get((service, key), {}))
        for (table, k), value in self._writes.items():
            if table == "inbox" and k[:2] == (service, key):  # type: ignore[index]
                if value is _DELETED:
                    merged.pop(k[2], None)  # type: ignore[index]
                else:
                    merged[k[2]] = value  # type: ignore[index]
        if not merged:
            return None
        seq = min(merged)
        return seq, merged[seq]  # type: ignore[return-value]

    def inbox_delete(self, service: str, key: str, seq: int) -> None:
        self._put("inbox", (service, key, seq), _DELETED)

    # --- timers ---

    def put_timer(self, timer: TimerKey) -> None:
        self._put("timers", timer, True)

    def delete_timer(self, timer: TimerKey) -> None:
        self._put("timers", timer, _DELETED)

    def timers(self) -> Iterator[TimerKey]:
        merged = set(self._store.timers)
        for (table, k), value in self._writes.items():
            if table == "timers":
                if value is _DELETED:
                    merged.discard(k)  # type: ignore[arg-type]
                else:
                    merged.add(k)  # type: ignore[arg-type]
        yield from sorted(merged)

    # --- outbox ---

    def put_outbox(self, index: int, message: OutboxMessage) -> None:
        self._put("outbox", index, message)

    def delete_outbox_up_to(self, index: int) -> None:
        for i, _ in list(self.outbox()):
            if i <= index:
                self._put("outbox", i, _DELETED)

    def outbox(self) -> Iterator[tuple[int, OutboxMessage]]:
        merged = dict(self._store.outbox)
        for (table, k), value in self._writes.items():
            if table == "outbox":
                if value is _DELETED:
                    merged.pop(k, None)  # type: ignore[arg-type]
                else:
                    merged[k] = value  # type: ignore[index]
        for index in sorted(merged):
            yield index, merged[index]  # type: ignore[misc]


def _set(table: dict, key: object, value: object, deleted: bool) -> None:  # type: ignore[type-arg]
    if deleted:
        table.pop(key, None)
    else:
        table[key] = value

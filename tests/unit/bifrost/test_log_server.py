"""Log-server core: datadriven store rules (testdata/log_server_*.txt) plus focused tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bifrost.core import (
    GenerationalNodeId,
    GetDigest,
    GetLogletInfo,
    GetRecords,
    LocalProtocolError,
    LogServer,
    MemoryLogStore,
    Persist,
    Persisted,
    PersistFailed,
    Reply,
    Request,
    RequestHeader,
    Seal,
    Status,
    Store,
    Stored,
    StoreFlags,
    Trim,
    describe,
)
from tests.datadriven import TestCase, run_file, walk

TESTDATA = Path(__file__).parent / "testdata"
N1 = GenerationalNodeId(1, 1)
LID = 1


def parse_gid(s: str) -> GenerationalNodeId:
    node, gen = s.removeprefix("N").split(":")
    return GenerationalNodeId(int(node), int(gen))


class LogServerEnv:
    """Drives one LogServer the way a shell would, but only when told to (`persist`)."""

    def __init__(self) -> None:
        self.disk = MemoryLogStore()
        self.server = LogServer(1, self.disk)
        self.pending: list[Persist] = []
        self.rid = 0

    def step(self, inp: Request | Persisted) -> list[str]:
        lines = []
        for o in self.server.step(inp):
            if isinstance(o, Persist):
                self.pending.append(o)
            lines.append(describe(o))
        return lines

    def handle(self, t: TestCase) -> str:
        lid = t.int_arg("loglet", LID)
        hdr = RequestHeader(lid, t.int_arg("gt", 1))
        self.rid += 1
        sender = t.arg("sender", "peer")
        match t.cmd:
            case "store":
                flags = StoreFlags.IGNORE_SEAL | StoreFlags.REPAIR if t.has("repair") else StoreFlags.NONE
                payloads = tuple(p.encode() for p in t.list_arg("payloads"))
                msg = Store(hdr, t.int_arg("first"), parse_gid(t.arg("seq", "N1:1")), payloads, flags)
                return "\n".join(self.step(Request(sender, self.rid, msg)))
            case "seal":
                return "\n".join(self.step(Request(sender, self.rid, Seal(hdr, N1))))
            case "info":
                return "\n".join(self.step(Request(sender, self.rid, GetLogletInfo(hdr))))
            case "get-records":
                msg = GetRecords(hdr, t.int_arg("from"), t.int_arg("to"), t.int_arg("limit", 1 << 20))
                return "\n".join(self.step(Request(sender, self.rid, msg)))
            case "digest":
                msg = GetDigest(hdr, t.int_arg("from"), t.int_arg("to"))
                return "\n".join(self.step(Request(sender, self.rid, msg)))
            case "trim":
                return "\n".join(self.step(Request(sender, self.rid, Trim(hdr, t.int_arg("to")))))
            case "persist-fail":
                # the shell's write of the oldest outstanding batch fails (disk full)
                p = self.pending.pop(0)
                return "\n".join(
                    self.step(PersistFailed(p.token, t.arg("reason", "No space left on device")))
                )
            case "persist":
                # sync the oldest outstanding batch: apply it to the disk, then tell the core
                if not self.pending:
                    return "nothing to persist"
                p = self.pending.pop(0)
                self.disk.apply(p.writes)
                return "\n".join(self.step(Persisted(p.token)))
            case "crash":
                lost = len(self.pending)
                self.pending = []
                self.server = LogServer(1, self.disk)
                return f"restarted; {lost} unsynced batch(es) lost"
            case "fault":
                return f"fault={self.server.fault}"
            case "state":
                s = self.server
                return (
                    f"mode={s.mode(lid).value} local_tail={s.local_tail(lid)} "
                    f"global_tail={s.known_global_tail(lid)} trim_point={s.trim_point(lid)}"
                )
        raise ValueError(f"{t.pos}: unknown command {t.cmd}")


@pytest.mark.parametrize("path", walk(TESTDATA, "log_server_*.txt"), ids=lambda p: p.name)
def test_log_server_datadriven(path: Path) -> None:
    env = LogServerEnv()
    run_file(path, env.handle)


def _store(first: int, *payloads: str, gt: int = 1, seq: GenerationalNodeId = N1) -> Store:
    return Store(RequestHeader(LID, gt), first, seq, tuple(p.encode() for p in payloads))


def test_group_commit_one_persist_outstanding() -> None:
    disk = MemoryLogStore()
    s = LogServer(1, disk)
    out1 = s.step(Request("a", 1, _store(1, "x")))
    assert [type(o) for o in out1] == [Persist]
    # Two more stores while the first batch syncs: no new Persist, no reply yet.
    assert s.step(Request("a", 2, _store(2, "y"))) == []
    assert s.step(Request("a", 3, _store(3, "z"))) == []
    p1 = out1[0]
    assert isinstance(p1, Persist)
    disk.apply(p1.writes)
    out = s.step(Persisted(p1.token))
    replies = [o for o in out if isinstance(o, Reply)]
    persists = [o for o in out if isinstance(o, Persist)]
    assert [r.request_id for r in replies] == [1]
    assert len(persists) == 1, "the two stores queued meanwhile leave as one group"
    disk.apply(persists[0].writes)
    out = s.step(Persisted(persists[0].token))
    assert [o.request_id for o in out if isinstance(o, Reply)] == [2, 3]
    assert s.local_tail(LID) == 4


def test_reply_vouches_only_for_durable_state() -> None:
    s = LogServer(1, MemoryLogStore())
    [p] = s.step(Request("a", 1, _store(1, "x")))
    # Before the sync the server reports the durable local tail, not the staged one.
    [info] = s.step(Request("a", 2, GetLogletInfo(RequestHeader(LID, 1))))
    assert isinstance(info, Reply) and info.message.header.local_tail == 1
    assert isinstance(p, Persist)


def test_unknown_persisted_token_fails_the_core() -> None:
    s = LogServer(1, MemoryLogStore())
    with pytest.raises(LocalProtocolError):
        s.step(Persisted(42))
    assert s.failed
    with pytest.raises(LocalProtocolError):
        s.step(Request("a", 1, GetLogletInfo(RequestHeader(LID, 1))))


def test_restart_recovers_seal_tail_and_sequencer_from_disk() -> None:
    disk = MemoryLogStore()
    s = LogServer(1, disk)
    [p] = s.step(Request("a", 1, _store(1, "x", "y")))
    assert isinstance(p, Persist)
    disk.apply(p.writes)
    s.step(Persisted(p.token))
    [p2] = s.step(Request("a", 2, Seal(RequestHeader(LID, 1), N1)))
    assert isinstance(p2, Persist)
    disk.apply(p2.writes)
    s2 = LogServer(1, disk)
    [r] = s2.step(Request("a", 3, _store(3, "z")))
    assert isinstance(r, Reply) and isinstance(r.message, Stored)
    assert r.message.header.status is Status.SEALED
    assert r.message.header.local_tail == 3
    [r] = s2.step(Request("a", 4, _store(1, "x", seq=GenerationalNodeId(2, 1))))
    assert isinstance(r, Reply) and r.message.header.status is Status.SEALED

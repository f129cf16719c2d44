"""Sequencer core: datadriven transcripts (testdata/sequencer_*.txt) plus focused tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bifrost.core import (
    Append,
    AppendError,
    AppendFailed,
    Committed,
    GenerationalNodeId,
    LocalProtocolError,
    LogletParams,
    NodeAlive,
    NodeDead,
    Response,
    ResponseHeader,
    Send,
    Sequencer,
    SequencerConfig,
    SequencerState,
    Status,
    Store,
    Stored,
    Tick,
    describe,
)
from tests.datadriven import TestCase, run_file, walk

TESTDATA = Path(__file__).parent / "testdata"
N1 = GenerationalNodeId(1, 1)


class SequencerEnv:
    def __init__(self) -> None:
        self.seq: Sequencer | None = None
        self.sent: dict[int, Send] = {}

    def out(self, outs: list) -> str:
        for o in outs:
            if isinstance(o, Send):
                self.sent[o.request_id] = o
        return "\n".join(describe(o) for o in outs)

    def handle(self, t: TestCase) -> str:
        if t.cmd == "new-sequencer":
            nodeset = tuple(int(n) for n in t.list_arg("nodeset"))
            params = LogletParams(1, N1, t.int_arg("r"), nodeset)
            cfg = SequencerConfig(
                store_timeout_ms=t.int_arg("timeout", 1000),
                retry_backoff_ms=t.int_arg("backoff", 100),
                max_store_records=t.int_arg("max_store_records", 1000),
            )
            self.seq = Sequencer(params, cfg)
            self.sent = {}
            return f"sequencer for {params}"
        seq = self.seq
        assert seq is not None
        match t.cmd:
            case "append":
                return self.out(
                    seq.step(Append(t.int_arg("batch"), tuple(p.encode() for p in t.list_arg("payloads"))))
                )
            case "stored":
                # Answer request `rid` as its server would: local tail defaults to the batch's end.
                rid = t.int_arg("rid")
                req = self.sent[rid]
                assert isinstance(req.message, Store)
                status = Status(t.arg("status", "ok"))
                tail = t.int_arg("local_tail", req.message.last_offset + 1 if status is Status.OK else 1)
                hdr = ResponseHeader(tail, req.message.header.known_global_tail, t.has("sealed"), status)
                return self.out(seq.step(Response(req.to, rid, Stored(hdr))))
            case "tick":
                return self.out(seq.step(Tick(t.int_arg("now"))))
            case "node-dead":
                return self.out(seq.step(NodeDead(t.int_arg("n"))))
            case "node-alive":
                return self.out(seq.step(NodeAlive(t.int_arg("n"))))
            case "status":
                return f"state={seq.state.value} global_tail={seq.known_global_tail} next_offset={seq.next_offset} pending={seq.pending_batches}"
        raise ValueError(f"{t.pos}: unknown command {t.cmd}")


@pytest.mark.parametrize("path", walk(TESTDATA, "sequencer_*.txt"), ids=lambda p: p.name)
def test_sequencer_datadriven(path: Path) -> None:
    run_file(path, SequencerEnv().handle)


def _ok(seq: Sequencer, send: Send) -> list:
    assert isinstance(send.message, Store)
    hdr = ResponseHeader(send.message.last_offset + 1, 1, False, Status.OK)
    return seq.step(Response(send.to, send.request_id, Stored(hdr)))


def test_acks_are_released_in_order_even_if_quorums_complete_out_of_order() -> None:
    seq = Sequencer(LogletParams(1, N1, 1, (1, 2)))
    s1 = [o for o in seq.step(Append(1, (b"a",))) if isinstance(o, Send)]
    seq.step(Append(2, (b"b",)))
    # batch 2 is held back on every server until batch 1 is there or committed
    assert [o for o in seq.step(Tick(0)) if isinstance(o, Send)] == []
    out = _ok(seq, s1[0])
    assert [o for o in out if isinstance(o, Committed)] == [Committed(1, 1, 1)]
    assert seq.known_global_tail == 2


def test_missing_transition_fails_the_sequencer() -> None:
    seq = Sequencer(LogletParams(1, N1, 1, (1,)))
    with pytest.raises(LocalProtocolError):
        seq.step("bogus")  # type: ignore[arg-type]
    assert seq.state is SequencerState.FAILED


def test_sealed_sequencer_refuses_appends() -> None:
    seq = Sequencer(LogletParams(1, N1, 2, (1, 2, 3)))
    sends = [o for o in seq.step(Append(1, (b"a",))) if isinstance(o, Send)]
    for s in sends[:2]:  # f-majority of 3 with R=2 is 2
        seq.step(Response(s.to, s.request_id, Stored(ResponseHeader(1, 1, True, Status.SEALED))))
    assert seq.state is SequencerState.SEALED
    assert seq.step(Append(2, (b"b",))) == [AppendFailed(2, AppendError.SEALED)]

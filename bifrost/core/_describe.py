"""One renderer for every core's inputs and outputs (raft's Describe*): golden files and
failure messages read like transcripts."""

from __future__ import annotations

from ._facade import Call, CancelCall, MarkSealed, OpDone, OpFailed, describe_facade
from ._io import NodeAlive, NodeDead, Response, Send, SetTimer, Tick, describe_io
from ._log_server import Persist, Persisted, Reply, Request, describe_log_server_output
from ._messages import describe_message
from ._read_walk import Emit, ReadDone, ReadLoglet, WantChain, describe_read_walk
from ._reader import Deliver, DeliverTrimGap, SetTail, describe_reader_output
from ._sequencer import Append, AppendFailed, Committed, describe_sequencer_output
from ._tasks import SealDone, TailFound, TrimDone, describe_task_output


def describe(x: object) -> str:
    match x:
        case Persist() | Reply():
            return describe_log_server_output(x)
        case Request(sender=s, request_id=rid, message=m):
            return f"request from={s} rid={rid}: {describe_message(m)}"
        case Persisted(token=t):
            return f"persisted #{t}"
        case Send() | Response() | SetTimer() | Tick() | NodeDead() | NodeAlive():
            return describe_io(x)
        case Committed() | AppendFailed():
            return describe_sequencer_output(x)
        case Append(batch_id=b, payloads=ps):
            return f"append batch={b} [{' '.join(p.decode('utf-8', 'backslashreplace') for p in ps)}]"
        case SealDone() | TailFound() | TrimDone():
            return describe_task_output(x)
        case Deliver() | DeliverTrimGap():
            return describe_reader_output(x)
        case SetTail(tail=t, final=f):
            return f"set-tail {t}{' final' if f else ''}"
        case Call() | CancelCall() | MarkSealed() | OpDone() | OpFailed():
            return describe_facade(x)
        case ReadLoglet() | WantChain() | Emit() | ReadDone():
            return describe_read_walk(x)
    return describe_message(x)  # type: ignore[arg-type]

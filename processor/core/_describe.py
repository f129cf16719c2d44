"""Text renderers for the partition core (raft's ``Describe*``): actions, journal entries,
statuses and a whole `MemoryStore`, one line per item, stable across runs.

Golden transcripts and logs use them. Every renderer takes ``name``, which renders an
invocation id; the default is its ``inv_1…`` string, tests pass short aliases.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import text_format

from processor.core._actions import (
    AbortAttempt,
    AckRunCompletion,
    Action,
    DeleteTimer,
    ForwardNotification,
    IngressRejected,
    IngressResponse,
    IngressSubmitted,
    InvokeAction,
    NewOutboxMessage,
    RegisterTimer,
)
from processor.core._commands import Dedup, ForeignPartition, SelfProposal
from processor.core._memory_tables import MemoryStore
from processor.core._model import (
    IngressSink,
    InvocationIdBytes,
    InvocationQuery,
    InvocationResponse,
    InvocationSignal,
    InvocationStatus,
    JournalEntry,
    OutboxMessage,
    ResponseSink,
    Result,
    ServiceInvocation,
    TimerKey,
)
from processor.ids import InvocationId
from processor.protocol import ProtocolError, decode_payload, type_name

Namer = Callable[[InvocationIdBytes], str]


def invocation_name(raw: InvocationIdBytes) -> str:
    if len(raw) != InvocationId.RAW_SIZE:
        return "0x" + raw.hex()
    return str(InvocationId.from_bytes(raw))


def describe_bytes(value: bytes | None) -> str:
    if value is None:
        return "none"
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return "0x" + value.hex()
    return '"' + text + '"' if text.isprintable() else "0x" + value.hex()


def describe_result(result: Result | None) -> str:
    if result is None:
        return "none"
    if result.failure is not None:
        f = result.failure
        meta = "".join(f" {k}={v}" for k, v in f.metadata)
        return f'failure {f.code} "{f.message}"{meta}'
    if result.value is None:
        return "void"
    return "value " + describe_bytes(result.value)


def describe_sink(sink: ResponseSink, name: Namer = invocation_name) -> str:
    if isinstance(sink, IngressSink):
        where = f"@n{sink.node}.g{sink.generation}" if sink.node or sink.generation else ""
        return f"ingress:{sink.request_id}{where}"
    return f"{name(sink.caller)}:{sink.completion_id}"


def describe_timer(timer: TimerKey, name: Namer = invocation_name) -> str:
    completion = f" completion={timer.completion_id}" if timer.completion_id else ""
    return f"{timer.kind.value} {name(timer.invocation_id)} at={timer.wake_up_ms}{completion}"


def describe_entry(entry: JournalEntry) -> str:
    """``TypeName{fields}`` in protobuf's text format, on one line."""
    label = type_name(entry.type_id).removesuffix("Message")
    try:
        message = decode_payload(entry.type_id, entry.raw)
    except ProtocolError:
        return f"{label} <unparsable 0x{entry.raw.hex()}>"
    if message is None:
        return f"{label} 0x{entry.raw.hex()}"
    return f"{label}{{{text_format.MessageToString(message, as_one_line=True)}}}"


def describe_invocation(inv: ServiceInvocation, name: Namer = invocation_name) -> str:
    parts = [name(inv.invocation_id), str(inv.target), f"arg={describe_bytes(inv.argument)}"]
    if inv.headers:
        parts.append("headers=(" + ", ".join(f"{k}: {v}" for k, v in inv.headers) + ")")
    if inv.response_sink is not None:
        parts.append("sink=" + describe_sink(inv.response_sink, name))
    if inv.submit_sink is not None:
        parts.append("submit=" + describe_sink(inv.submit_sink, name))
    if inv.idempotency_key is not None:
        parts.append(f"ik={inv.idempotency_key}")
    if inv.execution_time_ms:
        parts.append(f"at={inv.execution_time_ms}")
    if inv.caller is not None:
        parts.append("caller=" + name(inv.caller))
    return " ".join(parts)


def describe_outbox(message: OutboxMessage, name: Namer = invocation_name) -> str:
    command = message.command
    if isinstance(command, InvocationResponse):
        kind = "" if command.notification == 0x800D else f" as {command.notification:#x}"
        body = (
            f"respond {name(command.caller)}:{command.completion_id} from {name(command.callee)}{kind} "
            + describe_result(command.result)
        )
    elif isinstance(command, InvocationSignal):
        body = f"signal {name(command.target)} {describe_signal_id(command)} " + (
            "void" if command.result is None else describe_result(command.result)
        )
    elif isinstance(command, InvocationQuery):
        verb = "attach" if command.attach else "output"
        body = f"{verb} {name(command.target)} for " + describe_sink(command.sink, name)
    else:
        body = "invoke " + describe_invocation(command, name)
    return f"pk={message.partition_key:#018x} {body}"


def describe_action(action: Action, name: Namer = invocation_name) -> str:
    match action:
        case InvokeAction():
            return f"invoke {name(action.invocation_id)} {action.target} deployment={action.deployment_id}"
        case ForwardNotification():
            return f"forward {name(action.invocation_id)} #{action.index} {describe_entry(action.entry)}"
        case AckRunCompletion():
            return f"ack-run {name(action.invocation_id)} completion={action.completion_id}"
        case AbortAttempt():
            return f"abort {name(action.invocation_id)}"
        case RegisterTimer():
            return "timer+ " + describe_timer(action.timer, name)
        case DeleteTimer():
            return "timer- " + describe_timer(action.timer, name)
        case NewOutboxMessage():
            return f"outbox {action.index} {describe_outbox(action.message, name)}"
        case IngressResponse():
            expires = f" expires={action.expires_at_ms}" if action.expires_at_ms else ""
            return (
                f"reply {describe_sink(action.sink, name)} {name(action.invocation_id)} "
                f"{describe_result(action.result)}{expires}"
            )
        case IngressSubmitted():
            how = "previously-accepted" if action.previously_accepted else "accepted"
            at = f" at={action.execution_time_ms}" if action.execution_time_ms else ""
            return f"submitted {describe_sink(action.sink, name)} {name(action.invocation_id)} {how}{at}"
        case IngressRejected():
            return (
                f"rejected {describe_sink(action.sink, name)} {name(action.invocation_id)} "
                f'{action.failure_code} "{action.message}"'
            )
    raise TypeError(f"not an action: {action!r}")


def describe_signal_id(signal: InvocationSignal) -> str:
    return f"name={signal.name}" if signal.name is not None else f"idx={signal.index}"


def describe_status(status: InvocationStatus, name: Namer = invocation_name) -> str:
    inv = status.invocation
    parts = [
        status.kind.value,
        str(inv.target),
        f"journal={status.journal_length}",
        f"commands={status.commands}",
    ]
    if status.completions:
        parts.append("completions=(" + ", ".join(map(str, status.completions)) + ")")
    if status.signals:
        parts.append("signals=(" + ", ".join(map(str, status.signals)) + ")")
    if status.signal_names:
        parts.append("signal_names=(" + ", ".join(status.signal_names) + ")")
    if status.response_sinks:
        parts.append("sinks=(" + ", ".join(describe_sink(s, name) for s in status.response_sinks) + ")")
    if status.awaiting is not None:
        a = status.awaiting
        parts.append(f"awaiting=(completions={list(a.completion_ids)} signals={list(a.signal_ids)})")
    if status.inbox_seq:
        parts.append(f"inbox_seq={status.inbox_seq}")
    if status.result is not None:
        parts.append("result=" + describe_result(status.result))
    if status.completed_at_ms:
        parts.append(f"completed={status.completed_at_ms} expires={status.expires_at_ms}")
    parts.append(f"modified={status.modified_at_ms}")
    return " ".join(parts)


def describe_dedup(dedup: Dedup | None) -> str:
    if isinstance(dedup, SelfProposal):
        return f"({dedup.epoch}, {dedup.seq})"
    if isinstance(dedup, ForeignPartition):
        return str(dedup.seq)
    return "none"


def describe_store(store: MemoryStore, name: Namer = invocation_name, tables: tuple[str, ...] = ()) -> str:
    """The store's tables (all, or those named in ``tables``), each in key order."""
    want = set(tables) or {
        "fsm",
        "status",
        "journal",
        "state",
        "promises",
        "locks",
        "inbox",
        "timers",
        "outbox",
    }
    lines: list[str] = []
    if "fsm" in want:
        fields = []
        for key in sorted(store.fsm):
            value = store.fsm[key]
            if key.startswith("dedup:"):
                fields.append(f"dedup[{key[6:]}]={describe_dedup(value)}")  # type: ignore[arg-type]
            elif key == "leader":
                fields.append(f"leader=n{value.node}.g{value.generation}@{value.epoch}")  # type: ignore[attr-defined]
            else:
                fields.append(f"{key}={value}")
        lines.append("fsm " + " ".join(fields))
    if "status" in want:
        lines += [f"status {name(i)}: {describe_status(s, name)}" for i, s in sorted(store.status.items())]
    if "journal" in want:
        for inv_id, entries in sorted(store.journal.items()):
            if entries:
                lines.append(f"journal {name(inv_id)}:")
                lines += [f"  {i} {describe_entry(e)}" for i, e in sorted(entries.items())]
    if "state" in want:
        for (service, key), values in sorted(store.state.items()):
            if values:
                pairs = " ".join(
                    f"{describe_bytes(k)}={describe_bytes(v)}" for k, v in sorted(values.items())
                )
                lines.append(f"state {service}/{key}: {pairs}")
    if "promises" in want:
        for (service, key), rows in sorted(store.promises.items()):
            for promise, row in sorted(rows.items()):
                if row.result is not None:
                    lines.append(f"promise {service}/{key}/{promise}: " + describe_result(row.result))
                else:
                    waiting = ", ".join(f"{name(i)}:{c}" for i, c in row.waiters)
                    lines.append(f"promise {service}/{key}/{promise}: pending waiters=({waiting})")
    if "locks" in want:
        lines += [f"lock {svc}/{key}: {name(i)}" for (svc, key), i in sorted(store.locks.items())]
    if "inbox" in want:
        for (service, key), queued in sorted(store.inbox.items()):
            if queued:
                lines.append(
                    f"inbox {service}/{key}: " + " ".join(f"{s}={name(i)}" for s, i in sorted(queued.items()))
                )
    if "timers" in want:
        lines += ["timer " + describe_timer(t, name) for t in store.timers]
    if "outbox" in want:
        lines += [f"outbox {i} {describe_outbox(m, name)}" for i, m in sorted(store.outbox.items())]
    return "\n".join(lines)

"""The datadriven environment for the partition state machine's golden transcripts.

One `Env` holds N partitions (a `MemoryStore`, a log position, a leader epoch and ESN each) and
turns each directive into log records, applies them with the real `StateMachine`, commits, and
prints the returned actions (`describe_action`) and any drop with its reason. Invocation ids get
short aliases: ``name=`` on ``invoke``, ``child=`` on a call; any other id prints as ``?<hex>``.

Directives (``p=`` picks the partition where it is not implied, default 0; ``ts=`` sets the
clock, which otherwise stays put; leader commands take ``epoch= seq=`` to forge their dedup, ``no-dedup`` to send none):

    env partitions=N                      start over with N partitions
    invoke name= target=Svc/handler | Obj/key/handler [kind=object|workflow]
           [handler=exclusive|shared|workflow] [arg=] [call=REQ | send=REQ] [ik=] [delay=MS]
           [retention=MS] [journal-retention=MS] [headers=(k:v, ...)]
           [p=P: an unkeyed id in P's range] [on=P: apply it there, not where the id routes]
    command inv= type=... [index=N]       an SDK command (types: see `build_command`)
    run-completion inv= id= (value= | failure=CODE:MSG)
    suspend inv= [completions=(..)] [signals=(..)]
    end inv= / fail inv= failure=CODE:MSG  (command and end take fence=, default 0)
    fire [p=] [until=TS]                  fire every timer due by TS (default: the clock)
    timer inv= kind= at= [id=]            fire this timer, whether the tables hold it or not
    signal inv= (idx= | name=) [value= | failure=]   a signal from the ingress or admin API
    kill inv= / purge inv=                Kill, Purge (admin API)
    pause inv= [by=invoker]               Pause: from the admin API, or the invoker's proposal
    resume inv= [deployment=]             Resume (admin API)
                                          (signal, kill, purge, pause, resume: req=N to be told
                                          the outcome, as the admin API is)
    output inv= req=                      the ingress's get-output
    shuffle from=P [only=INDEX]           deliver partition P's outbox (ForeignPartition dedup)
    respond caller= id= callee= (value= | failure=) from= seq=   a forged call response
    truncate p= index=                    TruncateOutbox
    announce p= epoch= [node=]            AnnounceLeader
    repeat [p=] [lsn=N]                   append record N (default: the last) again
    replay [p=] lsn=N                     apply record N again at its own LSN
    garbage [p=]                          a record that does not decode
    dump [p=] [tables=(..)]               the tables
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from processor.core import (
    AnnounceLeader,
    Awaiting,
    CallTarget,
    Command,
    End,
    Envelope,
    Fail,
    Failure,
    ForeignPartition,
    HandlerType,
    IngressSink,
    InvocationResponse,
    InvocationSignal,
    Invoke,
    InvokerEffect,
    JournalCommand,
    Kill,
    MemoryStore,
    Output,
    Pause,
    Purge,
    RecordFormatError,
    Respond,
    Result,
    Resume,
    RunCompletion,
    SelfProposal,
    ServiceInvocation,
    ServiceType,
    Signal,
    StateMachine,
    Suspended,
    Target,
    TimerFired,
    TimerKey,
    TimerKind,
    TruncateOutbox,
    delivery,
    describe_action,
    describe_store,
    encode_envelope,
)
from processor.ids import (
    AwakeableId,
    InvocationId,
    call_invocation_id,
    idempotent_uuid,
    partition_for_key,
    partition_key_of,
    partition_key_range,
    workflow_uuid,
)
from processor.protocol import MessageType, pb
from tests.datadriven import TestCase

DEPLOYMENT = "dp1"
T = MessageType


@dataclass
class Partition:
    index: int
    store: MemoryStore = field(default_factory=MemoryStore)
    log: list[Envelope | bytes] = field(default_factory=list)
    epoch: int = 0
    seq: int = 0


def parse_target(text: str, kind: str | None, handler: str | None) -> Target:
    parts = text.split("/")
    if len(parts) == 2:
        return Target(parts[0], parts[1], ServiceType.SERVICE)
    service, key, name = parts
    service_type = ServiceType.WORKFLOW if kind == "workflow" else ServiceType.VIRTUAL_OBJECT
    default = (
        "workflow"
        if kind == "workflow" and name == "run"
        else ("shared" if kind == "workflow" else "exclusive")
    )
    return Target(service, name, service_type, HandlerType(handler or default), key)


def _pb_failure(failure: Failure) -> pb.Failure:
    return pb.Failure(code=failure.code, message=failure.message)


def parse_failure(text: str) -> Failure:
    code, _, message = text.partition(":")
    return Failure(int(code), message)


class Env:
    def __init__(self, partitions: int = 1) -> None:
        self.partitions = [Partition(i) for i in range(partitions)]
        self.names: dict[bytes, str] = {}
        self.ids: dict[str, bytes] = {}
        self.now = 1000
        self.drops: list[str] = []
        self.machine = StateMachine(on_drop=lambda _envelope, reason: self.drops.append(reason))

    # --- ids ---

    def name(self, raw: bytes) -> str:
        return self.names.get(raw) or "?" + raw.hex()[:12]

    def alias(self, name: str, raw: bytes) -> None:
        """An id keeps its first name: a repeated request (same id) prints as the original."""
        self.names.setdefault(raw, name)
        self.ids[name] = raw

    def id(self, name: str) -> bytes:
        if name not in self.ids:
            raise KeyError(f"no invocation is named {name!r}")
        return self.ids[name]

    def partition_of(self, raw: bytes) -> Partition:
        return self.partitions[partition_for_key(int.from_bytes(raw[:8], "big"), len(self.partitions))]

    def new_id(self, name: str, target: Target, ik: str | None, p: int | None) -> bytes:
        if target.handler_type is HandlerType.WORKFLOW:
            assert target.key is not None
            return InvocationId(
                partition_key_of(target.key), workflow_uuid(target.service, target.key)
            ).to_bytes()
        if ik is not None:
            uuid = idempotent_uuid(target.service, target.handler, ik, target.key)
            return InvocationId(
                partition_key_of(target.key if target.key is not None else ik), uuid
            ).to_bytes()
        digest = hashlib.sha256(name.encode()).digest()
        if target.key is not None:
            pk = partition_key_of(target.key)
        else:
            first, last = partition_key_range(p or 0, len(self.partitions))
            pk = first + int.from_bytes(digest[16:24], "big") % (last - first + 1)
        return InvocationId(pk, int.from_bytes(digest[:16], "big")).to_bytes()

    # --- records ---

    def leader_dedup(self, part: Partition, case: TestCase) -> SelfProposal | None:
        if case.has("no-dedup"):
            return None
        if case.has("epoch"):
            return SelfProposal(case.int_arg("epoch"), case.int_arg("seq"))
        part.seq += 1
        return SelfProposal(part.epoch, part.seq)

    def append(self, part: Partition, record: Envelope | bytes) -> list[str]:
        part.log.append(record)
        return self.apply(part, len(part.log), record)

    def apply(self, part: Partition, lsn: int, record: Envelope | bytes) -> list[str]:
        self.drops.clear()
        txn = part.store.transaction()
        kwargs = {"partition": part.index, "num_partitions": len(self.partitions)}
        try:
            if isinstance(record, bytes):
                actions = self.machine.apply_record(txn, lsn, record, **kwargs)
            else:
                actions = self.machine.apply(txn, lsn, record, **kwargs)
        except RecordFormatError as error:
            return [f"error: {error}"]
        txn.commit()
        out = [f"dropped: {reason}" for reason in self.drops]
        return out + [describe_action(action, self.name) for action in actions]

    def envelope(self, command: Command, dedup: SelfProposal | ForeignPartition | None = None) -> Envelope:
        return Envelope(command, self.now, dedup)

    # --- directives ---

    def handle(self, case: TestCase) -> str:
        if case.has("ts"):
            self.now = case.int_arg("ts")
        handler = getattr(self, "do_" + case.cmd.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"{case.pos}: unknown directive {case.cmd}")
        return "\n".join(handler(case))

    def do_env(self, case: TestCase) -> list[str]:
        self.__init__(case.int_arg("partitions", 1))  # type: ignore[misc]
        return []

    def do_invoke(self, case: TestCase) -> list[str]:
        target = parse_target(
            case.arg("target"), case.arg("kind", "") or None, case.arg("handler", "") or None
        )
        ik = case.arg("ik", "") or None
        name = case.arg("name")
        p = case.int_arg("p") if case.has("p") else None
        raw = self.new_id(name, target, ik, p)
        self.alias(name, raw)
        headers = tuple(tuple(h.split(":", 1)) for h in case.list_arg("headers"))
        invocation = ServiceInvocation(
            invocation_id=raw,
            target=target,
            deployment_id=DEPLOYMENT,
            argument=case.arg("arg", "").encode(),
            headers=headers,  # type: ignore[arg-type]
            response_sink=IngressSink(0, 0, case.int_arg("call")) if case.has("call") else None,
            submit_sink=IngressSink(0, 0, case.int_arg("send")) if case.has("send") else None,
            idempotency_key=ik,
            execution_time_ms=self.now + case.int_arg("delay") if case.has("delay") else 0,
            completion_retention_ms=case.int_arg("retention", 0),
            journal_retention_ms=case.int_arg("journal-retention", 0),
        )
        part = self.partitions[case.int_arg("on")] if case.has("on") else self.partition_of(raw)
        return self.append(part, self.envelope(Invoke(invocation)))

    def effect(self, case: TestCase, command: InvokerEffect, inv: bytes) -> list[str]:
        part = self.partitions[case.int_arg("p")] if case.has("p") else self.partition_of(inv)
        return self.append(part, self.envelope(command, self.leader_dedup(part, case)))

    def do_command(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        part = self.partition_of(inv)
        if case.has("index"):
            index = case.int_arg("index")
        else:
            status = part.store.status.get(inv)
            index = status.commands if status is not None else 1
        type_id, raw, call = self.build_command(case, inv, index)
        return self.effect(case, JournalCommand(inv, index, type_id, raw, call, case.int_arg("fence", 0)), inv)

    def build_command(self, case: TestCase, inv: bytes, index: int) -> tuple[int, bytes, CallTarget | None]:
        kind = case.arg("type")
        cid = case.int_arg("id", 0)
        if kind == "raw":
            return case.int_arg("type-id"), bytes.fromhex(case.arg("hex", "")), None
        if kind == "output":
            if case.has("failure"):
                f = parse_failure(case.arg("failure"))
                m = pb.OutputCommandMessage(failure=pb.Failure(code=f.code, message=f.message))
            else:
                m = pb.OutputCommandMessage(value=pb.Value(content=case.arg("value", "").encode()))
            return T.OUTPUT_COMMAND, m.SerializeToString(), None
        if kind in ("call", "send"):
            target = parse_target(
                case.arg("target"), case.arg("kind", "") or None, case.arg("handler", "") or None
            )
            ik = "" if case.has("empty-ik") else case.arg("ik", "") or None
            fields = {
                "service_name": target.service,
                "handler_name": target.handler,
                "parameter": case.arg("arg", "").encode(),
                "key": case.arg("key", target.key or ""),
                "invocation_id_notification_idx": case.int_arg("idx"),
            }
            if ik is not None:
                fields["idempotency_key"] = ik
            if kind == "call":
                m = pb.CallCommandMessage(result_completion_id=cid, **fields)
                type_id = T.CALL_COMMAND
            else:
                m = pb.OneWayCallCommandMessage(invoke_time=case.int_arg("at", 0), **fields)
                type_id = T.ONE_WAY_CALL_COMMAND
            child = call_invocation_id(
                parent=inv,
                command_index=index,
                service=target.service,
                handler=target.handler,
                key=target.key,
                idempotency_key=ik,
                workflow_run=target.handler_type is HandlerType.WORKFLOW,
            )
            if case.has("child"):
                self.alias(case.arg("child"), child.to_bytes())
            call = (
                None
                if case.has("unresolved")
                else CallTarget(target, DEPLOYMENT, case.int_arg("retention", 0))
            )
            return type_id, m.SerializeToString(), call
        key = case.arg("key", "").encode()
        simple = {
            "set-state": lambda: (
                T.SET_STATE_COMMAND,
                pb.SetStateCommandMessage(key=key, value=pb.Value(content=case.arg("value").encode())),
            ),
            "clear-state": lambda: (T.CLEAR_STATE_COMMAND, pb.ClearStateCommandMessage(key=key)),
            "clear-all-state": lambda: (T.CLEAR_ALL_STATE_COMMAND, pb.ClearAllStateCommandMessage()),
            "get-lazy-state": lambda: (
                T.GET_LAZY_STATE_COMMAND,
                pb.GetLazyStateCommandMessage(key=key, result_completion_id=cid),
            ),
            "get-lazy-state-keys": lambda: (
                T.GET_LAZY_STATE_KEYS_COMMAND,
                pb.GetLazyStateKeysCommandMessage(result_completion_id=cid),
            ),
            "get-eager-state": lambda: (
                T.GET_EAGER_STATE_COMMAND,
                pb.GetEagerStateCommandMessage(key=key, value=pb.Value(content=case.arg("value").encode()))
                if case.has("value")
                else pb.GetEagerStateCommandMessage(key=key, void=pb.Void()),
            ),
            "run": lambda: (
                T.RUN_COMMAND,
                pb.RunCommandMessage(result_completion_id=cid, name=case.arg("name", "")),
            ),
            "sleep": lambda: (
                T.SLEEP_COMMAND,
                pb.SleepCommandMessage(wake_up_time=case.int_arg("wake"), result_completion_id=cid),
            ),
            "get-promise": lambda: (
                T.GET_PROMISE_COMMAND,
                pb.GetPromiseCommandMessage(key=case.arg("key"), result_completion_id=cid),
            ),
            "send-signal": lambda: (
                T.SEND_SIGNAL_COMMAND,
                self.send_signal(case),
            ),
            "peek-promise": lambda: (
                T.PEEK_PROMISE_COMMAND,
                pb.PeekPromiseCommandMessage(key=case.arg("key"), result_completion_id=cid),
            ),
            "complete-promise": lambda: (
                T.COMPLETE_PROMISE_COMMAND,
                pb.CompletePromiseCommandMessage(
                    key=case.arg("key"),
                    result_completion_id=cid,
                    **(
                        {"completion_failure": _pb_failure(parse_failure(case.arg("failure")))}
                        if case.has("failure")
                        else {"completion_value": pb.Value(content=case.arg("value", "").encode())}
                    ),
                ),
            ),
            "complete-awakeable": lambda: (
                T.COMPLETE_AWAKEABLE_COMMAND,
                pb.CompleteAwakeableCommandMessage(
                    awakeable_id=self.awakeable(case.arg("awakeable")),
                    **(
                        {"failure": _pb_failure(parse_failure(case.arg("failure")))}
                        if case.has("failure")
                        else {"value": pb.Value(content=case.arg("value", "").encode())}
                    ),
                ),
            ),
            "attach": lambda: (
                T.ATTACH_INVOCATION_COMMAND,
                pb.AttachInvocationCommandMessage(
                    invocation_id=self.id_text(case.arg("to")), result_completion_id=cid
                ),
            ),
            "get-output": lambda: (
                T.GET_INVOCATION_OUTPUT_COMMAND,
                pb.GetInvocationOutputCommandMessage(
                    invocation_id=self.id_text(case.arg("to")), result_completion_id=cid
                ),
            ),
            "attach-workflow": lambda: (
                T.ATTACH_INVOCATION_COMMAND,
                pb.AttachInvocationCommandMessage(
                    workflow_target=pb.WorkflowTarget(
                        workflow_name=case.arg("service"), workflow_key=case.arg("key")
                    ),
                    result_completion_id=cid,
                ),
            ),
        }
        type_id, message = simple[kind]()
        return type_id, message.SerializeToString(), None

    def id_text(self, name: str) -> str:
        """An alias as the SDK names invocations (``inv_…``); anything else as written."""
        return str(InvocationId.from_bytes(self.ids[name])) if name in self.ids else name

    def awakeable(self, text: str) -> str:
        """``alias:index`` as the SDK's awakeable id (``sign_1…``); anything else as written."""
        name, _, index = text.partition(":")
        if name not in self.ids:
            return text
        return str(AwakeableId(InvocationId.from_bytes(self.ids[name]), int(index)))

    def send_signal(self, case: TestCase) -> pb.SendSignalCommandMessage:
        m = pb.SendSignalCommandMessage(target_invocation_id=self.id_text(case.arg("to")))
        if case.has("name"):
            m.name = case.arg("name")
        else:
            m.idx = case.int_arg("signal")
        if case.has("failure"):
            m.failure.CopyFrom(_pb_failure(parse_failure(case.arg("failure"))))
        elif case.has("value"):
            m.value.content = case.arg("value").encode()
        else:
            m.void.SetInParent()
        return m

    def do_signal(self, case: TestCase) -> list[str]:
        """A signal as the ingress or the admin API sends it (no dedup): idx= or name=."""
        inv = self.id(case.arg("inv"))
        result = None
        if case.has("failure"):
            result = Result(failure=parse_failure(case.arg("failure")))
        elif case.has("value"):
            result = Result(value=case.arg("value").encode())
        name = case.arg("name") if case.has("name") else None
        signal = InvocationSignal(inv, index=case.int_arg("idx", 0), name=name, result=result)
        return self.append(self.partition_of(inv), self.envelope(Signal(signal, self.admin_sink(case))))

    def admin_sink(self, case: TestCase) -> IngressSink | None:
        """The admin API's request number (``req=``), if it waits for the outcome."""
        return IngressSink(0, 0, case.int_arg("req")) if case.has("req") else None

    def do_kill(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        return self.append(self.partition_of(inv), self.envelope(Kill(inv, self.admin_sink(case))))

    def do_pause(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        if case.arg("by", "admin") == "invoker":
            return self.effect(case, Pause(inv), inv)
        return self.append(self.partition_of(inv), self.envelope(Pause(inv, sink=self.admin_sink(case))))

    def do_resume(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        deployment = case.arg("deployment") if case.has("deployment") else None
        command = Resume(inv, deployment, self.admin_sink(case))
        return self.append(self.partition_of(inv), self.envelope(command))

    def do_purge(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        return self.append(self.partition_of(inv), self.envelope(Purge(inv, self.admin_sink(case))))

    def do_output(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        sink = IngressSink(0, 0, case.int_arg("req"))
        return self.append(self.partition_of(inv), self.envelope(Output(inv, sink)))

    def do_run_completion(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        cid = case.int_arg("id")
        if case.has("failure"):
            command = RunCompletion(inv, cid, failure=parse_failure(case.arg("failure")))
        else:
            command = RunCompletion(inv, cid, value=case.arg("value", "").encode())
        return self.effect(case, command, inv)

    def do_suspend(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        awaiting = Awaiting(
            tuple(int(c) for c in case.list_arg("completions")),
            tuple(int(s) for s in case.list_arg("signals")),
        )
        return self.effect(case, Suspended(inv, awaiting), inv)

    def do_end(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        return self.effect(case, End(inv, case.int_arg("fence", 0)), inv)

    def do_fail(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        return self.effect(case, Fail(inv, parse_failure(case.arg("failure"))), inv)

    def do_fire(self, case: TestCase) -> list[str]:
        until = case.int_arg("until", self.now)
        out: list[str] = []
        for part in self.partitions if not case.has("p") else [self.partitions[case.int_arg("p")]]:
            for timer in [t for t in part.store.timers if t.wake_up_ms <= until]:
                out.append(f"p{part.index} fire {timer.kind.value} {self.name(timer.invocation_id)}:")
                record = self.envelope(TimerFired(timer), self.leader_dedup(part, case))
                out += ["  " + line for line in self.append(part, record)]
        return out

    def do_timer(self, case: TestCase) -> list[str]:
        inv = self.id(case.arg("inv"))
        timer = TimerKey(case.int_arg("at"), inv, TimerKind(case.arg("kind")), case.int_arg("id", 0))
        part = self.partition_of(inv)
        return self.append(part, self.envelope(TimerFired(timer), self.leader_dedup(part, case)))

    def do_shuffle(self, case: TestCase) -> list[str]:
        source = self.partitions[case.int_arg("from")]
        out: list[str] = []
        for index, message in sorted(source.store.outbox.items()):
            if case.has("only") and index != case.int_arg("only"):
                continue
            wrapped = delivery(message)
            target = self.partitions[partition_for_key(message.partition_key, len(self.partitions))]
            out.append(f"p{source.index} outbox {index} -> p{target.index}:")
            record = self.envelope(wrapped, ForeignPartition(source.index, index))
            out += ["  " + line for line in self.append(target, record)]
        return out

    def do_respond(self, case: TestCase) -> list[str]:
        caller = self.id(case.arg("caller"))
        if case.has("failure"):
            result = Result(failure=parse_failure(case.arg("failure")))
        else:
            result = Result(value=case.arg("value", "").encode())
        response = InvocationResponse(caller, case.int_arg("id"), self.id(case.arg("callee")), result)
        dedup = ForeignPartition(case.int_arg("from"), case.int_arg("seq"))
        return self.append(self.partition_of(caller), self.envelope(Respond(response), dedup))

    def do_truncate(self, case: TestCase) -> list[str]:
        part = self.partitions[case.int_arg("p", 0)]
        return self.append(
            part, self.envelope(TruncateOutbox(case.int_arg("index")), self.leader_dedup(part, case))
        )

    def do_announce(self, case: TestCase) -> list[str]:
        part = self.partitions[case.int_arg("p", 0)]
        epoch = case.int_arg("epoch")
        part.epoch, part.seq = epoch, 0
        command = AnnounceLeader(case.int_arg("node", 1), 1, epoch)
        return self.append(part, self.envelope(command, SelfProposal(epoch, case.int_arg("seq", 0))))

    def do_repeat(self, case: TestCase) -> list[str]:
        part = self.partitions[case.int_arg("p", 0)]
        lsn = case.int_arg("lsn", len(part.log))
        return self.append(part, part.log[lsn - 1])

    def do_replay(self, case: TestCase) -> list[str]:
        part = self.partitions[case.int_arg("p", 0)]
        lsn = case.int_arg("lsn")
        return self.apply(part, lsn, part.log[lsn - 1])

    def do_garbage(self, case: TestCase) -> list[str]:
        part = self.partitions[case.int_arg("p", 0)]
        # The format byte, then a byte msgpack never uses.
        return self.apply(
            part, len(part.log) + 1, encode_envelope(self.envelope(TruncateOutbox(0)))[:1] + b"\xc1"
        )

    def do_dump(self, case: TestCase) -> list[str]:
        part = self.partitions[case.int_arg("p", 0)]
        text = describe_store(part.store, self.name, tuple(case.list_arg("tables")))
        return text.splitlines()

"""Deterministic simulation of partition processors: replicas, leaders, an at-least-once log.

One `random.Random(seed)` draws the run (`SwarmConfig`) and every choice in it. Per partition
there is a log (encoded records, appended in one thread) and 2-3 replicas, each a `MemoryStore`
that applies the log in batches through the real `StateMachine` and commits, or crashes first
and loses the uncommitted transaction. A controller makes replicas leaders by claiming the next
epoch; a new leader appends AnnounceLeader and acts only once it has applied it, and an old
leader keeps proposing until it reads the new announcement, so both epochs' proposals land
interleaved. Leaders run a fake invoker (`sdk.Attempt`: scripted handlers that replay their
journal), a timer service and the outbox shuffle, all driven by the actions of their commits.

At-least-once everywhere: a record may be appended again later (a retried append, a re-append
after a seal), clients retry requests, a restarted shuffle redelivers, attempts crash and are
retried, leaders crash and lose the actions of their last commit.

Checked after every commit (`Checker`): replicas that applied LSN n have identical tables; a
run step's value, once a handler used it, never changes and the step never runs again; at most
one exclusive handler per key. After the safety phase, faults stop and the liveness phase must
answer every request: counters end at exactly the number of distinct idempotency keys that
incremented them, and each answer is the handler's (the same for every retry of a request).
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from processor.core import (
    AbortAttempt,
    Action,
    AnnounceLeader,
    Command,
    End,
    Envelope,
    ForeignPartition,
    ForwardNotification,
    HandlerType,
    IngressRejected,
    IngressResponse,
    IngressSink,
    IngressSubmitted,
    InvocationSignal,
    Invoke,
    InvokeAction,
    InvokerEffect,
    JournalCommand,
    JournalEntry,
    Kill,
    MemoryStore,
    MemoryTables,
    NewOutboxMessage,
    OutboxMessage,
    Pause,
    RegisterTimer,
    Result,
    Resume,
    SelfProposal,
    ServiceInvocation,
    ServiceType,
    Signal,
    StateMachine,
    StatusKind,
    Suspended,
    Target,
    TimerFired,
    TimerKey,
    TruncateOutbox,
    delivery,
    encode_envelope,
)
from processor.core import Awaiting as AwaitingSet
from processor.ids import new_invocation_id, partition_for_key, partition_key_of
from processor.protocol import MessageType, is_notification

from .sdk import Attempt, greeter_target, notification_of, signal_of

FAR_FUTURE_MS = 10**12
CLIENT_TIMEOUT_MS = 400


class InvariantViolation(AssertionError):
    pass


@dataclass(frozen=True)
class SwarmConfig:
    partitions: int
    replicas: int
    requests: int
    counter_keys: int
    max_batch: int
    dup_rate: float
    dup_land_rate: float
    """How eagerly pending duplicates land: low rates make them land long after the original."""
    client_retry_rate: float
    crash_rate: float
    leader_change_rate: float
    attempt_crash_rate: float
    suspend_rate: float
    call_retention_ms: int
    """Kept by called invocations: 0 tests that dedup alone keeps them from running twice."""
    retry_waits: bool
    """The invoker's rule: a crashed attempt is retried only once its proposals are applied.
    Without it the new attempt re-proposes commands the old one still has in flight, and only
    the state machine's command index check keeps them out of the journal."""
    safety_steps: int
    liveness_steps: int

    @staticmethod
    def draw(rng: random.Random) -> SwarmConfig:
        faulty = rng.random() < 0.9
        return SwarmConfig(
            partitions=rng.randint(1, 3),
            replicas=rng.randint(2, 3),
            requests=rng.randint(4, 10),
            counter_keys=rng.randint(1, 2),
            max_batch=rng.choice((1, 2, 4, 8)),
            dup_rate=rng.choice((0.0, 0.05, 0.2)) if faulty else 0.0,
            dup_land_rate=rng.choice((1.0, 0.1, 0.02)),
            client_retry_rate=rng.choice((0.0, 0.02, 0.1)) if faulty else 0.0,
            crash_rate=rng.choice((0.0, 0.01, 0.05)) if faulty else 0.0,
            leader_change_rate=rng.choice((0.0, 0.005, 0.02)) if faulty else 0.0,
            attempt_crash_rate=rng.choice((0.0, 0.02, 0.1)) if faulty else 0.0,
            suspend_rate=rng.choice((0.0, 0.1, 0.5)),
            call_retention_ms=rng.choice((0, FAR_FUTURE_MS)),
            retry_waits=rng.random() < 0.5,
            safety_steps=rng.choice((120, 250, 400)),
            liveness_steps=4000,
        )

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


# --- the world ------------------------------------------------------------------------------


@dataclass
class Request:
    rid: int
    target: Target
    arg: bytes
    invocation_id: bytes
    partition: int
    record: bytes
    send: bool
    idempotency_key: str | None
    sent_at: int = -1
    answers: list[Any] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return bool(self.answers)


@dataclass
class Leader:
    epoch: int
    active: bool = False
    seq: int = 0
    attempts: dict[bytes, Attempt] = field(default_factory=dict)
    retries: dict[bytes, int] = field(default_factory=dict)
    """Invocations whose attempt crashed -> the ESN of their last proposal (retry once applied)."""
    last_seq: dict[bytes, int] = field(default_factory=dict)
    timers: list[TimerKey] = field(default_factory=list)
    outbox: dict[int, OutboxMessage] = field(default_factory=dict)


@dataclass
class Replica:
    partition: int
    node: int
    store: MemoryStore = field(default_factory=MemoryStore)
    applied: int = 0
    generation: int = 1
    leader: Leader | None = None
    starts: dict[bytes, int] = field(default_factory=dict)
    """How often each invocation was started (its Input journaled) in committed batches."""


class StartSpy(MemoryTables):
    """A transaction that notes every invocation it starts (journal entry 0 written)."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.started: list[bytes] = []

    def put_journal(self, invocation_id: bytes, index: int, entry: JournalEntry) -> None:
        if index == 0:
            self.started.append(invocation_id)
        super().put_journal(invocation_id, index, entry)


@dataclass
class SimResult:
    seed: int
    config: SwarmConfig
    steps: int
    records: int
    drops: int
    leader_changes: int
    crashes: int
    duplicates: int
    run_executions: int
    zombie_executions: int
    answers: int


class Simulation:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = SwarmConfig.draw(self.rng)
        cfg = self.config
        self.now = 1_000_000
        self.machine = StateMachine(on_drop=self._dropped)
        self.logs: list[list[bytes]] = [[] for _ in range(cfg.partitions)]
        self.pipelines: list[dict[tuple[int, int], deque[bytes]]] = [{} for _ in range(cfg.partitions)]
        self.late: list[list[bytes]] = [[] for _ in range(cfg.partitions)]
        self.epochs = [0] * cfg.partitions
        self.replicas = [[Replica(p, n) for n in range(cfg.replicas)] for p in range(cfg.partitions)]
        self.checker = Checker(self)
        self.requests: list[Request] = []
        self.workload = self._draw_workload()
        self.faults = True
        self.drops = self.leader_changes = self.crashes = self.duplicates = 0
        self.lost_leader = False
        self.next_timeout_check = 0
        for p in range(cfg.partitions):
            self._elect(p)

    # --- workload ---

    def _draw_workload(self) -> list[tuple[Target, bytes, str | None, bool]]:
        keys = ["alice", "bob", "carl", "dora", "fred", "hank"]
        out: list[tuple[Target, bytes, str | None, bool]] = []
        for i in range(self.config.requests):
            kind = self.rng.choice(("add", "add", "three", "call", "nap", "send"))
            if self.rng.random() < 0.3:
                kind = self.rng.choice(("workflow", "awakeable", "long"))
            if kind == "add":
                key = f"c{self.rng.randrange(self.config.counter_keys)}"
                target = Target("Counter", "add", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE, key)
                out.append((target, b"", f"add-{i}", False))
            elif kind == "three":
                ik = f"three-{i}" if self.rng.random() < 0.5 else None
                out.append((Target("Steps", "three", ServiceType.SERVICE), b"", ik, False))
            elif kind == "call":
                out.append(
                    (
                        Target("Caller", "run", ServiceType.SERVICE),
                        self.rng.choice(keys).encode(),
                        None,
                        False,
                    )
                )
            elif kind == "nap":
                out.append(
                    (
                        Target("Sleeper", "nap", ServiceType.SERVICE),
                        str(self.rng.randint(1, 60)).encode(),
                        None,
                        False,
                    )
                )
            elif kind == "workflow":
                # A run waiting on its promise, and two confirms racing to complete it.
                key = f"w{i}"
                run = Target("Signup", "run", ServiceType.WORKFLOW, HandlerType.WORKFLOW, key)
                confirm = Target("Signup", "confirm", ServiceType.WORKFLOW, HandlerType.SHARED, key)
                out += [(run, b"", None, False), (confirm, b"a", None, False), (confirm, b"b", None, False)]
            elif kind == "awakeable":
                # A waiter on an awakeable, resolved by a handler (and by the ingress, see _control).
                out.append((Target("Waiter", "wait", ServiceType.SERVICE), b"", None, False))
                out.append(
                    (Target("Resolver", "resolve", ServiceType.SERVICE), b"@%d" % (len(out) - 1), None, False)
                )
            elif kind == "long":
                # Cancelled or killed by the admin (see _control): it would sleep for ever.
                how = self.rng.choice((b"cancel", b"kill"))
                out.append((Target("Long", "wait", ServiceType.SERVICE), how, None, False))
            else:
                out.append((greeter_target(self.rng.choice(keys)), b"mail", None, True))
        return out

    def _issue(self) -> None:
        target, arg, ik, send = self.workload[len(self.requests)]
        rid = len(self.requests) + 1
        if target.service == "Resolver":
            waiter = self.requests[int(arg[1:])]
            arg = waiter.invocation_id.hex().encode() + b":h%d" % rid
        inv = new_invocation_id(
            service=target.service,
            handler=target.handler,
            key=target.key,
            idempotency_key=ik,
            rng=self.rng,
            now_ms=self.now,
            workflow_run=target.handler_type is HandlerType.WORKFLOW,
        )
        sink = IngressSink(0, 0, rid)
        invocation = ServiceInvocation(
            invocation_id=inv.to_bytes(),
            target=target,
            deployment_id="dp1",
            argument=arg,
            response_sink=None if send else sink,
            submit_sink=sink if send else None,
            idempotency_key=ik,
            execution_time_ms=self.now + 30 if send else 0,
            completion_retention_ms=FAR_FUTURE_MS,
            journal_retention_ms=FAR_FUTURE_MS,  # kept, for the final check of every journal
        )
        partition = partition_for_key(inv.partition_key, self.config.partitions)
        record = encode_envelope(Envelope(Invoke(invocation), self.now))
        request = Request(rid, target, arg, inv.to_bytes(), partition, record, send, ik, self.now)
        self.requests.append(request)
        self._append(partition, record)

    # --- the log ---

    def _append(self, partition: int, record: bytes) -> None:
        self.logs[partition].append(record)
        if self.faults and self.rng.random() < self.config.dup_rate:
            self.late[partition].append(record)

    def _propose(self, replica: Replica, command: Command) -> None:
        leader = replica.leader
        assert leader is not None
        leader.seq += 1
        record = encode_envelope(Envelope(command, self.now, SelfProposal(leader.epoch, leader.seq)))
        self.pipelines[replica.partition].setdefault((replica.node, leader.epoch), deque()).append(record)
        invocation_id = getattr(command, "invocation_id", None)
        if invocation_id is not None:
            leader.last_seq[invocation_id] = leader.seq

    def _flush_one(self) -> bool:
        queues = [
            (p, key) for p in range(self.config.partitions) for key, q in self.pipelines[p].items() if q
        ]
        if not queues:
            return False
        p, key = self.rng.choice(queues)
        self._append(p, self.pipelines[p][key].popleft())
        return True

    # --- leadership ---

    def _elect(self, partition: int) -> None:
        replica = self.rng.choice(self.replicas[partition])
        self.epochs[partition] += 1
        epoch = self.epochs[partition]
        replica.leader = Leader(epoch)
        self.leader_changes += 1
        announcement = AnnounceLeader(replica.node, replica.generation, epoch)
        record = encode_envelope(Envelope(announcement, self.now, SelfProposal(epoch, 0)))
        self.pipelines[partition].setdefault((replica.node, epoch), deque()).append(record)

    def _leaderless(self, partition: int) -> bool:
        """No replica leads or is about to (a candidate whose announcement may still win)."""
        return all(r.leader is None for r in self.replicas[partition])

    # --- applying ---

    def _dropped(self, _envelope: Envelope, _reason: str) -> None:
        self.drops += 1

    def _apply_batch(self, replica: Replica) -> bool:
        log = self.logs[replica.partition]
        if replica.applied >= len(log):
            return False
        end = min(len(log), replica.applied + self.rng.randint(1, self.config.max_batch))
        txn = StartSpy(replica.store)
        actions: list[Action] = []
        for lsn in range(replica.applied + 1, end + 1):
            actions += self.machine.apply_record(
                txn, lsn, log[lsn - 1], partition=replica.partition, num_partitions=self.config.partitions
            )
        if self.faults and self.rng.random() < self.config.crash_rate:
            self._crash(replica)  # the transaction is never committed
            return True
        txn.commit()
        replica.applied = end
        self.checker.committed(replica, txn.started)
        if self._follow_leadership(replica):
            return True  # just activated: the scan of the tables replaces this batch's actions
        if replica.leader is not None and replica.leader.active:
            if self.faults and self.rng.random() < self.config.crash_rate:
                self._crash(replica)  # committed, but the actions die with the process
                return True
            for action in actions:
                self._dispatch(replica, action)
        return True

    def _crash(self, replica: Replica) -> None:
        self.crashes += 1
        self.lost_leader = True
        replica.leader = None
        replica.generation += 1

    def _follow_leadership(self, replica: Replica) -> bool:
        """Step down when a newer epoch is announced, take over when ours is; True on takeover."""
        announced = replica.store.fsm.get("leader")
        leader = replica.leader
        if leader is None or announced is None:
            return False
        assert isinstance(announced, AnnounceLeader)
        if announced.epoch > leader.epoch:
            replica.leader = None  # deposed: stop acting, drop the attempts
            self.lost_leader = True
        elif announced.epoch == leader.epoch and not leader.active:
            self._activate(replica)
            return True
        return False

    def _activate(self, replica: Replica) -> None:
        """The leader read its own announcement: rebuild its shells from the tables."""
        leader = replica.leader
        assert leader is not None
        if self.epochs[replica.partition] != leader.epoch:
            # The shell checks the metadata store before it takes over: a newer epoch was
            # claimed meanwhile, so this one would only be a zombie.
            replica.leader = None
            self.lost_leader = True
            return
        leader.active = True
        store = replica.store
        leader.timers = list(store.timers)
        leader.outbox = dict(sorted(store.outbox.items()))
        for inv_id, status in sorted(store.status.items()):
            if status.kind is StatusKind.INVOKED:
                self._start_attempt(replica, inv_id)

    # --- the leader's shells ---

    def _dispatch(self, replica: Replica, action: Action) -> None:
        leader = replica.leader
        assert leader is not None
        match action:
            case InvokeAction():
                self._start_attempt(replica, action.invocation_id)
            case ForwardNotification():
                attempt = leader.attempts.get(action.invocation_id)
                if attempt is not None:
                    attempt.notify(action.entry)
            case AbortAttempt():
                leader.attempts.pop(action.invocation_id, None)
            case RegisterTimer():
                leader.timers.append(action.timer)
            case NewOutboxMessage():
                leader.outbox[action.index] = action.message
            case IngressResponse():
                result = action.result
                if result.failure is not None:
                    self._answer(action.sink, action.invocation_id, ("failure", result.failure.code))
                else:
                    self._answer(action.sink, action.invocation_id, ("value", result.value))
            case IngressSubmitted():
                self._answer(action.sink, action.invocation_id, ("submitted",))
            case IngressRejected():
                self._answer(action.sink, action.invocation_id, ("rejected", action.failure_code))

    def _answer(self, sink: IngressSink, invocation_id: bytes, answer: Any) -> None:
        request = self.requests[sink.request_id - 1]
        if request.invocation_id != invocation_id:
            raise InvariantViolation(f"request {request.rid} answered for another invocation")
        request.answers.append(answer)

    def _start_attempt(self, replica: Replica, inv_id: bytes) -> None:
        leader = replica.leader
        assert leader is not None
        status = replica.store.status.get(inv_id)
        if status is None or status.kind is not StatusKind.INVOKED or inv_id in leader.attempts:
            return
        leader.retries.pop(inv_id, None)
        journal = [entry for _, entry in sorted(replica.store.journal.get(inv_id, {}).items())]
        partition = replica.partition

        def execute_run(inv_id: bytes, completion_id: int) -> bytes:
            zombie = self.epochs[partition] != leader.epoch
            return self.checker.execute_run(inv_id, completion_id, zombie=zombie)

        leader.attempts[inv_id] = attempt = Attempt(
            inv_id,
            status.invocation.target,
            journal,
            lambda: self.now,
            execute_run,
            self.checker.use_run,
            self.config.call_retention_ms,
        )
        attempt.fence = status.fence  # the invoker stamps its attempt's effects with it

    def _step_attempt(self, replica: Replica) -> bool:
        leader = replica.leader
        assert leader is not None and leader.active
        if not leader.attempts:
            return False
        inv_id = self.rng.choice(list(leader.attempts))
        attempt = leader.attempts[inv_id]
        if self.faults and self.rng.random() < self.config.attempt_crash_rate:
            del leader.attempts[inv_id]
            leader.retries[inv_id] = leader.last_seq.get(inv_id, 0)
            return True
        if attempt.waiting:
            if self.rng.random() < self.config.suspend_rate:
                del leader.attempts[inv_id]
                self._propose(replica, Suspended(inv_id, AwaitingSet(*attempt.awaiting()), attempt.fence))
            return False
        effects: list[InvokerEffect] = attempt.step()
        for effect in effects:
            if isinstance(effect, JournalCommand | End):
                effect = msgspec.structs.replace(effect, fence=attempt.fence)
            self._propose(replica, effect)
        if attempt.finished:
            del leader.attempts[inv_id]
        return bool(effects) or attempt.finished

    def _retry(self, replica: Replica) -> bool:
        """Restart crashed attempts whose proposals have all been applied (the invoker's rule:
        a new attempt must replay everything the old one proposed)."""
        leader = replica.leader
        assert leader is not None
        mark = replica.store.fsm.get("dedup:self")
        applied = (mark.epoch, mark.seq) if isinstance(mark, SelfProposal) else (0, 0)
        for inv_id, seq in list(leader.retries.items()):
            if applied >= (leader.epoch, seq) or not self.config.retry_waits:
                del leader.retries[inv_id]
                self._start_attempt(replica, inv_id)
                return True
        return False

    def _fire_timer(self, replica: Replica) -> bool:
        leader = replica.leader
        assert leader is not None
        due = sorted(t for t in leader.timers if t.wake_up_ms <= self.now)
        if not due:
            return False
        leader.timers.remove(due[0])
        self._propose(replica, TimerFired(due[0]))
        return True

    def _shuffle(self, replica: Replica) -> bool:
        leader = replica.leader
        assert leader is not None
        if not leader.outbox:
            return False
        index = min(leader.outbox)
        message = leader.outbox.pop(index)
        wrapped = delivery(message)
        target = partition_for_key(message.partition_key, self.config.partitions)
        self._append(
            target, encode_envelope(Envelope(wrapped, self.now, ForeignPartition(replica.partition, index)))
        )
        self._propose(replica, TruncateOutbox(index))
        return True

    # --- the loop ---

    def step(self) -> bool:
        """One randomly chosen event; False when nothing could happen."""
        cfg = self.config
        rng = self.rng
        self.now += rng.randint(0, 3)
        roll = rng.random()
        if self.faults and roll < cfg.leader_change_rate:
            self._elect(rng.randrange(cfg.partitions))
            return True
        if self.lost_leader:
            self.lost_leader = False
            for p in range(cfg.partitions):
                if self._leaderless(p):
                    self._elect(p)  # the controller notices and places a new leader
                    return True
        choices = []
        if len(self.requests) < len(self.workload):
            choices.append(self._issue)
        if any(self.late) and rng.random() < cfg.dup_land_rate:
            choices.append(self._late_duplicate)
        choices += [self._flush_one, self._apply_any, self._leader_work, self._leader_work]
        if self.faults and rng.random() < cfg.client_retry_rate:
            choices.append(self._client_retry)
        if rng.random() < 0.1:
            choices.append(self._control)
        # Clients also retry what stays unanswered for long: an answer dies with a leader that
        # crashes between its commit and its replies, so even the liveness phase needs this.
        if self.now >= self.next_timeout_check:
            self.next_timeout_check = self.now + CLIENT_TIMEOUT_MS // 8
            overdue = [
                r for r in self.requests if not r.answered and self.now - r.sent_at > CLIENT_TIMEOUT_MS
            ]
            if overdue:
                return self._resend(overdue[0])
        return rng.choice(choices)() is not False

    def _control(self) -> bool:
        """The outside world acts on waiting invocations: the ingress resolves an awakeable,
        the admin API cancels or kills a long sleeper, and pauses and resumes it on the way (a
        cancel must reach a paused one too). Repeats are harmless (a signal is delivered once;
        a kill of an ended invocation is dropped)."""
        waiting = [r for r in self.requests if not r.answered and r.target.service in ("Waiter", "Long")]
        if not waiting:
            return False
        request = self.rng.choice(waiting)
        inv = request.invocation_id
        command: Command
        if request.target.service == "Waiter":
            command = Signal(InvocationSignal(inv, index=17, result=Result(b"i%d" % request.rid)))
        elif self.rng.random() < 0.4:
            command = self.rng.choice((Pause(inv), Resume(inv)))
        elif request.arg == b"cancel":
            command = Signal(InvocationSignal(inv, index=1))
        else:
            command = Kill(inv)
        self._append(request.partition, encode_envelope(Envelope(command, self.now)))
        return True

    def _late_duplicate(self) -> bool:
        partitions = [p for p in range(self.config.partitions) if self.late[p]]
        p = self.rng.choice(partitions)
        record = self.late[p].pop(self.rng.randrange(len(self.late[p])))
        self.logs[p].append(record)
        self.duplicates += 1
        return True

    def _client_retry(self) -> bool:
        waiting = [r for r in self.requests if not r.answered]
        if not waiting:
            return False
        return self._resend(self.rng.choice(waiting))

    def _resend(self, request: Request) -> bool:
        request.sent_at = self.now
        self._append(request.partition, request.record)
        return True

    def _apply_any(self) -> bool:
        behind = [r for row in self.replicas for r in row if r.applied < len(self.logs[r.partition])]
        if not behind:
            return False
        return self._apply_batch(self.rng.choice(behind))

    def _leader_work(self) -> bool:
        leaders = [r for row in self.replicas for r in row if r.leader is not None and r.leader.active]
        if not leaders:
            return False
        replica = self.rng.choice(leaders)
        work = [self._step_attempt, self._retry, self._fire_timer, self._shuffle]
        self.rng.shuffle(work)
        return any(do(replica) for do in work)

    def _quiet(self) -> bool:
        """Nothing left to do: every request answered, every log applied everywhere."""
        if len(self.requests) < len(self.workload) or not all(r.answered for r in self.requests):
            return False
        return all(
            r.applied == len(self.logs[r.partition]) and not any(self.pipelines[r.partition].values())
            for row in self.replicas
            for r in row
        )

    def run(self) -> SimResult:
        steps = 0
        for _ in range(self.config.safety_steps):
            self.step()
            steps += 1
        self.faults = False
        self.late = [[] for _ in range(self.config.partitions)]
        idle = 0
        for _ in range(self.config.liveness_steps):
            if self._quiet():
                break
            idle = 0 if self.step() else idle + 1
            steps += 1
            if idle > 8:
                self.now += 10  # everything waits for time (sleeps, delayed sends, client timeouts)
        else:
            stuck = [r.rid for r in self.requests if not r.answered]
            raise InvariantViolation(f"liveness: requests {stuck} of {len(self.workload)} unanswered")
        self.checker.final()
        return SimResult(
            self.seed,
            self.config,
            steps,
            sum(len(log) for log in self.logs),
            self.drops,
            self.leader_changes,
            self.crashes,
            self.duplicates,
            self.checker.run_executions,
            self.checker.zombie_executions,
            sum(len(r.answers) for r in self.requests),
        )


# --- invariants -----------------------------------------------------------------------------

_ENCODER = msgspec.msgpack.Encoder()


def digest(store: MemoryStore) -> bytes:
    """Order-independent fingerprint of every table (the same content -> the same bytes)."""
    tables = (
        sorted(store.fsm.items()),
        sorted(store.status.items()),
        sorted((k, sorted(v.items())) for k, v in store.journal.items() if v),
        sorted((k, sorted(v.items())) for k, v in store.state.items() if v),
        sorted((k, sorted(v.items())) for k, v in store.promises.items() if v),
        sorted(store.locks.items()),
        sorted((k, sorted(v.items())) for k, v in store.inbox.items() if v),
        store.timers,
        sorted(store.outbox.items()),
    )
    return hashlib.blake2b(_ENCODER.encode(tables), digest_size=16).digest()


class Checker:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.digests: list[dict[int, bytes]] = [{} for _ in range(sim.config.partitions)]
        self.used: dict[tuple[bytes, int], bytes] = {}
        self.run_executions = 0
        self.zombie_executions = 0

    def committed(self, replica: Replica, started: list[bytes]) -> None:
        for inv_id in started:
            replica.starts[inv_id] = replica.starts.get(inv_id, 0) + 1
            if replica.starts[inv_id] > 1:
                raise InvariantViolation(f"invocation {inv_id.hex()} started twice")
        fingerprint = digest(replica.store)
        seen = self.digests[replica.partition].setdefault(replica.applied, fingerprint)
        if seen != fingerprint:
            raise InvariantViolation(
                f"partition {replica.partition}: replica {replica.node} differs from another replica at LSN {replica.applied}"
            )
        self._one_exclusive_per_key(replica)

    def _one_exclusive_per_key(self, replica: Replica) -> None:
        holders: dict[tuple[str, str], bytes] = {}
        for inv_id, status in replica.store.status.items():
            target = status.invocation.target
            if target.exclusive and status.kind in (StatusKind.INVOKED, StatusKind.SUSPENDED):
                key = (target.service, target.key or "")
                if key in holders:
                    raise InvariantViolation(f"two exclusive handlers run on {key}")
                holders[key] = inv_id
                if replica.store.locks.get(key) != inv_id:
                    raise InvariantViolation(f"{key} runs an exclusive handler that does not hold its lock")

    def _journal_once(self, inv_id: bytes, journal: list[JournalEntry]) -> None:
        """Each completion is journaled once, and a run's is the value its handler used."""
        seen: set[int] = set()
        signals: set[int] = set()
        for entry in journal:
            signal = signal_of(entry)
            if signal is not None:
                if signal[0] in signals:
                    raise InvariantViolation(f"signal {signal[0]} of {inv_id.hex()} is journaled twice")
                signals.add(signal[0])
                continue
            if not is_notification(entry.type_id):
                continue
            found = notification_of(entry)
            assert found is not None
            completion_id, value = found
            if completion_id in seen:
                raise InvariantViolation(f"completion {completion_id} of {inv_id.hex()} is journaled twice")
            seen.add(completion_id)
            used = self.used.get((inv_id, completion_id))
            if entry.type_id == MessageType.RUN_COMPLETION and used is not None and used != value:
                raise InvariantViolation(
                    f"run {completion_id} journaled {value!r}, its handler used {used!r}"
                )

    def execute_run(self, inv_id: bytes, completion_id: int, *, zombie: bool) -> bytes:
        """A step runs. A leader whose epoch was superseded (it has not read the announcement
        yet) may run a step again from its stale tables, as in Restate: that zombie's
        proposals are dropped, so no handler ever sees its value; every other leader must
        find a used step's result in its journal."""
        if (inv_id, completion_id) in self.used and not zombie:
            raise InvariantViolation(f"run {completion_id} runs again after a handler used its result")
        self.run_executions += 1
        self.zombie_executions += zombie
        return f"v{self.sim.rng.randrange(10**6)}".encode()

    def use_run(self, inv_id: bytes, completion_id: int, value: bytes) -> None:
        first = self.used.setdefault((inv_id, completion_id), value)
        if first != value:
            raise InvariantViolation(f"run {completion_id}'s value changed from {first!r} to {value!r}")

    def _workflows_and_awakeables(self) -> None:
        """Each workflow run returns the value of the one confirm that completed its promise
        (the other got "dup"); each waiter returns the value of one of its resolutions."""
        runs: dict[str, Request] = {}
        confirms: dict[str, list[Request]] = {}
        for request in self.sim.requests:
            name = f"{request.target.service}/{request.target.handler}"
            if name == "Signup/run":
                runs[request.target.key or ""] = request
            elif name == "Signup/confirm":
                confirms.setdefault(request.target.key or "", []).append(request)
            elif name == "Waiter/wait":
                resolvers = [
                    r
                    for r in self.sim.requests
                    if r.target.service == "Resolver"
                    and r.arg.startswith(request.invocation_id.hex().encode())
                ]
                allowed = {b"i%d" % request.rid, *(b"h%d" % r.rid for r in resolvers)}
                if _answer_value(request) not in allowed:
                    raise InvariantViolation(
                        f"waiter {request.rid} returned {request.answers[0]}, not one of {allowed}"
                    )
            elif name == "Resolver/resolve" and _answer_value(request) != b"done":
                raise InvariantViolation(f"resolver {request.rid} answered {request.answers[0]}")
        for key, run in runs.items():
            outcomes = {c.arg: _answer_value(c) for c in confirms.get(key, [])}
            winners = [arg for arg, outcome in outcomes.items() if outcome == b"ok"]
            if len(winners) != 1 or set(outcomes.values()) - {b"ok", b"dup"}:
                raise InvariantViolation(f"workflow {key}: the confirms answered {outcomes}")
            if _answer_value(run) != winners[0]:
                raise InvariantViolation(
                    f"workflow {key}: run returned {run.answers[0]}, the promise got {winners[0]!r}"
                )

    def final(self) -> None:
        sim = self.sim
        for row in sim.replicas:
            stores = [digest(r.store) for r in row]
            if len(set(stores)) != 1:
                raise InvariantViolation(f"partition {row[0].partition}: replicas end with different tables")
        for row in sim.replicas:
            for inv_id, entries in row[0].store.journal.items():
                self._journal_once(inv_id, [e for _, e in sorted(entries.items())])
        adds: dict[str, list[int]] = {}
        for request in sim.requests:
            kinds = {a[0] for a in request.answers}
            if len(set(request.answers)) != 1:
                raise InvariantViolation(f"request {request.rid} got different answers {request.answers}")
            answer = request.answers[0]
            if request.send:
                if kinds != {"submitted"}:
                    raise InvariantViolation(f"send {request.rid} answered {answer}")
                continue
            name = f"{request.target.service}/{request.target.handler}"
            if name == "Long/wait":
                if answer != ("failure", 409):
                    raise InvariantViolation(f"long {request.rid} ({request.arg!r}) answered {answer}")
                continue
            value = answer[1]
            if name == "Counter/add":
                adds.setdefault(request.target.key or "", []).append(int(value))
            elif name == "Caller/run" and value != b"hello " + request.arg:
                raise InvariantViolation(f"caller {request.rid} returned {value!r}")
            elif name == "Sleeper/nap" and value != b"slept":
                raise InvariantViolation(f"nap {request.rid} returned {value!r}")
            elif name == "Steps/three":
                used = b"|".join(self.used.get((request.invocation_id, c), b"?") for c in (1, 2, 3))
                if value != used:
                    raise InvariantViolation(
                        f"three {request.rid} returned {value!r}, its steps were {used!r}"
                    )
        self._workflows_and_awakeables()
        for key, values in adds.items():
            if sorted(values) != list(range(1, len(values) + 1)):
                raise InvariantViolation(f"counter {key}: the adds returned {sorted(values)}")
            owner = partition_for_key(partition_key_of(key), sim.config.partitions)
            for replica in sim.replicas[owner]:
                count = replica.store.state.get(("Counter", key), {}).get(b"count")
                if count is None or int(count) != len(values):
                    raise InvariantViolation(f"counter {key} is {count!r} after {len(values)} adds")


def _answer_value(request: Request) -> Any:
    kind, value = request.answers[0][:2]
    if kind != "value":
        raise InvariantViolation(f"request {request.rid} answered {request.answers[0]}")
    return value


def run_seed(seed: int) -> SimResult:
    return Simulation(seed).run()

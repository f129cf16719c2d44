"""One partition on one node: apply its log to the partition store, and lead it when told to.

    follower:   read the log from applied LSN + 1; apply each batch of records with the state
                machine in one transaction; commit (state, applied LSN, dedup in one batch)
    candidate:  claimed epoch E by compare-and-set (metadata ``pp_epoch_<p>``) and appended
                AnnounceLeader(E); applies as a follower until it reads its own announcement
    leader:     after applying its announcement (and seeing E is still the claimed epoch), runs
                the side effects of what it applies: the invoker, the timers, the shuffle, the
                ingress replies; everything they decide goes back through the log as its own
                proposals (dedup SelfProposal(E, seq)), never into the store directly

Leader, followers and a restarted replica run the same apply loop; only the dispatch of actions
differs. A leader that reads a higher epoch's announcement, or whose proposal fails, steps down.
A store ahead of its log (applied LSN at or past the log's tail) stops the partition with a
clear error instead of serving from a store that belongs to another log.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bifrost.bifrost import LogRecord, LogTrimGap
from bifrost.core._types import GenerationalNodeId
from bifrost.errors import BatchTooLarge, RecordTooLarge
from bifrost.limits import batch_cost
from processor.core import (
    AbortAttempt,
    AckRunCompletion,
    Action,
    AnnounceLeader,
    Command,
    DeleteTimer,
    Envelope,
    ForwardNotification,
    IngressRejected,
    IngressResponse,
    IngressSubmitted,
    InvokeAction,
    InvokerEffect,
    JournalEntry,
    NewOutboxMessage,
    RecordFormatError,
    RegisterTimer,
    SelfProposal,
    StateMachine,
    StatusKind,
    decode_envelope,
    encode_envelope,
)
from processor.shuffle import Shuffle
from processor.store.partition_store import PartitionHandle
from processor.timers import TimerService

log = logging.getLogger(__name__)

# Records applied in one transaction at most (Restate's max-command-batch-size): enough to
# amortise a commit, small enough that actions are not held back long.
MAX_BATCH_RECORDS = 32
MAX_BATCH_BYTES = 1024 * 1024
# Records read ahead of the apply loop.
READ_AHEAD = 256


class Logs(Protocol):
    """What a partition needs from Bifrost: its own log, and other partitions' logs (shuffle)."""

    async def append(self, log_id: int, records: Sequence[bytes]) -> int: ...
    def read(self, log_id: int, from_lsn: int) -> AsyncIterator[LogRecord | LogTrimGap]: ...
    async def find_tail(self, log_id: int) -> tuple[int, bool]: ...


class Epochs(Protocol):
    async def claim(self, partition: int) -> int: ...
    async def current(self, partition: int) -> int: ...


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class PartitionStopped(Exception):
    """The partition cannot go on here (its store is ahead of its log, a record does not decode)."""


# The leader's proposals go to the log in batches of at most this cost (one larger record alone).
PROPOSAL_BATCH_BYTES = 256 * 1024


@dataclass(slots=True)
class _Leadership:
    epoch: int
    next_seq: int = 1
    last_proposed_lsn: int = 0
    # Proposals waiting for the proposer task, in call order; it numbers and appends them.
    pending: deque[tuple[Command, asyncio.Future[int]]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    proposer: asyncio.Task[None] | None = None


class PartitionProcessor:
    def __init__(
        self,
        partition: int,
        num_partitions: int,
        me: GenerationalNodeId,
        logs: Logs,
        store: PartitionHandle,
        epochs: Epochs,
        make_invoker: Callable[[PartitionProcessor], Any],
        on_ingress: Callable[[IngressResponse | IngressSubmitted | IngressRejected], None],
        wall_clock_ms: Callable[[], float],
    ) -> None:
        self.partition = partition
        self.num_partitions = num_partitions
        self.me = me
        self._logs = logs
        self._store = store
        self._epochs = epochs
        self._make_invoker = make_invoker
        self._on_ingress = on_ingress
        self._now = wall_clock_ms
        self._sm = StateMachine()
        self.role = Role.FOLLOWER
        self._want_lead = False
        self._leadership: _Leadership | None = None
        self._invoker: Any = None
        self._timers: TimerService | None = None
        self._shuffle: Shuffle | None = None
        self.applied_lsn = 0
        self._applied = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._claim: asyncio.Task[None] | None = None
        self.stopped: BaseException | None = None

    @property
    def log_id(self) -> int:
        return self.partition

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await self._step_down("stopping")
        for task in (self._claim, self._task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def lead(self) -> None:
        """The controller wants this node to lead: claim an epoch and announce it."""
        self._want_lead = True
        if self.role is Role.FOLLOWER and (self._claim is None or self._claim.done()):
            self._claim = asyncio.ensure_future(self._become_candidate())

    def follow(self) -> None:
        self._want_lead = False
        if self.role is not Role.FOLLOWER:
            asyncio.ensure_future(self._step_down("the controller placed the leader elsewhere"))

    # --- the apply loop --------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            tail = await self._find_tail()
            self.applied_lsn = self._store.check_not_ahead(tail)
            queue: asyncio.Queue[LogRecord | LogTrimGap] = asyncio.Queue(READ_AHEAD)
            reader = asyncio.ensure_future(self._read_into(queue, self.applied_lsn + 1))
            try:
                while True:
                    batch = [await queue.get()]
                    size = _size(batch[0])
                    while len(batch) < MAX_BATCH_RECORDS and size < MAX_BATCH_BYTES and not queue.empty():
                        batch.append(queue.get_nowait())
                        size += _size(batch[-1])
                    await self._apply(batch)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.stopped = e
            log.error("partition stopped", extra={"partition": self.partition, "error": str(e)})
            await self._step_down("the partition stopped")

    async def _find_tail(self) -> int:
        delay = 0.05
        while True:
            try:
                tail, _ = await self._logs.find_tail(self.log_id)
                return tail
            except Exception as e:  # the log may be between sequencers at start: retry
                log.info(
                    "waiting for the partition's log", extra={"partition": self.partition, "error": repr(e)}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _read_into(self, queue: asyncio.Queue[LogRecord | LogTrimGap], from_lsn: int) -> None:
        async for entry in self._logs.read(self.log_id, from_lsn):
            await queue.put(entry)

    async def _apply(self, batch: list[LogRecord | LogTrimGap]) -> None:
        txn = self._store.transaction()
        actions: list[Action] = []
        announcements: list[AnnounceLeader] = []
        for entry in batch:
            if isinstance(entry, LogTrimGap):
                raise PartitionStopped(
                    f"partition {self.partition}: its log was trimmed up to LSN {entry.to_lsn} past the "
                    f"store's applied LSN {self.applied_lsn}; restoring from a snapshot is not available yet"
                )
            try:
                envelope = decode_envelope(entry.payload)
            except RecordFormatError as e:
                # Anyone holding the cluster secret can append to a partition's log; a record
                # that is not a command must not stop the partition, and it changes nothing.
                log.warning(
                    "skipping a record that is not a command",
                    extra={"partition": self.partition, "lsn": entry.lsn, "error": str(e)},
                )
                txn.set_applied_lsn(entry.lsn)
                continue
            actions.extend(
                self._sm.apply(
                    txn, entry.lsn, envelope, partition=self.partition, num_partitions=self.num_partitions
                )
            )
            if isinstance(envelope.command, AnnounceLeader):
                announcements.append(envelope.command)
        txn.commit()
        async with self._applied:
            self.applied_lsn = batch[-1].lsn
            self._applied.notify_all()
        for announcement in announcements:
            await self._on_announcement(announcement)
        if self.role is Role.LEADER:
            self._dispatch(actions)

    # --- leadership ------------------------------------------------------------------------

    async def _become_candidate(self) -> None:
        try:
            epoch = await self._epochs.claim(self.partition)
        except Exception as e:  # the metadata store is unavailable: the controller asks again
            log.info("could not claim leadership", extra={"partition": self.partition, "error": repr(e)})
            return
        if not self._want_lead:
            return
        self.role = Role.CANDIDATE
        self._leadership = _Leadership(epoch)
        announcement = AnnounceLeader(self.me.node, self.me.generation, epoch)
        envelope = Envelope(announcement, int(self._now()), SelfProposal(epoch, 0))
        log.info("announcing leadership", extra={"partition": self.partition, "epoch": epoch})
        try:
            await self._logs.append(self.log_id, [encode_envelope(envelope)])
        except Exception as e:
            log.info("announcement not appended", extra={"partition": self.partition, "error": repr(e)})
            await self._step_down("the announcement was not appended")

    async def _on_announcement(self, a: AnnounceLeader) -> None:
        mine = self._leadership
        if mine is None:
            return
        if (a.node, a.generation, a.epoch) == (self.me.node, self.me.generation, mine.epoch):
            if self.role is not Role.CANDIDATE:
                return
            # A newer claim may exist already (a controller moved leadership meanwhile): leading
            # on an epoch someone else superseded would only run side effects twice.
            try:
                current = await self._epochs.current(self.partition)
            except Exception:
                current = mine.epoch
            if current != mine.epoch or not self._want_lead:
                await self._step_down(f"epoch {mine.epoch} was superseded by {current}")
                return
            await self._become_leader()
        elif a.epoch > mine.epoch:
            await self._step_down(f"node N{a.node} leads from epoch {a.epoch}")

    async def _become_leader(self) -> None:
        assert self._leadership is not None
        self.role = Role.LEADER
        lead = self._leadership
        log.info("leading", extra={"partition": self.partition, "epoch": lead.epoch})
        lead.proposer = asyncio.ensure_future(self._propose_loop(lead))
        self._invoker = self._make_invoker(self)
        self._invoker.start()
        self._timers = TimerService(self.propose, self._now)
        self._timers.start(self._store.timers())
        self._shuffle = Shuffle(
            self.partition, self.num_partitions, self._logs.append, self.propose, self._now
        )
        self._shuffle.start(self._store.outbox())
        # Invocations that were running under the previous leader run again (their journals
        # say how far they got); suspended ones wait for their completions.
        for invocation_id, status in self._store.statuses():
            if status.kind is StatusKind.INVOKED:
                self._invoker.handle(
                    InvokeAction(invocation_id, status.invocation.target, status.invocation.deployment_id)
                )

    async def _step_down(self, why: str) -> None:
        if self.role is Role.FOLLOWER and self._leadership is None:
            return
        was_leader = self.role is Role.LEADER
        self.role = Role.FOLLOWER
        lead, self._leadership = self._leadership, None
        if lead is not None and lead.proposer is not None and lead.proposer is not asyncio.current_task():
            lead.proposer.cancel()
        if was_leader:
            log.info("stepping down", extra={"partition": self.partition, "why": why})
        invoker, timers, shuffle = self._invoker, self._timers, self._shuffle
        self._invoker = self._timers = self._shuffle = None
        for shell in (invoker, timers, shuffle):
            if shell is not None:
                with contextlib.suppress(Exception):
                    await shell.stop()
        if self._want_lead:
            # Still wanted as leader (e.g. our announcement was lost): try again, a new epoch.
            self.lead()

    # --- the leader's side ------------------------------------------------------------------

    async def propose(self, command: Command) -> int:
        """Append one of the leader's own commands to the log; return its LSN once committed.

        One task (`_propose_loop`) numbers and appends the proposals, in call order, a batch
        at a time: their dedup sequence numbers must reach the log in increasing order (the
        state machine drops a proposal that is not above the last), which concurrent appends
        could not promise. A failed append makes the leader step down: a later proposal must
        not land after a hole."""
        lead = self._leadership
        if lead is None or self.role is not Role.LEADER:
            raise PartitionStopped(f"partition {self.partition}: not the leader")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        lead.pending.append((command, fut))
        lead.wake.set()
        return await fut

    async def _propose_loop(self, lead: _Leadership) -> None:
        try:
            while True:
                await lead.wake.wait()
                lead.wake.clear()
                while lead.pending:
                    batch, records = self._next_proposals(lead)
                    try:
                        first = await self._logs.append(self.log_id, records)
                    except (RecordTooLarge, BatchTooLarge) as e:
                        # Refused before anything was appended: only this proposal fails.
                        batch[0][1].set_exception(e)
                        continue
                    except Exception as e:
                        self._fail_proposals(lead, batch, e)
                        asyncio.ensure_future(self._step_down(f"a proposal failed: {e!r}"))
                        return
                    lead.last_proposed_lsn = first + len(records) - 1
                    for offset, (_, fut) in enumerate(batch):
                        if not fut.done():
                            fut.set_result(first + offset)
        except asyncio.CancelledError:
            self._fail_proposals(lead, [], PartitionStopped(f"partition {self.partition}: not the leader"))
            raise

    def _next_proposals(
        self, lead: _Leadership
    ) -> tuple[list[tuple[Command, asyncio.Future[int]]], list[bytes]]:
        batch: list[tuple[Command, asyncio.Future[int]]] = []
        records: list[bytes] = []
        cost = 0
        now = int(self._now())
        while lead.pending:
            command, fut = lead.pending[0]
            record = encode_envelope(Envelope(command, now, SelfProposal(lead.epoch, lead.next_seq)))
            record_cost = batch_cost([record])
            if records and cost + record_cost > PROPOSAL_BATCH_BYTES:
                break
            lead.pending.popleft()
            lead.next_seq += 1
            batch.append((command, fut))
            records.append(record)
            cost += record_cost
            if record_cost > PROPOSAL_BATCH_BYTES:
                break
        return batch, records

    @staticmethod
    def _fail_proposals(
        lead: _Leadership, batch: list[tuple[Command, asyncio.Future[int]]], error: BaseException
    ) -> None:
        for _, fut in (*batch, *lead.pending):
            if not fut.done():
                fut.set_exception(error)
        lead.pending.clear()

    async def wait_applied(self, lsn: int | None = None) -> None:
        """Until the record at ``lsn`` (default: the leader's last proposal) is applied here."""
        target = lsn if lsn is not None else (self._leadership.last_proposed_lsn if self._leadership else 0)
        async with self._applied:
            await self._applied.wait_for(lambda: self.applied_lsn >= target)

    def _dispatch(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case InvokeAction() | ForwardNotification() | AckRunCompletion() | AbortAttempt():
                    if self._invoker is not None:
                        self._invoker.handle(action)
                case RegisterTimer(timer=t):
                    if self._timers is not None:
                        self._timers.register(t)
                case DeleteTimer(timer=t):
                    if self._timers is not None:
                        self._timers.delete(t)
                case NewOutboxMessage(index=i, message=m):
                    if self._shuffle is not None:
                        self._shuffle.add(i, m)
                case IngressResponse() | IngressSubmitted() | IngressRejected():
                    self._on_ingress(action)


class LeaderPartition:
    """The invoker's view of its partition (processor.invoker.Partition) on the leader."""

    def __init__(self, processor: PartitionProcessor) -> None:
        self._p = processor

    def get_status(self, invocation_id: bytes) -> Any:
        return self._p._store.get_status(invocation_id)

    def read_journal(self, invocation_id: bytes) -> list[JournalEntry]:
        return [entry for _, entry in self._p._store.journal(invocation_id)]

    def read_state(self, service: str, key: str) -> list[tuple[bytes, bytes]]:
        return list(self._p._store.all_state(service, key))

    def propose(self, effect: InvokerEffect) -> Awaitable[int]:
        return self._p.propose(effect)

    async def wait_applied(self) -> None:
        await self._p.wait_applied()


def _size(entry: LogRecord | LogTrimGap) -> int:
    return len(entry.payload) if isinstance(entry, LogRecord) else 0

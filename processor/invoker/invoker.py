"""The invoker: runs invocation attempts against user deployments, on a partition's leader.

One ``Invoker`` per partition leader. The partition hands it actions (``handle``); it reads what
an attempt needs through the small ``Partition`` interface, runs the attempt (one sans-I/O
``processor.invoker.core.Attempt`` per attempt, in an asyncio ``Runner``), and proposes what the
SDK did as effects to the partition's log. It never writes a store: an effect changes the
partition once the log applies it, and what that means for the invoker comes back as actions.

    InvokeAction          start an attempt (a new invocation, or a suspended one resumed)
    ForwardNotification   give a running attempt a notification the partition journaled
    AckRunCompletion      give a running attempt the ack of a run completion it proposed (v7)
    AbortAttempt          stop the attempt; nothing more is proposed for it

Between attempts of one invocation (restate-architecture.md §5.7):

* **Retries.** A failed attempt is retried after the retry policy's delay (exponential; the
  SDK's ``next_retry_delay`` overrides the next one). When ``max_attempts`` (the first attempt
  included) have failed: ``kill`` proposes ``Fail`` with the last error; ``pause`` (and an SDK
  error with the PAUSE behaviour) proposes ``Pause``: the invocation stays PAUSED, on every
  leader, until the admin API resumes it, with a fresh retry budget. Streams the deployment
  refused before seeing them (HTTP/2 GOAWAY, REFUSED_STREAM) are retried at once, uncounted,
  a few times in a row.
* **Fencing.** A new attempt starts only once every effect the previous one proposed is in the
  log and applied (``Partition.wait_applied``): its replay must hold all of them, or the SDK
  would send a command again under an index the partition already has.
* **Counters.** ``retry_count_since_last_stored_entry`` grows with each counted failure and
  drops to 0 whenever an attempt grows the journal (it proposes a command or a run completion,
  as Restate's invoker counts); ``duration_since_last_stored_entry`` is measured from then. The
  SDK counts its ``ctx.run`` retries with them, so notifications do not reset them: most are
  the echo of the attempt's own commands (a run's completion, a call's id) and arrive after the
  failure they would wrongly erase. They live in memory: a new leader starts them at 0 (and the
  duration from the status's last modification).

Transport per deployment: h2c deployments registered as BIDI_STREAM run bidi (the request stream
stays open and notifications flow on it); HTTP/1.1 deployments, REQUEST_RESPONSE ones and
handlers with an inactivity timeout of 0 run request/response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol
from urllib.parse import quote

import msgspec

from metadata.schema import Handler, ProtocolType, Schema, Service
from processor.core import (
    AbortAttempt,
    AckRunCompletion,
    Action,
    End,
    Fail,
    Failure,
    ForwardNotification,
    InvocationStatus,
    InvokeAction,
    InvokerEffect,
    JournalCommand,
    JournalEntry,
    Pause,
    RunCompletion,
    StatusKind,
    Suspended,
)
from processor.ids import InvocationId
from processor.invoker._runner import Plan, Runner
from processor.invoker._targets import Defaults, HandlerSettings, call_resolver, handler_settings
from processor.invoker.core import (
    AttemptEnded,
    AttemptError,
    Begin,
    CommandJournaled,
    EndKind,
    Mode,
    Notification,
    OnMaxAttempts,
    RetryPolicy,
    RunAcked,
    random_seed_of,
)
from processor.invoker.transport import Endpoint, HttpVersion, Transport
from processor.protocol import DEFAULT_MAX_PROTOCOL_VERSION, choose_version, content_type

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY: Final = 1000
EAGER_STATE_LIMIT_BYTES: Final = 32 << 20  # Restate's default; larger state goes partial
HTTP11: Final = "HTTP/1.1"
_UNCOUNTED_RETRIES_IN_A_ROW: Final = 3


class Partition(Protocol):
    """What the invoker needs from its partition (the leader implements it over its store and log).

    The three reads are synchronous and are called back to back, so they see one applied state.
    """

    def get_status(self, invocation_id: bytes) -> InvocationStatus | None:
        """The invocation's status row, as applied."""
        ...

    def read_journal(self, invocation_id: bytes) -> Sequence[JournalEntry]:
        """The invocation's journal entries in index order, Input first."""
        ...

    def read_state(self, service: str, key: str) -> Sequence[tuple[bytes, bytes]]:
        """Every state entry (name, value) of one object or workflow key."""
        ...

    def propose(self, effect: InvokerEffect) -> Awaitable[None]:
        """Append ``effect`` to the partition's log; resolves once it is committed there (not yet
        applied). Effects must reach the log in the order of the calls, with no holes: once one
        fails (the leader lost its log), every later one must fail too (Restate's leader steps
        down on a failed self-proposal). It may also raise at once to refuse an effect."""
        ...

    async def wait_applied(self) -> None:
        """Return once every effect whose ``propose`` resolved has been applied, so that the
        reads above see it."""
        ...


@dataclass(frozen=True, slots=True)
class InvokerConfig:
    concurrency: int = DEFAULT_CONCURRENCY
    """Attempts running at once; shared by a node's invokers when they share ``slots``."""
    max_protocol_version: int = DEFAULT_MAX_PROTOCOL_VERSION
    defaults: Defaults = Defaults()
    eager_state_limit_bytes: int = EAGER_STATE_LIMIT_BYTES
    drain_timeout_s: float = 5.0
    """After End or Suspension: how long the SDK may take to end its response."""
    additional_headers: tuple[tuple[str, str], ...] = ()
    """Sent with every invocation request (Restate's ``additional-request-headers``)."""


@dataclass
class InvokerStats:
    attempts_started: int = 0
    attempts_failed: int = 0
    retries_scheduled: int = 0
    retry_delay_ms_total: int = 0
    last_retry_delay_ms: int | None = None
    paused: int = 0
    killed: int = 0


@dataclass(eq=False)
class _Invocation:
    """What the invoker keeps about one invocation between its attempts."""

    id: bytes
    failed_attempts: int = 0
    uncounted_in_a_row: int = 0
    retry_count: int = 0
    last_stored_ms: float | None = None  # wall clock
    runner: Runner | None = None
    retry: asyncio.TimerHandle | None = None
    paused: bool = False
    fence: int = 0  # the status's fence when the current attempt was planned
    policy: RetryPolicy | None = None
    proposals: set[asyncio.Future[None]] = field(default_factory=set)
    unapplied: bool = False  # some proposal was committed since the last fence
    debug_id: str = ""

    @property
    def idle(self) -> bool:
        running = self.runner is not None and not self.runner.ended
        return not (running or self.retry is not None or self.paused or self.proposals)


class Invoker:
    """Runs the attempts of one partition's invocations (see the module docstring)."""

    def __init__(
        self,
        transport: Transport,
        schema: Callable[[], Schema],
        partition: Partition,
        config: InvokerConfig | None = None,
        *,
        slots: asyncio.Semaphore | None = None,
        stats: InvokerStats | None = None,
        wall_clock_ms: Callable[[], float] = lambda: time.time() * 1000,
    ) -> None:
        self.config = config or InvokerConfig()
        self._transport = transport
        self._schema = schema
        self._partition = partition
        self._slots = slots or asyncio.Semaphore(self.config.concurrency)
        self._wall_ms = wall_clock_ms
        self._resolve = call_resolver(schema)
        self._invocations: dict[bytes, _Invocation] = {}
        self._endpoints: dict[tuple[str, bool], tuple[Endpoint, str]] = {}
        self._settings_of: Schema | None = None
        self._settings_cache: dict[tuple[str, str | None, str | None], HandlerSettings] = {}
        self._running = False
        self.stats = stats if stats is not None else InvokerStats()
        """Shared by a node's invokers when given: they come and go with leadership."""

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        """Stop every attempt and retry; propose nothing more."""
        self._running = False
        tasks = []
        for inv in self._invocations.values():
            if inv.retry is not None:
                inv.retry.cancel()
            if inv.runner is not None:
                inv.runner.abort()
                if inv.runner.task is not None:
                    tasks.append(inv.runner.task)
        self._invocations.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def running_attempts(self) -> int:
        return sum(1 for inv in self._invocations.values() if inv.runner is not None and not inv.runner.ended)

    def knows(self, invocation_id: bytes) -> bool:
        return invocation_id in self._invocations

    # --- actions ----------------------------------------------------------------------------

    def handle(self, action: Action) -> None:
        if not self._running:
            return
        if isinstance(action, InvokeAction):
            self._invoke(action.invocation_id)
        elif isinstance(action, ForwardNotification):
            inv = self._invocations.get(action.invocation_id)
            if inv is not None:
                if inv.runner is not None:
                    inv.runner.input(Notification(action.index, action.entry, inv.runner.now_ms()))
        elif isinstance(action, AckRunCompletion):
            inv = self._invocations.get(action.invocation_id)
            if inv is not None and inv.runner is not None:
                inv.runner.input(RunAcked(action.completion_id, inv.runner.now_ms()))
        elif isinstance(action, AbortAttempt):
            self._abort(action.invocation_id)

    def _invoke(self, invocation_id: bytes) -> None:
        inv = self._invocations.get(invocation_id)
        if inv is None:
            inv = self._invocations[invocation_id] = _Invocation(invocation_id)
        elif (inv.runner is not None and not inv.runner.ended) or inv.retry is not None:
            return  # already running, or about to: the attempt reads the latest journal anyway
        if inv.paused:  # run again (a new leader, or a resume): with a fresh retry budget
            inv.paused = False
            inv.failed_attempts = 0
        self._start(inv)

    def _abort(self, invocation_id: bytes) -> None:
        inv = self._invocations.pop(invocation_id, None)
        if inv is None:
            return
        if inv.retry is not None:
            inv.retry.cancel()
        if inv.runner is not None:
            inv.runner.abort()

    def _start(self, inv: _Invocation) -> None:
        runner = Runner(self, inv.id, self._resolve)
        inv.runner = runner
        self.stats.attempts_started += 1
        runner.task = asyncio.get_running_loop().create_task(
            runner.run(self._transport, self._slots, self.config.drain_timeout_s)
        )
        runner.task.add_done_callback(lambda _task: self._runner_done(inv, runner))

    def _runner_done(self, inv: _Invocation, runner: Runner) -> None:
        if self._invocations.get(inv.id) is not inv:
            return
        if inv.runner is runner and not runner.ended:
            inv.runner = None  # nothing to run (the invocation is no longer INVOKED)
        self._forget_if_idle(inv)

    def _forget_if_idle(self, inv: _Invocation) -> None:
        if inv.idle and (inv.runner is None or inv.runner.task is None or inv.runner.task.done()):
            if self._invocations.get(inv.id) is inv:
                del self._invocations[inv.id]

    # --- what runners ask ---------------------------------------------------------------------

    async def fence(self, runner: Runner) -> None:
        """Wait until every effect of the invocation's earlier attempts is applied."""
        inv = self._invocations.get(runner.invocation_id)
        if inv is None:
            return
        while inv.proposals:
            await asyncio.wait(set(inv.proposals))
        if inv.unapplied:
            await self._partition.wait_applied()
            inv.unapplied = False

    def plan(self, runner: Runner) -> Plan | AttemptError | None:
        """Read what the attempt starts from; None if the invocation is not running any more."""
        inv = self._invocations.get(runner.invocation_id)
        if inv is None or runner.aborted:
            return None
        status = self._partition.get_status(inv.id)
        if status is None or status.kind is not StatusKind.INVOKED:
            return None
        inv.fence = status.fence
        invocation = status.invocation
        target = invocation.target
        schema = self._schema()
        deployment = schema.deployment(invocation.deployment_id)
        service = None if deployment is None else deployment.service(target.service)
        handler = None if service is None else service.handler(target.handler)
        if service is None:  # the pinned deployment is gone: the latest one's settings still apply
            service = schema.service(target.service)
            handler = None if service is None else service.handler(target.handler)
        settings = self._settings(schema, invocation.deployment_id, service, handler)
        inv.policy = settings.retry
        if deployment is None or deployment.service(target.service) is None:
            return AttemptError(
                500,
                f"the invocation is pinned to deployment {invocation.deployment_id}, which does not "
                f"serve {target.service} (was it removed from the registry?)",
            )
        if handler is None:
            return AttemptError(
                500, f"deployment {deployment.id} has no handler {target.service}/{target.handler}"
            )
        version = choose_version(
            deployment.min_protocol_version,
            deployment.max_protocol_version,
            max_version=self.config.max_protocol_version,
        )
        if version is None:
            return AttemptError(
                500,
                f"deployment {deployment.id} speaks protocol versions {deployment.min_protocol_version}-"
                f"{deployment.max_protocol_version}, none of which this invoker runs",
            )
        journal = tuple(self._partition.read_journal(inv.id)[: status.journal_length])
        if len(journal) != status.journal_length:
            return AttemptError(
                500, f"the journal has {len(journal)} entries, its status says {status.journal_length}"
            )
        state, partial = self._state(target.service, target.key, settings)
        http11 = deployment.http_version == HTTP11
        endpoint, prefix = Endpoint.from_url(
            deployment.uri, HttpVersion.HTTP11 if http11 else HttpVersion.H2C
        )
        bidi = (
            deployment.protocol_type is ProtocolType.BIDI_STREAM
            and not http11
            and settings.inactivity_timeout_ms > 0
        )
        if not inv.debug_id:
            inv.debug_id = str(InvocationId.from_bytes(inv.id))
        debug_id = inv.debug_id
        headers = [
            ("content-type", content_type(version)),
            ("accept", content_type(version)),
            ("x-restate-invocation-id", debug_id),
        ]
        if target.key is not None:
            headers.append(("x-restate-service-key", quote(target.key, safe="")))
        headers.extend(self.config.additional_headers)
        headers.extend(deployment.additional_headers.items())
        now_wall = self._wall_ms()
        if inv.last_stored_ms is None:
            inv.last_stored_ms = float(status.modified_at_ms)
        begin = Begin(
            invocation_id=inv.id,
            debug_id=debug_id,
            target=target,
            journal=journal,
            version=version,
            mode=Mode.BIDI if bidi else Mode.REQUEST_RESPONSE,
            now_ms=0,
            inactivity_timeout_ms=settings.inactivity_timeout_ms,
            abort_timeout_ms=settings.abort_timeout_ms,
            state=state,
            partial_state=partial,
            retry_count_since_last_stored_entry=inv.retry_count,
            duration_since_last_stored_entry_ms=max(0, int(now_wall - inv.last_stored_ms)),
            random_seed=random_seed_of(inv.id),
            idempotency_key=invocation.idempotency_key,
        )
        path = f"{prefix}/invoke/{target.service}/{target.handler}"
        return Plan(endpoint, path, tuple(headers), begin, settings)

    def _settings(
        self, schema: Schema, deployment_id: str, service: Service | None, handler: Handler | None
    ) -> HandlerSettings:
        """``handler_settings``, cached while the schema object stays the same (it is immutable)."""
        if schema is not self._settings_of:
            self._settings_of = schema
            self._settings_cache.clear()
        key = (
            deployment_id,
            None if service is None else service.name,
            None if handler is None else handler.name,
        )
        settings = self._settings_cache.get(key)
        if settings is None:
            settings = self._settings_cache[key] = handler_settings(service, handler, self.config.defaults)
        return settings

    def _endpoint(self, uri: str, http11: bool) -> tuple[Endpoint, str]:
        found = self._endpoints.get((uri, http11))
        if found is None:
            found = Endpoint.from_url(uri, HttpVersion.HTTP11 if http11 else HttpVersion.H2C)
            if len(self._endpoints) > 1024:  # deployments come and go; keep the cache small
                self._endpoints.clear()
            self._endpoints[(uri, http11)] = found
        return found

    def _state(
        self, service: str, key: str | None, settings: HandlerSettings
    ) -> tuple[tuple[tuple[bytes, bytes], ...], bool]:
        """Eager state for keyed targets (partial when lazy, or over the size limit)."""
        if key is None or settings.lazy_state:
            return (), True
        entries: list[tuple[bytes, bytes]] = []
        size = 0
        for name, value in self._partition.read_state(service, key):
            size += len(name) + len(value)
            if size > self.config.eager_state_limit_bytes:
                return tuple(entries), True
            entries.append((name, value))
        return tuple(entries), False

    def propose(self, runner: Runner, effect: InvokerEffect) -> None:
        inv = self._invocations.get(runner.invocation_id)
        if inv is None or runner.aborted or inv.runner is not runner:
            return  # an aborted or superseded attempt proposes nothing
        if isinstance(effect, JournalCommand | RunCompletion):
            self._stored(inv)
        if inv.fence and isinstance(effect, JournalCommand | Suspended | End):
            effect = msgspec.structs.replace(effect, fence=inv.fence)
        if not self._propose(inv, effect, runner):
            # Refused at once: stop before the attempt proposes what comes after it (an End
            # behind a refused Output would complete the invocation without its result).
            runner.abort()
            error = AttemptError(500, f"the partition refused an effect: {effect.__class__.__name__}")
            self.attempt_ended(runner, AttemptEnded(EndKind.FAILED_RETRYABLE, error))

    def _propose(self, inv: _Invocation, effect: InvokerEffect, runner: Runner | None) -> bool:
        """Hand ``effect`` to the partition; False if it refused it at once."""
        try:
            future = asyncio.ensure_future(self._partition.propose(effect))
        except Exception as error:
            log.warning("proposing an effect failed: %r", error, extra={"invocation": inv.id.hex()})
            return False
        inv.proposals.add(future)
        future.add_done_callback(lambda f: self._proposed(inv, runner, effect, f))
        return True

    def _proposed(
        self, inv: _Invocation, runner: Runner | None, effect: InvokerEffect, future: asyncio.Future[None]
    ) -> None:
        inv.proposals.discard(future)
        if future.cancelled() or future.exception() is not None:
            error = "cancelled" if future.cancelled() else repr(future.exception())
            log.warning("proposing an effect failed: %s", error, extra={"invocation": inv.id.hex()})
            if runner is not None and inv.runner is runner and not runner.ended:
                # Later effects of this attempt could land without this one: stop it, retry.
                runner.abort()
                self.attempt_ended(runner, AttemptEnded(EndKind.FAILED_RETRYABLE, AttemptError(500, error)))
        else:
            inv.unapplied = True
            if runner is not None and isinstance(effect, JournalCommand):
                runner.input(CommandJournaled(effect.command_index, runner.now_ms()))
        self._forget_if_idle(inv)

    def _stored(self, inv: _Invocation) -> None:
        """The journal grew: the counters the SDK reads start again."""
        inv.retry_count = 0
        inv.last_stored_ms = self._wall_ms()

    def attempt_ended(self, runner: Runner, ended: AttemptEnded) -> None:
        inv = self._invocations.get(runner.invocation_id)
        if inv is None or inv.runner is not runner or not self._running:
            return
        extra = {"invocation": inv.id.hex(), "kind": ended.kind.value}
        if ended.kind in (EndKind.END, EndKind.SUSPENDED, EndKind.FAILED_TERMINAL):
            inv.failed_attempts = inv.uncounted_in_a_row = 0  # a resumed invocation retries afresh
            self._forget_if_idle(inv)
            return
        self.stats.attempts_failed += 1
        error = ended.error or AttemptError(500, "the attempt failed")
        if ended.kind is EndKind.PAUSED:
            self._pause(inv, error)
            return
        counts = ended.counts or inv.uncounted_in_a_row >= _UNCOUNTED_RETRIES_IN_A_ROW
        policy = inv.policy or self.config.defaults.retry
        if counts:
            inv.failed_attempts += 1
            inv.retry_count += 1
            inv.uncounted_in_a_row = 0
        else:
            inv.uncounted_in_a_row += 1
        if counts and policy.exhausted(inv.failed_attempts):
            if policy.on_max_attempts is OnMaxAttempts.KILL:
                log.warning("retries exhausted, killing: %s", error, extra=extra)
                self.stats.killed += 1
                self._propose(inv, Fail(inv.id, Failure(error.code, error.message)), None)
            else:
                self._pause(inv, error)
            return
        if ended.retry_after_ms is not None:
            delay_ms = ended.retry_after_ms
        else:
            delay_ms = policy.delay_ms(inv.failed_attempts) if counts else 0
        log.info("attempt failed, retrying in %d ms: %s", delay_ms, error, extra=extra)
        self.stats.retries_scheduled += 1
        self.stats.retry_delay_ms_total += delay_ms
        self.stats.last_retry_delay_ms = delay_ms
        inv.retry = asyncio.get_running_loop().call_later(delay_ms / 1000, self._retry_due, inv)

    def _pause(self, inv: _Invocation, error: AttemptError) -> None:
        log.warning("invocation paused: %s", error, extra={"invocation": inv.id.hex()})
        self.stats.paused += 1
        # Held until the Pause is applied (its AbortAttempt forgets the invocation); were the
        # proposal lost, a new leader would run it again, which only costs an attempt.
        inv.paused = True
        self._propose(inv, Pause(inv.id, fence=inv.fence), None)

    def _retry_due(self, inv: _Invocation) -> None:
        inv.retry = None
        if self._running and self._invocations.get(inv.id) is inv:
            self._start(inv)

"""The replicated loglet as seen from one node: the ``Loglet`` contract over the cores.

Appends go to the sequencer: in-process when this node runs it, else as an ``AppendRequest`` to
the sequencer's node. Seal and trim run their task cores; reads run a ``ReadStream`` core.
Reads of a sealed loglet end where the *chain* says it ends (``mark_sealed``), never at a tail
this node found itself: two find-tails racing on different nodes may repair to different tails,
and only the one whose chain CAS won is the log. Known limits: ``find_tail`` of an open loglet asks the sequencer (the only one that knows the
committed tail without sealing); when the sequencer cannot be reached the loglet reports
``LogUnavailable`` and the log above it reconfigures.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from bifrost.core import (
    Cached,
    Consumed,
    Deliver,
    DeliverTrimGap,
    FindTailTask,
    NoSafeTail,
    ReaderState,
    ReadStream,
    SetTail,
    TailFound,
    TrimDone,
    TrimTask,
)
from bifrost.core._types import LogletParams, describe_loglet
from bifrost.errors import LogletSealed, LogletWriteUnavailable, LogUnavailable, OutOfOrder, SequencerGone
from bifrost.limits import TAIL_PUSH_BYTES
from bifrost.loglet import LogletEntry, Record, TailState, TrimGap
from bifrost.replicated.messages import (
    AppendRequest,
    AppendResponse,
    AppendStatus,
    GetTailRequest,
    GetTailResponse,
    TailUpdate,
    WaitForTailRequest,
)
from bifrost.replicated.runtime import CoreDriver, now_ms

if TYPE_CHECKING:
    from bifrost.replicated.provider import ReplicatedProvider

from bifrost.policy import REMOTE_CALL_TIMEOUT_S as REMOTE_TIMEOUT_S
from bifrost.policy import REMOTE_RETRY_S, TAIL_WAIT_MS


def no_safe_tail(params: LogletParams, out: NoSafeTail) -> LogUnavailable:
    nodes = ", ".join(f"N{n}" for n in out.non_authoritative)
    return LogUnavailable(
        f"loglet {describe_loglet(params.loglet_id)} cannot be sealed safely: its nodes {nodes} lost their "
        f"data, and the others of {len(params.nodeset)} cannot decide its tail alone (replication "
        f"{params.replication}); bring back the nodes that hold its records"
    )


class ReplicatedLoglet:
    def __init__(self, params: LogletParams, provider: ReplicatedProvider) -> None:
        self.params = params
        self._provider = provider
        # Where the chain says this loglet ends: the only end reads may use.
        self._sealed_tail: int | None = None
        self._sealed_event = asyncio.Event()
        # The sealed tail a find-tail run on this node computed. Concurrent runs elsewhere may
        # compute another one and win the chain's CAS, so this answers find_tail only.
        self._found_tail: int | None = None
        self._trim_point = 0

    @property
    def loglet_id(self) -> int:
        return self.params.loglet_id

    @property
    def is_local_sequencer(self) -> bool:
        return self.params.sequencer == self._provider.me

    # --- appends ---

    def enqueue_batch(
        self, payloads: Sequence[bytes], *, appender: int = 0, first_seq: int = 0, prev_seq: int = 0
    ) -> asyncio.Future[int]:
        """Append; ``appender``/``first_seq``/``prev_seq`` make a remote resend exactly-once and
        ordered (see AppendRequest). A local sequencer takes batches in call order, losslessly."""
        seq = self._provider.sequencer(self.params)
        if seq is not None:
            return seq.append(payloads)
        return asyncio.ensure_future(self._remote_append(tuple(payloads), appender, first_seq, prev_seq))

    async def _remote_append(
        self, payloads: tuple[bytes, ...], appender: int, first_seq: int, prev_seq: int
    ) -> int:
        node = self.params.sequencer.node
        if self._provider.is_dead(node):
            raise LogUnavailable(f"sequencer N{node} of loglet {self.loglet_id} is dead")
        try:
            resp = await self._provider.network.call(
                node, AppendRequest(self.params, payloads, appender, first_seq, prev_seq), REMOTE_TIMEOUT_S
            )
        except TimeoutError:
            raise LogUnavailable(f"sequencer N{node} did not answer within {REMOTE_TIMEOUT_S}s") from None
        except ConnectionError as e:
            raise LogUnavailable(f"sequencer N{node} unreachable: {e}") from None
        assert isinstance(resp, AppendResponse)
        if resp.status == AppendStatus.OK:
            return resp.last_offset
        if resp.status == AppendStatus.SEALED:
            raise LogletSealed(resp.known_global_tail)
        if resp.status == AppendStatus.WRITE_UNAVAILABLE:
            raise LogletWriteUnavailable(resp.message)
        if resp.status == AppendStatus.OUT_OF_ORDER:
            raise OutOfOrder(resp.message)
        if resp.status == AppendStatus.NOT_SEQUENCER:
            raise SequencerGone(f"{self.params.sequencer} no longer runs: {resp.message}")
        raise LogUnavailable(f"sequencer N{node}: {resp.status} {resp.message}".strip())

    # --- tail ---

    async def find_tail(self) -> TailState:
        if self._sealed_tail is not None:
            return TailState(self._sealed_tail, True)
        seq = self._provider.sequencer(self.params)
        if seq is not None:
            if seq.sealed:
                return TailState(await self._find_sealed_tail(), True)
            return seq.tail_state
        node = self.params.sequencer.node
        try:
            resp = await self._provider.network.call(node, GetTailRequest(self.params), REMOTE_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            raise LogUnavailable(f"sequencer N{node} did not answer the tail query") from None
        assert isinstance(resp, GetTailResponse)
        if not resp.found:
            raise SequencerGone(f"{self.params.sequencer} no longer runs: N{node} restarted")
        if resp.sealed:
            return TailState(await self._find_sealed_tail(), True)
        return TailState(resp.known_global_tail, False)

    async def wait_for_tail(self, offset: int) -> TailState:
        """Return once the committed tail reaches ``offset`` (every record below it is committed)
        or the loglet is sealed (the caller then follows the chain)."""
        while True:
            if self._sealed_tail is not None:
                return TailState(self._sealed_tail, True)
            seq = self._provider.sequencer(self.params)
            if seq is not None:
                state = seq.tail.state
                if state.offset >= offset or state.sealed:
                    return state
                await seq.tail.wait_for_change(state)
                continue
            node = self.params.sequencer.node
            try:
                update = await self._provider.network.call(
                    node,
                    WaitForTailRequest(self.params, offset - 1, TAIL_WAIT_MS),
                    TAIL_WAIT_MS / 1000 + REMOTE_TIMEOUT_S,
                )
            except (TimeoutError, ConnectionError):
                raise LogUnavailable(f"sequencer N{node} of loglet {self.loglet_id} did not answer") from None
            assert isinstance(update, TailUpdate)
            if not update.found:
                raise SequencerGone(f"{self.params.sequencer} no longer runs")
            if update.tail >= offset or update.sealed:
                return TailState(update.tail, update.sealed)

    def mark_sealed(self, tail: int) -> None:
        """The chain says this loglet ended at ``tail`` (exclusive)."""
        self._sealed_tail = tail
        self._sealed_event.set()

    # --- control tasks ---

    async def _run_task(self, core: Any, done_type: type | tuple[type, ...]) -> Any:
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_output(out: Any) -> None:
            if isinstance(out, done_type) and not result.done():
                result.set_result(out)

        driver = CoreDriver(core, self._provider.network, on_output)
        for node in self.params.nodeset:
            if self._provider.is_dead(node):
                driver.hint(node, alive=False)
        driver.kick()
        try:
            return await result
        finally:
            driver.close()

    async def seal(self) -> int:
        return await self._find_sealed_tail()

    async def _find_sealed_tail(self) -> int:
        """Seal on an f-majority and repair up to the highest sealed local tail. Safe to run
        anywhere, any number of times; the chain's end, once known, wins."""
        if self._sealed_tail is not None:
            return self._sealed_tail
        if self._found_tail is None:
            core = FindTailTask(
                self.params,
                now_ms=now_ms(),
                known_global_tail=self._known_global_tail(),
                non_authoritative=self._provider.non_authoritative(self.loglet_id),
            )
            found = await self._run_task(core, (TailFound, NoSafeTail))
            if isinstance(found, NoSafeTail):
                raise no_safe_tail(self.params, found)
            self._found_tail = found.tail
        return self._sealed_tail if self._sealed_tail is not None else self._found_tail

    async def trim(self, offset: int) -> None:
        tail = await self.find_tail()
        core = TrimTask(self.params, offset, tail.offset, now_ms=now_ms())
        done: TrimDone = await self._run_task(core, TrimDone)
        self._trim_point = max(self._trim_point, done.trim_point)
        if (seq := self._provider.sequencer(self.params)) is not None:
            seq.cache.trim(done.trim_point)

    async def get_trim_point(self) -> int:
        return self._trim_point

    def _known_global_tail(self) -> int:
        seq = self._provider.sequencer(self.params)
        return seq.tail_state.offset if seq is not None else 1

    # --- reads ---

    async def read(self, from_offset: int) -> AsyncIterator[LogletEntry]:
        """Records from ``from_offset`` until the loglet's end (sealed tail), or forever while open."""
        entries: asyncio.Queue[LogletEntry | None] = asyncio.Queue()
        core = ReadStream(
            self.loglet_id,
            self.params.nodeset,
            random.Random(),
            from_offset=from_offset,
            preferred=self._provider.me.node,
            now_ms=now_ms(),
        )

        def on_output(out: Any) -> None:
            if isinstance(out, Deliver):
                entries.put_nowait(Record(out.offset, out.payload))
            elif isinstance(out, DeliverTrimGap):
                entries.put_nowait(TrimGap(out.offset, out.to))

        def after_step() -> None:
            if core.state is ReaderState.DONE:
                entries.put_nowait(None)

        driver = CoreDriver(core, self._provider.network, on_output, after_step)
        watch = asyncio.ensure_future(self._feed_tail(driver, core))
        driver.kick()
        try:
            while (entry := await entries.get()) is not None:
                yield entry
                # Credit back only once the consumer asked for the next one: a consumer that
                # stops pulling stops the reading (the queue holds at most max_unconsumed).
                driver.feed(Consumed(1))
        finally:
            watch.cancel()
            driver.close()

    async def _feed_tail(self, driver: CoreDriver, core: ReadStream) -> None:
        """Tell the reader the committed tail as soon as this node learns it, with the new
        records from the sequencer's record cache: from the local sequencer's watch, or pushed by
        the remote sequencer (WaitForTail); the end comes from the chain."""
        while self._sealed_tail is None:
            seq = self._provider.sequencer(self.params)
            if seq is None:
                await self._follow_remote_tail(driver)
                break
            state = seq.tail.state
            first = core.next_offset
            driver.feed(Cached(first, seq.cache.get(first, state.offset, TAIL_PUSH_BYTES), state.offset))
            if state.sealed:
                # Repair may have moved the sealed tail past what the sequencer committed: only
                # the chain knows where this loglet ends.
                await self._sealed_event.wait()
                break
            await seq.tail.wait_for_change(state)
        if self._sealed_tail is not None:
            driver.feed(SetTail(self._sealed_tail, final=True))

    async def _follow_remote_tail(self, driver: CoreDriver) -> None:
        """Log-servers learn the global tail only from the next store, so the last batch would
        stay unreadable here until another append: the sequencer pushes each change instead
        (one WaitForTail outstanding at a time, answered on the next commit)."""
        node = self.params.sequencer.node
        known = 0
        while self._sealed_tail is None:
            if self._provider.is_dead(node):
                await self._wait_sealed(REMOTE_RETRY_S)
                continue
            try:
                update = await self._provider.network.call(
                    node,
                    WaitForTailRequest(self.params, known, TAIL_WAIT_MS, with_records=True),
                    TAIL_WAIT_MS / 1000 + REMOTE_TIMEOUT_S,
                )
            except (TimeoutError, ConnectionError):
                await self._wait_sealed(REMOTE_RETRY_S)
                continue
            assert isinstance(update, TailUpdate)
            if not update.found:
                # The sequencer is gone (its node restarted): whoever reconfigures ends this
                # loglet in the chain; until then the reader has what was committed.
                await self._wait_sealed(REMOTE_RETRY_S)
                continue
            if update.tail > known:
                known = update.tail
                driver.feed(Cached(update.first, update.records, update.tail))
            if update.sealed:
                await self._sealed_event.wait()  # only the chain says where reads end
                return

    async def _wait_sealed(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._sealed_event.wait(), timeout_s)
        except TimeoutError:
            pass

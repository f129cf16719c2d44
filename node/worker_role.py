"""The worker role: runs the partition processors this node is placed on, and answers the
ingress from whichever node leads a partition.

- The partition table (metadata ``partition_table``) says, per partition, which nodes run its
  processor and which one leads. This node follows the table: it starts a processor (a
  follower) for every partition it replicates, tells it to lead or follow, and stops the
  others. One RocksDB partition store holds every partition of the node.
- The cluster controller writes that table. It runs on the lowest live node (every node runs
  the loop; only that one acts), recomputes the placement (node.core.placement) from the live
  nodes every second and writes it by compare-and-set when it changed: a dead leader is replaced
  by a replica within about the failure detector's timeout plus a second.
- The ingress's submitter appends invocations to their partitions' logs; the leaders' answers
  come back here as NodeNotices on the data port (or in-process from a local leader).

Partition n uses log n; the number of partitions is the number of logs provisioned with the
cluster, and partitions are replicated like the log (``bifrost.replication``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bifrost.core._types import GenerationalNodeId
from metadata import MetadataStore, MetadataUnavailable, PreconditionFailed, RecordFormatError, UnknownOutcome
from metadata.core.types import Precondition
from metadata.partitions import (
    PARTITION_TABLE_KEY,
    PartitionTable,
    claim_epoch,
    current_epoch,
    encode_table,
    load_partition_table,
)
from metadata.records import decode
from node.config import NodeConfig
from node.core.placement import place
from node.log_role import LogRole
from node.schema_cache import SchemaCache
from node.submitter import TOPIC, IngressSubmitter, encode_reply, reply_of
from processor.core import IngressRejected, IngressResponse, IngressSubmitted
from processor.invoker.invoker import Invoker, InvokerConfig, InvokerStats
from processor.invoker.transport import Transport
from processor.partition import LeaderPartition, PartitionProcessor
from processor.store.partition_store import PartitionStore

log = logging.getLogger(__name__)

CONTROLLER_INTERVAL_S = 1.0
WATCH_RETRY_S = 0.5


def _wall_ms() -> float:
    return time.time() * 1000


class _Epochs:
    def __init__(self, store: MetadataStore, me: GenerationalNodeId) -> None:
        self._store = store
        self._me = me

    async def claim(self, partition: int) -> int:
        return await claim_epoch(self._store, partition, self._me.node, self._me.generation)

    async def current(self, partition: int) -> int:
        found = await current_epoch(self._store, partition)
        return 0 if found is None else found.epoch


class WorkerRole:
    def __init__(
        self, cfg: NodeConfig, store: MetadataStore, me: GenerationalNodeId, log_role: LogRole
    ) -> None:
        self._cfg = cfg
        self._store = store
        self.me = me
        self._log = log_role
        self._partitions = PartitionStore(cfg.base_dir / "partition-store")
        self.transport = Transport()
        self.schemas = SchemaCache(store)
        self._num_partitions = 0
        self.submitter = IngressSubmitter(me, log_role.bifrost.append, lambda: self._num_partitions, _wall_ms)
        self.processors: dict[int, PartitionProcessor] = {}
        self._slots = asyncio.Semaphore(InvokerConfig().concurrency)
        self.invoker_stats = InvokerStats()
        self._epochs = _Epochs(store, me)
        self._table: PartitionTable | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        config = await self._log.bifrost.logs_config()
        self._num_partitions = len(config.log_ids)
        await self.schemas.start()
        self._log.on_notice(TOPIC, lambda peer, body: self.submitter.on_reply(body))
        self._tasks = [
            asyncio.ensure_future(self._follow_table()),
            asyncio.ensure_future(self._controller()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for processor in list(self.processors.values()):
            await processor.stop()
        self.processors.clear()
        await self.transport.close()
        await self.schemas.stop()
        self._partitions.close()

    # --- placement ----------------------------------------------------------------------------

    async def _follow_table(self) -> None:
        while True:
            try:
                async for found in self._store.watch(PARTITION_TABLE_KEY):
                    if found is None:
                        continue
                    try:
                        table = decode(PartitionTable, found.value, PARTITION_TABLE_KEY)
                    except RecordFormatError as e:
                        log.error("ignoring a bad partition table", extra={"error": str(e)})
                        continue
                    self._apply(table)
            except (MetadataUnavailable, UnknownOutcome) as e:
                log.info("partition table watch interrupted", extra={"error": str(e)})
                await asyncio.sleep(WATCH_RETRY_S)

    def _apply(self, table: PartitionTable) -> None:
        self._table = table
        me = self.me.node
        for partition in range(self._num_partitions):
            placement = table.partitions[partition] if partition < len(table.partitions) else None
            processor = self.processors.get(partition)
            if placement is None or me not in placement.replicas:
                if processor is not None:
                    del self.processors[partition]
                    asyncio.ensure_future(processor.stop())
                continue
            if processor is None:
                processor = self.processors[partition] = self._new_processor(partition)
                processor.start()
            if placement.leader == me:
                processor.lead()
            else:
                processor.follow()

    def _new_processor(self, partition: int) -> PartitionProcessor:
        return PartitionProcessor(
            partition,
            self._num_partitions,
            self.me,
            self._log.bifrost,
            self._partitions.partition(partition),
            self._epochs,
            self._make_invoker,
            self._answer_ingress,
            _wall_ms,
        )

    def _make_invoker(self, processor: PartitionProcessor) -> Invoker:
        return Invoker(
            self.transport,
            lambda: self.schemas.current,
            LeaderPartition(processor),
            slots=self._slots,
            stats=self.invoker_stats,
        )

    def _answer_ingress(self, action: IngressResponse | IngressSubmitted | IngressRejected) -> None:
        node, reply = reply_of(action)
        if node == self.me.node:
            self.submitter.deliver(reply)
        else:
            self._log.notify(node, TOPIC, encode_reply(reply))

    # --- the controller -----------------------------------------------------------------------

    async def _controller(self) -> None:
        while True:
            await asyncio.sleep(CONTROLLER_INTERVAL_S)
            live = self._live_workers()
            if not live or min(live) != self.me.node:
                continue
            with contextlib.suppress(MetadataUnavailable, UnknownOutcome):
                await self._place(live)

    async def _place(self, live: list[int]) -> None:
        table, version = await load_partition_table(self._store)
        wanted = place(table, self._num_partitions, live, max(1, self._cfg.bifrost.replication))
        if wanted == table:
            return
        pre = Precondition.does_not_exist() if version is None else Precondition.matches(version)
        try:
            await self._store.put(PARTITION_TABLE_KEY, encode_table(wanted), pre)
            log.info("partition table updated", extra={"live": live})
        except PreconditionFailed:
            pass  # someone else's newer table: the next round starts from it

    def _live_workers(self) -> list[int]:
        alive: Callable[[int], bool] = self._log.is_live
        return sorted(
            n.node_id for n in self._log.view.nodes.nodes.values() if "worker" in n.roles and alive(n.node_id)
        )

"""Prometheus metrics on the admin port's /metrics, read from the components' own counters at
scrape time (the components keep plain stats objects and know nothing of Prometheus)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from bifrost.bifrost import LATENCY_BUCKETS_S
from node.log_role import LogRole
from processor.invoker.invoker import InvokerStats


class EdgeRefusals:
    """Connections and calls refused at this process's edges (gRPC auth, HTTP limits), by
    listener and reason. One per process: each node runs in its own process."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, listener: str, reason: str) -> None:
        key = (listener, reason)
        self.counts[key] = self.counts.get(key, 0) + 1


EDGE = EdgeRefusals()


class LogRoleCollector(Collector):
    def __init__(self, role: LogRole) -> None:
        self._role = role

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        stats = self._role.bifrost.stats
        yield CounterMetricFamily(
            "durastate_bifrost_appended_records",
            "Records acknowledged by appends",
            value=stats.appended_records,
        )
        yield CounterMetricFamily(
            "durastate_bifrost_reappended_records",
            "Records appended again into a new segment after the old one failed them (tagged copies)",
            value=self._role.bifrost.reappended_records,
        )
        yield CounterMetricFamily(
            "durastate_bifrost_duplicate_appends_suppressed",
            "Records of resent batches this node's sequencers answered from memory (not written twice)",
            value=self._role.provider.duplicate_appends,
        )
        yield CounterMetricFamily(
            "durastate_bifrost_reconfigurations",
            "Segments this node sealed and replaced",
            value=stats.reconfigurations,
        )
        buckets, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), stats.latency_counts, strict=True):
            running += count
            buckets.append((str(bound) if bound != float("inf") else "+Inf", running))
        yield HistogramMetricFamily(
            "durastate_bifrost_append_seconds",
            "Append latency until committed",
            buckets=buckets,
            sum_value=stats.latency_sum_s,
        )
        batches = GaugeMetricFamily(
            "durastate_sequencer_batches", "Store batches sent by this node's sequencers", labels=["loglet"]
        )
        records = GaugeMetricFamily(
            "durastate_sequencer_records", "Records sent by this node's sequencers", labels=["loglet"]
        )
        stores = GaugeMetricFamily(
            "durastate_sequencer_stores",
            "Stores sent by this node's sequencers, to all log-servers (a store may carry several batches)",
            labels=["loglet"],
        )
        for loglet_id, seq in self._role.provider.sequencers.items():
            name = f"{loglet_id >> 32}_{loglet_id & 0xFFFFFFFF}"
            batches.add_metric([name], seq.batches_sent)
            records.add_metric([name], seq.records_sent)
            stores.add_metric([name], seq.stores_sent)
        yield batches
        yield records
        yield stores
        writer = self._role.log_store_writer_stats()
        if writer is not None:
            yield CounterMetricFamily(
                "durastate_log_server_syncs", "Synced RocksDB write batches", value=writer.batches
            )
            yield CounterMetricFamily(
                "durastate_log_server_write_sets",
                "Persist write sets group-committed",
                value=writer.write_sets,
            )
        service = self._role.log_server
        if service is not None:
            yield CounterMetricFamily(
                "durastate_log_server_faults",
                "Times this log-server started refusing writes (a failed write or an unreadable store)",
                value=service.faults,
            )
            state = GaugeMetricFamily(
                "durastate_log_server_storage_state",
                "This node's log-server storage state (1 for the current one)",
                labels=["state"],
            )
            state.add_metric([self._role.storage_state()], 1.0)
            yield state
        alive = GaugeMetricFamily("durastate_peer_alive", "Failure detector's view of peers", labels=["peer"])
        for node in self._role.view.log_servers():
            if node != self._role.me.node:
                alive.add_metric(
                    [self._role.view.name_of(node)], 1.0 if self._role.detector.is_alive(node) else 0.0
                )
        yield alive
        refused = CounterMetricFamily(
            "durastate_data_port_refused",
            "Data-port connections and messages refused (authentication, identity, limits), by reason",
            labels=["reason"],
        )
        for reason, n in sorted(self._role.network.refusals.counts.items()):
            refused.add_metric([reason], n)
        yield refused
        handshaking, open_ = self._role.network.connections
        conns = GaugeMetricFamily(
            "durastate_data_port_connections", "Inbound data-port connections", labels=["state"]
        )
        conns.add_metric(["handshake"], handshaking)
        conns.add_metric(["authenticated"], open_)
        yield conns
        edge = CounterMetricFamily(
            "durastate_edge_refused",
            "gRPC calls and HTTP connections refused (missing or wrong token, limits), by reason",
            labels=["listener", "reason"],
        )
        for (listener, reason), n in sorted(EDGE.counts.items()):
            edge.add_metric([listener, reason], n)
        yield edge


class InvokerCollector(Collector):
    """The attempts this node's invokers ran, over all the partitions it led since it started."""

    def __init__(self, stats: InvokerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        s = self._stats
        for name, doc, value in (
            ("attempts_started", "Invocation attempts started against deployments", s.attempts_started),
            ("attempts_failed", "Invocation attempts that failed (retryable or paused)", s.attempts_failed),
            ("retries_scheduled", "Retries scheduled after a failed attempt", s.retries_scheduled),
            ("paused", "Invocations paused by their retry policy or by the SDK", s.paused),
            ("killed", "Invocations killed by their retry policy", s.killed),
        ):
            yield CounterMetricFamily(f"durastate_invoker_{name}", doc, value=value)


def render(role: LogRole, invoker_stats: InvokerStats | None = None) -> bytes:
    registry = CollectorRegistry()
    registry.register(LogRoleCollector(role))
    if invoker_stats is not None:
        registry.register(InvokerCollector(invoker_stats))
    return generate_latest(registry)

"""Prometheus metrics: gateway requests, latency, overhead, tokens, errors, writer backlog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bastion.observability.exchange import Exchange
from bastion.tables.writer import DurableWriter

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class _WriterCollector(Collector):
    def __init__(self, writer: DurableWriter) -> None:
        self._writer = writer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._writer.stats()
        pending = GaugeMetricFamily(
            "bastion_writer_pending_rows",
            "Rows acknowledged but not yet in Delta.",
            labels=["table"],
        )
        failed = GaugeMetricFamily(
            "bastion_writer_failed_rows",
            "Rows whose Delta commit is failing (kept, retried).",
            labels=["table"],
        )
        written = CounterMetricFamily(
            "bastion_writer_written_rows", "Rows committed to Delta.", labels=["table"]
        )
        rejected = CounterMetricFamily(
            "bastion_writer_rejected_rows", "Rows refused under back-pressure.", labels=["table"]
        )
        quarantined = CounterMetricFamily(
            "bastion_writer_quarantined_rows",
            "Rows set aside as not fitting the schema.",
            labels=["table"],
        )
        for name, table in stats.tables.items():
            pending.add_metric([name], table.pending)
            failed.add_metric([name], table.failed)
            written.add_metric([name], table.written)
            rejected.add_metric([name], table.rejected)
            quarantined.add_metric([name], table.quarantined)
        yield from (pending, failed, written, rejected, quarantined)


class Metrics:
    """One registry per server process (not the global one), so tests can run many servers."""

    def __init__(self, writer: DurableWriter) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bastion_gateway_requests",
            "Serving requests.",
            ["endpoint", "api", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_gateway_request_duration_seconds",
            "Total time of serving requests.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.overhead = Histogram(
            "bastion_gateway_overhead_seconds",
            "Time the gateway adds to a request (total minus upstream time).",
            ["endpoint"],
            buckets=_OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "bastion_gateway_tokens",
            "Tokens served.",
            ["endpoint", "direction"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "bastion_gateway_upstream_errors",
            "Failed calls to model servers (including those a fallback recovered).",
            ["endpoint"],
            registry=self.registry,
        )
        self.registry.register(_WriterCollector(writer))
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[str, tuple[Any, Any]] = {}

    def observe(self, exchange: Exchange) -> None:
        endpoint = exchange.endpoint or ""
        key = (endpoint, exchange.api.value, exchange.status)
        counter = self._requests.get(key)
        if counter is None:  # labels() costs a lock and a tuple each time: keep the children
            counter = self._requests[key] = self.requests.labels(key[0], key[1], str(key[2]))
        counter.inc()
        timers = self._timers.get(endpoint)
        if timers is None:
            timers = self._timers[endpoint] = (
                self.latency.labels(endpoint),
                self.overhead.labels(endpoint),
            )
        timers[0].observe(exchange.total_ms / 1000)
        timers[1].observe(exchange.overhead_ms / 1000)
        if exchange.input_tokens:
            self.tokens.labels(endpoint, "input").inc(exchange.input_tokens)
        if exchange.output_tokens:
            self.tokens.labels(endpoint, "output").inc(exchange.output_tokens)
        if exchange.upstream_failures:
            self.upstream_errors.labels(endpoint).inc(exchange.upstream_failures)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""This process's part in a deployment: who leads, and what the leader does.

Every server process runs a :class:`~bastion.metastore.lease.LeaderElection` (a PostgreSQL
advisory lock, or a file lock next to a SQLite metastore). Exactly one process of the
deployment holds it and runs what must run once:

* the embedded **model workers** (the default model's llama.cpp worker and every other
  GGUF / pyfunc worker) — the other processes on its host route to them
  (:mod:`bastion.serving.workers.shared`);
* **orphaned write-ahead logs**: a slot no live process holds any more (fewer processes than
  before) is replayed into Delta (:func:`bastion.tables.slots.drain_orphans`), every
  ``drain_interval_s``;
* **compaction** of the logged tables' small files, after its own commits to them and every
  ``drain_interval_s`` for all of them (``BASTION_WRITER_COMPACT_MIN_FILES``;
  :func:`bastion.tables.delta.compact_small_files`): one compactor per deployment, since two
  compacting the same table at once would duplicate rows; and, hourly, a ``VACUUM`` of the
  files compactions replaced longer ago than the table's retention (7 days by default).

Migrations run once too, but before any of this: ``bastion up`` migrates under an advisory
lock, and ``bastion serve`` waits for the schema instead (:mod:`bastion.metastore.db`).

When the leader dies, PostgreSQL ends its session and releases the lock (the kernel closes
the socket of a killed process; TCP keepalives catch a vanished host), and within
``BASTION_LEADER_INTERVAL_S`` another process takes the lease and starts the duties: model
workers restart there (requests to their endpoints get 503 "starting" meanwhile), and the
dead leader's own write-ahead log is replayed by whichever process claims its slot next.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bastion.metastore.lease import LeaderElection, Lease
from bastion.observability.payload_tables import bound_payload_tables
from bastion.platform import Platform
from bastion.serving.budgets import BudgetService
from bastion.serving.control.service import ServingControl
from bastion.serving.workers.shared import SharedWorkerSupervisor
from bastion.tables.slots import drain_orphans
from bastion.tables.system import payload_table
from bastion.tables.writer import TableSpec

logger = logging.getLogger(__name__)


class Cluster:
    def __init__(
        self, platform: Platform, serving: ServingControl, *, drain_interval_s: float = 30.0
    ) -> None:
        self.platform = platform
        self.serving = serving
        self.drain_interval_s = drain_interval_s
        self.vacuum_interval_s = 3600.0
        self._vacuumed_at: float | None = None
        self.election = LeaderElection(
            Lease(platform.settings.resolved_database_url),
            on_elected=self._lead,
            on_deposed=self._follow,
            interval_s=platform.settings.leader_interval_s,
        )
        self._duty_stop = threading.Event()
        self._duty: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader

    def start(self) -> None:
        self.election.start()
        if not self.election.is_leader:
            self._follow()

    def stop(self) -> None:
        self.election.close()
        self._stop_duty()

    # -- duties ---------------------------------------------------------------------------

    def _lead(self) -> None:
        self.platform.writer.compact_min_files = self.platform.settings.writer_compact_min_files
        supervisor = self.serving.supervisor
        if isinstance(supervisor, SharedWorkerSupervisor):
            supervisor.lead()
        if self._duty is None:
            self._duty_stop.clear()
            self._duty = threading.Thread(target=self._duty_loop, name="bastion-lead", daemon=True)
            self._duty.start()

    def _follow(self) -> None:
        self.platform.writer.compact_min_files = 0
        supervisor = self.serving.supervisor
        if isinstance(supervisor, SharedWorkerSupervisor):
            supervisor.follow()
        self._stop_duty()

    def _stop_duty(self) -> None:
        self._duty_stop.set()
        if self._duty is not None and self._duty is not threading.current_thread():
            self._duty.join(timeout=30)
        self._duty = None

    def _duty_loop(self) -> None:
        while True:
            try:
                self.drain_orphaned_logs()
            except Exception:
                logger.exception("replaying orphaned write-ahead logs failed")
            try:
                self.compact_tables()
                now = time.monotonic()
                if self._vacuumed_at is None or now - self._vacuumed_at >= self.vacuum_interval_s:
                    self._vacuumed_at = now
                    self.vacuum_tables()
            except Exception:
                logger.exception("compacting or vacuuming the logged tables failed")
            if self._duty_stop.wait(self.drain_interval_s):
                return

    def compact_tables(self) -> int:
        """Compact every logged table, including those this process has not written to: the
        writer compacts after its own commits, but at low traffic all of a table's rows may
        reach other processes. Returns the files rewritten."""
        platform = self.platform
        if platform.writer.compact_min_files <= 0:
            return 0
        for name in bound_payload_tables(platform):
            platform.writer.register(payload_table(name).spec(platform.table_storage))
        return self._each_table(platform.writer.compact)

    def vacuum_tables(self) -> int:
        """Delete the logged tables' files that compactions replaced longer ago than each
        table's retention (hourly, with compaction on). Returns the files deleted."""
        writer = self.platform.writer
        return self._each_table(writer.vacuum) if writer.compact_min_files > 0 else 0

    def _each_table(self, maintain: Callable[[str], int]) -> int:
        done = 0
        for name in self.platform.writer.tables():
            if self._duty_stop.is_set():
                break
            done += maintain(name)
        return done

    def drain_orphaned_logs(self) -> int:
        """Replay what write-ahead log slots that no live process holds still keep."""
        platform = self.platform
        writer = platform.writer
        bound: set[str] | None = None

        def resolve(name: str) -> TableSpec | None:
            nonlocal bound
            spec = writer.spec(name)
            if spec is not None:
                return spec
            if name.endswith("_payload"):
                if bound is None:
                    bound = set(bound_payload_tables(platform))
                if name in bound:
                    return payload_table(name).spec(platform.table_storage)
            return None

        settings = platform.settings
        return drain_orphans(
            settings.resolved_wal_dir,
            own=writer.wal_dir,
            resolve=resolve,
            flush_rows=settings.writer_flush_rows,
            flush_interval_s=settings.writer_flush_interval_s,
        )


class ClusterCollector(Collector):
    """``/metrics`` for what replicas share: Redis health and fallbacks, invalidations,
    leadership, budgets."""

    def __init__(self, platform: Platform, cluster: Cluster, budgets: BudgetService) -> None:
        self.platform = platform
        self.cluster = cluster
        self.budgets = budgets

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        platform = self.platform
        leader = GaugeMetricFamily(
            "bastion_leader", "1 if this process holds the leader lease (runs model workers)."
        )
        leader.add_metric([], 1.0 if self.cluster.is_leader else 0.0)
        yield leader
        pid = GaugeMetricFamily(
            "bastion_server_pid", "The pid of the server process that answered this scrape."
        )
        pid.add_metric([], float(os.getpid()))
        yield pid
        slot = GaugeMetricFamily("bastion_wal_slot", "The write-ahead log slot of this process.")
        slot.add_metric([], float(platform.wal_slot))
        yield slot
        health = platform.redis_health
        if health is not None:
            up = GaugeMetricFamily("bastion_redis_up", "0 while Redis calls are failing.")
            up.add_metric([], 1.0 if health.available() else 0.0)
            yield up
            errors = CounterMetricFamily(
                "bastion_redis_errors", "Failed Redis calls.", labels=["operation"]
            )
            for operation, count in sorted(health.errors.items()):
                errors.add_metric([operation], count)
            yield errors
            fallbacks = CounterMetricFamily(
                "bastion_redis_fallbacks",
                "Requests or updates that went on without Redis, by what was done instead.",
                labels=["operation", "outcome"],
            )
            for (operation, outcome), count in sorted(health.fallbacks.items()):
                fallbacks.add_metric([operation, outcome], count)
            yield fallbacks
        invalidator = platform.invalidator
        if invalidator is not None:
            pushed = CounterMetricFamily(
                "bastion_cache_invalidations",
                "Cache invalidations published to / received from other replicas.",
                labels=["direction"],
            )
            pushed.add_metric(["published"], invalidator.published)
            pushed.add_metric(["received"], invalidator.received)
            yield pushed
        budgets = CounterMetricFamily(
            "bastion_budget_events",
            "Budget rejections, alerts claimed, alert deliveries, spend not counted, baselines.",
            labels=["event"],
        )
        counts = dict(self.budgets.counts)
        for event, count in self.budgets.sender.counts.items():
            counts[f"alert_{event}"] = count
        for event, count in sorted(counts.items()):
            budgets.add_metric([event], count)
        yield budgets


async def close_shared(limiter: object, budgets: BudgetService) -> None:
    """Send what is still in flight to Redis and close this loop's connections."""
    closer = getattr(limiter, "aclose", None)
    if closer is not None:
        await closer()
    await budgets.drain()
    store_closer = getattr(budgets.store, "aclose", None)
    if store_closer is not None:
        await store_closer()

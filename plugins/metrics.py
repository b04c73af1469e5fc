"""Built-in observer: Prometheus metrics, as SPEC.md "Operating it" names them.

Counters and histograms are fed by the engine as it runs: every attempt by wrapping
`scheduler_run_attempt`, the attempts the reaper finds lost by `scheduler_attempt_lost`,
enqueued tasks by the API. They count what this process did: several processes are summed
by whoever scrapes them. The gauges of tasks by status and of the due backlog are read
from the database at each scrape (`DatabaseGauges`), so every process shows the same.

Each PluginManager holds its own `Metrics` and registry (never prometheus_client's global
one), so many apps in one process (tests) do not share or collide.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import (
    DEFAULT_QUEUE,
    AttemptOutcome,
    ClaimedTask,
    RecordedOutcome,
    Task,
    TaskStatus,
)
from scheduler_core.plugins.host_metrics import HostGauges
from scheduler_core.store.base import Store

log = logging.getLogger(__name__)

PLUGIN_NAME = "scheduler_core.plugins.metrics"
# The Prometheus text format that generate_latest() writes (every name here is a classic
# one), as every Prometheus version reads it; newer clients call it version=1.0.0.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. Lateness is a few ms when all is well, seconds to hours behind a backlog.
LATENESS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
# Seconds. A callback answers in ms; http_callback_timeout_ms allows up to 1800 s.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip


class Metrics:
    """One process's metrics and the registry `/metrics` renders. Thread-safe: delivery
    threads, API threads and scrapes use it at once."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.enqueued = Counter(
            "scheduler_tasks_enqueued",
            "Tasks this process created through the API (idempotent repeats not counted).",
            ["queue"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "scheduler_attempts",
            "Delivery attempts this process ended, by outcome (resolved, failed, lost).",
            ["queue", "outcome"],
            registry=self.registry,
        )
        self.delivery_duration = Histogram(
            "scheduler_delivery_duration_seconds",
            "How long each attempt's delivery took, from its start to the answer or failure.",
            ["queue"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.lateness = Histogram(
            "scheduler_lateness_seconds",
            "When each attempt's first byte was sent, minus the task's nextAttemptAt.",
            ["queue"],
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self._database: DatabaseGauges | None = None
        self._hosts: HostGauges | None = None
        # Every series exists from the start, at 0: rate() and absent() work at once.
        self.enqueued.labels(DEFAULT_QUEUE)
        for outcome in AttemptOutcome:
            self.attempts.labels(DEFAULT_QUEUE, outcome.value)
        self.delivery_duration.labels(DEFAULT_QUEUE)
        self.lateness.labels(DEFAULT_QUEUE)

    # -- what the engine reports ------------------------------------------------------

    @hookimpl(wrapper=True)
    def scheduler_run_attempt(
        self, task: ClaimedTask
    ) -> Generator[None, RecordedOutcome, RecordedOutcome]:
        recorded = yield
        try:
            self.attempt_ended(recorded, task.queue)
        except Exception as exc:  # a metric must never fail an attempt that was delivered
            log.error("task=%s: counting the attempt failed (%s)", task.id, type(exc).__name__)
        return recorded

    @hookimpl
    def scheduler_task_enqueued(self, task: Task) -> None:
        self.enqueued.labels(task.queue).inc()

    @hookimpl(trylast=True)
    def scheduler_attempt_lost(self, recorded: RecordedOutcome) -> None:
        self.attempts.labels(recorded.queue, AttemptOutcome.LOST.value).inc()

    def attempt_ended(self, recorded: RecordedOutcome, queue: str = DEFAULT_QUEUE) -> None:
        """Count one attempt run by this process: its outcome, its duration and, when it
        measured one, its lateness. An attempt that went async (a 202 with Scheduler-Async)
        is counted when it ends: through its completion URL, or at its timeout."""
        if recorded.awaiting:
            return
        self.attempts.labels(queue, recorded.kind.value).inc()
        self.delivery_duration.labels(queue).observe(recorded.outcome.duration_ms / 1000)
        if recorded.lateness_ms is not None:
            self.lateness.labels(queue).observe(recorded.lateness_ms / 1000)

    def tasks_enqueued(self, count: int, queue: str = DEFAULT_QUEUE) -> None:
        """Count `count` tasks created (not the ones an idempotency key sent back)."""
        if count > 0:
            self.enqueued.labels(queue).inc(count)

    # -- scraping ---------------------------------------------------------------------

    def read_database(self, store: Store) -> None:
        """Show the gauges read from `store` at every scrape (the last store given)."""
        if self._database is not None:
            self.registry.unregister(self._database)
        self._database = DatabaseGauges(store)
        self.registry.register(self._database)
        if self._hosts is not None:
            self.registry.unregister(self._hosts)
        self._hosts = HostGauges(store)  # per-host backpressure
        self.registry.register(self._hosts)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (served as CONTENT_TYPE)."""
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated:
    """The registry less prometheus_client's `*_created` samples (when each series began),
    which the text format shows as extra gauges beside SPEC's names; rate() and
    increase() do without them. Each collect() builds fresh Metric objects."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            if metric.type in {"counter", "histogram"}:
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class DatabaseGauges(Collector):
    """scheduler_tasks, scheduler_due_backlog and scheduler_oldest_due_age_seconds, read
    with one `Store.queue_counts()` per scrape. When the database cannot answer, the
    scrape goes on without them (Prometheus then sees the series vanish, not a stale
    value) and one line is logged."""

    def __init__(self, store: Store):
        self._store = store

    def describe(self) -> Iterable[Metric]:
        # Registering asks for the names; describe() answers without the database.
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        try:
            counts = self._store.queue_counts()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            log.warning(
                "/metrics: database gauges left out of this scrape (%s: %s)",
                type(exc).__name__,
                first,
            )
            return []
        tasks, backlog, oldest = self._families()
        for queue in counts:
            for status in TaskStatus:
                tasks.add_metric([queue.queue, status.value], queue.counts.get(status, 0))
            backlog.add_metric([queue.queue], queue.due_backlog)
            oldest.add_metric([queue.queue], queue.oldest_due_age_s)
        return [tasks, backlog, oldest]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "scheduler_tasks",
                "Tasks in the database by queue and status, read at scrape time.",
                labels=["queue", "status"],
            ),
            GaugeMetricFamily(
                "scheduler_due_backlog",
                "Pending tasks whose nextAttemptAt has come (database clock).",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "scheduler_oldest_due_age_seconds",
                "How long the oldest due pending task has been due; 0 when none is.",
                labels=["queue"],
            ),
        )

"""Per-host backpressure gauges for /metrics, read from `scheduler_hosts` at each scrape.

At most MAX_HOST_LABELS hosts get their own series (the most throttled); the rest are
summed under host="other", so a flood of distinct hosts cannot blow up the label set.
Hosts never throttled have no row and no series.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduler_core.store.base import Store

log = logging.getLogger(__name__)

MAX_HOST_LABELS = 50
OTHER = "other"


class HostGauges(Collector):
    """scheduler_host_blocked_seconds, scheduler_host_max_concurrent,
    scheduler_host_max_per_second and scheduler_host_throttled_total by host."""

    def __init__(self, store: Store):
        self._store = store

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        try:
            hosts = self._store.list_hosts()
        except Exception as exc:
            # DatabaseGauges logs the one line for this scrape's database error.
            log.debug("/metrics: host gauges left out of this scrape (%s)", type(exc).__name__)
            return []
        blocked, concurrent, rate, throttled = self._families()
        for info in hosts[:MAX_HOST_LABELS]:
            blocked.add_metric([info.host], info.blocked_s)
            if info.max_concurrent is not None:
                concurrent.add_metric([info.host], info.max_concurrent)
            if info.max_per_second is not None:
                rate.add_metric([info.host], info.max_per_second)
            throttled.add_metric([info.host], info.throttled_total)
        rest = hosts[MAX_HOST_LABELS:]
        if rest:  # the longest block among them, their throttling summed; no limits
            blocked.add_metric([OTHER], max(info.blocked_s for info in rest))
            throttled.add_metric([OTHER], sum(info.throttled_total for info in rest))
        return [blocked, concurrent, rate, throttled]

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily
    ]:
        return (
            GaugeMetricFamily(
                "scheduler_host_blocked_seconds",
                "Seconds until a throttled host's tasks may start again (Retry-After).",
                labels=["host"],
            ),
            GaugeMetricFamily(
                "scheduler_host_max_concurrent",
                "A throttled host's current concurrency limit (AIMD).",
                labels=["host"],
            ),
            GaugeMetricFamily(
                "scheduler_host_max_per_second",
                "A throttled host's current start rate limit, per second (AIMD).",
                labels=["host"],
            ),
            CounterMetricFamily(
                "scheduler_host_throttled",
                "429 and 503 answers from a host since its row was made.",
                labels=["host"],
            ),
        )

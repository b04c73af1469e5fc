"""The store's read verbs for operators: counts by status, due backlog, lateness and
activity, as `/metrics`, `GET /api/v1/stats` and the dashboard show them.

Everything is measured by the database clock. The due backlog and lateness are indexed
reads (the due index per queue, scheduler_attempts_started); the counts by queue and
status are one GROUP BY read from the (queue, status) index alone, at every scrape of
every process.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scheduler_core.models import ActivityBucket, QueueCounts, TaskStatus

if TYPE_CHECKING:
    from scheduler_core.store.sql_store import Cursor

NOTHING_DUE = (0, 0.0)
# activity() answers at most this many buckets (a day by the minute).
MAX_BUCKETS = 1440


class StatsVerbs:
    """Mixed into SqlStore: the verbs written once over each backend's named queries."""

    q: dict[str, str]

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _time(self, value: Any) -> datetime: ...

    def queue_counts(self) -> list[QueueCounts]:
        with self._read() as cur:
            cur.execute(self.q["queue_rows"])
            names = sorted(row["queue"] for row in cur.fetchall())
            counts = read_task_counts(self.q, cur, None)
            due = read_due(self.q, cur, None)
        # Every queue, then the removed ones whose finished tasks retention still keeps.
        removed = sorted(set(counts) - set(names))
        return [
            QueueCounts(
                queue=name,
                counts=counts.get(name) or dict.fromkeys(TaskStatus, 0),
                due_backlog=due.get(name, NOTHING_DUE)[0],
                oldest_due_age_s=due.get(name, NOTHING_DUE)[1],
            )
            for name in [*names, *removed]
        ]

    def lateness_percentiles(self, window_s: int = 300) -> tuple[float | None, float | None]:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        with self._read() as cur:
            cur.execute(self.q["lateness_percentiles"], {"window_s": window_s})
            row = cur.fetchone()
        return _ms(row["p50"]), _ms(row["p99"])

    def activity(self, window_s: int = 3600, bucket_s: int = 60) -> list[ActivityBucket]:
        if window_s <= 0 or bucket_s <= 0:
            raise ValueError(f"window_s and bucket_s must be positive, got {window_s}, {bucket_s}")
        count = math.ceil(window_s / bucket_s)
        if count > MAX_BUCKETS:
            raise ValueError(f"at most {MAX_BUCKETS} buckets, got {count}")
        with self._read() as cur:
            cur.execute(self.q["clock"])
            now = self._time(cur.fetchone()["db_now"]).timestamp()
            # Buckets on multiples of bucket_s, the last one holding now: the same bucket
            # keeps its start from one call to the next.
            first = math.floor(now / bucket_s) * bucket_s - (count - 1) * bucket_s
            cur.execute(self.q["activity"], {"since": first, "bucket_s": bucket_s})
            rows = {int(r["bucket"]): r for r in cur.fetchall()}
        buckets = []
        for start in range(first, first + count * bucket_s, bucket_s):
            row = rows.get(start)
            buckets.append(
                ActivityBucket(
                    start=datetime.fromtimestamp(start, UTC),
                    attempts=int(row["attempts"]) if row else 0,
                    resolved=int(row["resolved"]) if row else 0,
                    failed=int(row["failed"]) if row else 0,
                    lateness_p50_ms=_ms(row["p50"]) if row else None,
                    lateness_p99_ms=_ms(row["p99"]) if row else None,
                )
            )
        return buckets


def read_task_counts(
    q: dict[str, str], cur: Cursor, name: str | None
) -> dict[str, dict[TaskStatus, int]]:
    """{queue: {status: tasks}} (every status) of every queue holding tasks, removed ones
    included, or of the queue `name` only."""
    if name is None:
        cur.execute(q["task_counts_by_queue"])
    else:
        cur.execute(q["task_counts_of_queue"], {"queue": name})
    counts: dict[str, dict[TaskStatus, int]] = {}
    for row in cur.fetchall():
        by_status = counts.setdefault(row["queue"], dict.fromkeys(TaskStatus, 0))
        by_status[TaskStatus(row["status"])] = int(row["tasks"])
    return counts


def read_due(q: dict[str, str], cur: Cursor, name: str | None) -> dict[str, tuple[int, float]]:
    """{queue: (due backlog, seconds since its oldest due task fell due)} of every queue,
    or of the queue `name` only."""
    cur.execute(q["due_by_queue"], {"queue": name})
    return {
        row["queue"]: (int(row["due"]), max(0.0, float(row["oldest_due_age_s"])))
        for row in cur.fetchall()
    }


def _ms(value: Any) -> float | None:
    return float(value) if value is not None else None

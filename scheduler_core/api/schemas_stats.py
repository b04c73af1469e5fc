"""marshmallow output schemas of `GET /api/v1/stats` (the openapi helper documents every
Schema in this module)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marshmallow import Schema, fields

from scheduler_core.models import QueueCounts, TaskStatus


class StatusCountsSchema(Schema):
    """Tasks by status; every status is present, 0 when none."""

    class Meta:
        ordered = True

    pending = fields.Integer(required=True)
    running = fields.Integer(required=True)
    resolved = fields.Integer(required=True)
    stale = fields.Integer(required=True)
    cancelled = fields.Integer(required=True)


class LatenessSchema(Schema):
    """Nearest-rank percentiles of the lateness (first byte sent minus nextAttemptAt) of
    the attempts started in the last `windowSeconds`; null when none measured one."""

    class Meta:
        ordered = True

    windowSeconds = fields.Integer(attribute="window_s", required=True)
    p50Ms = fields.Float(attribute="p50_ms", allow_none=True, required=True)
    p99Ms = fields.Float(attribute="p99_ms", allow_none=True, required=True)


class QueueStatsSchema(Schema):
    """One queue's tasks by status and its due backlog, by the database clock."""

    class Meta:
        ordered = True

    queue = fields.String(required=True)
    counts = fields.Nested(StatusCountsSchema, required=True)
    dueBacklog = fields.Integer(attribute="due_backlog", required=True)
    oldestDueAgeSeconds = fields.Float(attribute="oldest_due_age_s", required=True)


class StatsOutputSchema(Schema):
    """Every queue together, then each queue: counts and backlog summed, the oldest due
    age the largest of any queue."""

    class Meta:
        ordered = True

    counts = fields.Nested(StatusCountsSchema, required=True)
    dueBacklog = fields.Integer(attribute="due_backlog", required=True)
    oldestDueAgeSeconds = fields.Float(attribute="oldest_due_age_s", required=True)
    lateness = fields.Nested(LatenessSchema, required=True)
    queues = fields.List(fields.Nested(QueueStatsSchema), required=True)


stats_output = StatsOutputSchema()


def stats_json(
    queues: Sequence[QueueCounts],
    lateness: tuple[float | None, float | None],
    window_s: int,
) -> dict[str, Any]:
    """The stats document: `queues` from Store.queue_counts(), `lateness` (p50, p99 ms)
    from Store.lateness_percentiles(window_s)."""
    total = {status: sum(q.counts.get(status, 0) for q in queues) for status in TaskStatus}
    data = {
        "counts": _by_value(total),
        "due_backlog": sum(q.due_backlog for q in queues),
        "oldest_due_age_s": max((q.oldest_due_age_s for q in queues), default=0.0),
        "lateness": {"window_s": window_s, "p50_ms": lateness[0], "p99_ms": lateness[1]},
        "queues": [
            {
                "queue": q.queue,
                "counts": _by_value(q.counts),
                "due_backlog": q.due_backlog,
                "oldest_due_age_s": q.oldest_due_age_s,
            }
            for q in queues
        ],
    }
    result: dict[str, Any] = stats_output.dump(data)
    return result


def _by_value(counts: Mapping[TaskStatus, int]) -> dict[str, int]:
    return {status.value: counts.get(status, 0) for status in TaskStatus}

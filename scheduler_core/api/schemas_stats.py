"""marshmallow output schemas of `GET /api/v1/stats` (the openapi helper documents every
Schema in this module)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marshmallow import fields

from scheduler_core.marshmallow_base import ResponseSchema
from scheduler_core.models import QueueCounts, TaskStatus


class StatusCountsSchema(ResponseSchema):
    """Tasks by status; every status is present, 0 when none."""

    class Meta:
        ordered = True

    pending = fields.Integer(
        required=True, metadata={"description": "Tasks waiting for their time or for a retry."}
    )
    running = fields.Integer(
        required=True, metadata={"description": "Tasks with a delivery in flight, under a lease."}
    )
    resolved = fields.Integer(
        required=True,
        metadata={
            "description": "Tasks delivered successfully, kept until retention deletes them."
        },
    )
    stale = fields.Integer(
        required=True,
        metadata={"description": "Tasks that used up their retries; retry them through the API."},
    )
    cancelled = fields.Integer(
        required=True, metadata={"description": "Tasks cancelled through the API."}
    )


class LatenessSchema(ResponseSchema):
    """Nearest-rank percentiles of the lateness (first byte sent minus nextAttemptAt) of
    the attempts started in the last `windowSeconds`; null when none measured one."""

    class Meta:
        ordered = True

    windowSeconds = fields.Integer(
        attribute="window_s",
        required=True,
        metadata={"description": "How far back the percentiles look, in seconds."},
    )
    p50Ms = fields.Float(
        attribute="p50_ms",
        allow_none=True,
        required=True,
        metadata={
            "description": "Median lateness in ms; null when no attempt started in the window."
        },
    )
    p99Ms = fields.Float(
        attribute="p99_ms",
        allow_none=True,
        required=True,
        metadata={"description": "p99 lateness in ms; null when no attempt started in the window."},
    )


class QueueStatsSchema(ResponseSchema):
    """One queue's tasks by status and its due backlog, by the database clock."""

    class Meta:
        ordered = True

    queue = fields.String(required=True, metadata={"description": "The queue's name."})
    counts = fields.Nested(
        StatusCountsSchema, required=True, metadata={"description": "Tasks by status."}
    )
    dueBacklog = fields.Integer(
        attribute="due_backlog",
        required=True,
        metadata={
            "description": "Pending tasks already due (nextAttemptAt <= now by the database clock)."
        },
    )
    oldestDueAgeSeconds = fields.Float(
        attribute="oldest_due_age_s",
        required=True,
        metadata={
            "description": "Seconds since the oldest due pending task fell due; 0 when none is due."
        },
    )


class StatsOutputSchema(ResponseSchema):
    """Every queue together, then each queue: counts and backlog summed, the oldest due
    age the largest of any queue."""

    class Meta:
        ordered = True

    counts = fields.Nested(
        StatusCountsSchema, required=True, metadata={"description": "Tasks by status."}
    )
    dueBacklog = fields.Integer(
        attribute="due_backlog",
        required=True,
        metadata={
            "description": "Pending tasks already due (nextAttemptAt <= now by the database clock)."
        },
    )
    oldestDueAgeSeconds = fields.Float(
        attribute="oldest_due_age_s",
        required=True,
        metadata={
            "description": "Seconds since the oldest due pending task fell due; 0 when none is due."
        },
    )
    lateness = fields.Nested(
        LatenessSchema,
        required=True,
        metadata={"description": "Lateness of the attempts started in the last 5 minutes."},
    )
    queues = fields.List(
        fields.Nested(QueueStatsSchema),
        required=True,
        metadata={"description": "The same figures for each queue."},
    )


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

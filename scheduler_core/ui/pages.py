"""What an operator reads: overview, tasks, one task, failing tasks, the config.

Tasks and attempts are shown through the API's own output (`task_json`,
`attempt_output`), so a page shows exactly what `GET /api/v1/tasks/...` returns: the
webhook URL masked as the API masks it, and never a task's webhookAuth.
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, request

from scheduler_core.api.fast_path import task_json
from scheduler_core.api.schemas import attempt_output
from scheduler_core.models import Task, TaskFilter, TaskStatus
from scheduler_core.runtime_config import BOUNDS, to_camel
from scheduler_core.store.base import decode_cursor, encode_cursor
from scheduler_core.store.sql_store import is_task_id
from scheduler_core.ui.blueprint import bp, error_page, page, store

PAGE_SIZE = 50
ATTENTION_LIMIT = 50
LATENESS_WINDOW_S = 300  # the overview's lateness percentiles, as GET /api/v1/stats
ACTIVITY_WINDOW_S = 3600  # the charts: the last hour,
ACTIVITY_BUCKET_S = 60  # a point per minute

# What each configuration key means, as SPEC.md's table says it (keys a later version
# adds show without a description until they get one here).
CONFIG_HELP = {
    "base_interval_ms": "The throttle's window, and the fallback poll interval.",
    "http_callback_timeout_ms": "Total time one callback may take before it counts as failed.",
    "select_size": "Most callbacks one dispatcher starts within a window, and in flight.",
    "max_retries": "Retries after the first attempt; then the task is stale.",
    "retry_backoff_ms": "Delay before the first retry; it doubles per retry.",
    "retry_backoff_max_ms": "Cap on that delay.",
    "retention_hours": "Resolved and cancelled tasks are deleted after this long.",
    "max_dispatches_per_second": "The queue's rate across all dispatchers; 0 = no limit.",
    "max_concurrent_dispatches": "The queue's callbacks in flight at once; 0 = no limit.",
}

# Messages a redirect after an action asks for (?done=... / ?refused=...): fixed texts,
# so nothing from the URL is shown but a task id that looks like one.
DONE = {
    "retried": "Retried: the task is pending again, due now.",
    "cancelled": "Cancelled.",
    "saved": "Configuration saved. Every dispatcher applies it within a second.",
    "unchanged": "Nothing to save: every value was already set.",
}
REFUSED = {
    "retry": "Not retried: only stale or cancelled tasks can be retried.",
    "cancel": "Not cancelled: only pending or stale tasks can be cancelled.",
}


def list_tasks(
    status: TaskStatus | None, limit: int, before: int | None
) -> tuple[list[Task], int | None]:
    """A page of tasks, newest first, of one status or all, through the API's list verb."""
    task_filter = TaskFilter(statuses=frozenset({status}) if status else None)
    return store().list_tasks(task_filter, limit, before)


def notice() -> dict[str, Any]:
    """The outcome message of the action that redirected here, if any."""
    task_id = request.args.get("task", "")
    return {
        "done": DONE.get(request.args.get("done", "")),
        "refused": REFUSED.get(request.args.get("refused", "")),
        "notice_task": task_id if is_task_id(task_id) else None,
    }


@bp.get("/")
def overview() -> Response:
    queues = store().queue_counts()
    totals = {s.value: sum(q.counts.get(s, 0) for q in queues) for s in TaskStatus}
    p50, p99 = store().lateness_percentiles(LATENESS_WINDOW_S)
    buckets = store().activity(ACTIVITY_WINDOW_S, ACTIVITY_BUCKET_S)
    # For the charts (static/ui.js, uPlot): columns, time in Unix seconds.
    chart = {
        "time": [int(b.start.timestamp()) for b in buckets],
        "attempts": [b.attempts for b in buckets],
        "resolved": [b.resolved for b in buckets],
        "failed": [b.failed for b in buckets],
        "p50": [b.lateness_p50_ms for b in buckets],
        "p99": [b.lateness_p99_ms for b in buckets],
    }
    return page(
        "overview.html",
        totals=totals,
        queues=queues,
        due_backlog=sum(q.due_backlog for q in queues),
        oldest_due_age_s=max((q.oldest_due_age_s for q in queues), default=0.0),
        lateness_p50_ms=p50,
        lateness_p99_ms=p99,
        lateness_window_s=LATENESS_WINDOW_S,
        buckets=buckets,
        chart=chart,
        statuses=[s.value for s in TaskStatus],
    )


@bp.get("/tasks")
def tasks() -> Response:
    raw_status = request.args.get("status", "")
    status: TaskStatus | None = None
    if raw_status:
        try:
            status = TaskStatus(raw_status)
        except ValueError:
            return error_page(400, "Unknown status", "Pick a status from the list.")
    before = None
    cursor = request.args.get("cursor", "")
    if cursor:
        try:
            before = decode_cursor(cursor)
        except ValueError:
            return error_page(400, "Bad page link", "This page link is not valid; start over.")
    found, next_position = list_tasks(status, PAGE_SIZE, before)
    return page(
        "tasks.html",
        tasks=[task_json(t) for t in found],
        status=status.value if status else "",
        statuses=[s.value for s in TaskStatus],
        next_cursor=encode_cursor(next_position) if next_position is not None else None,
        first_page=before is None,
        **notice(),
    )


@bp.get("/tasks/<task_id>")
def task(task_id: str) -> Response:
    found = store().get(task_id)
    attempts = store().attempts(task_id) if found else None
    if found is None or attempts is None:
        abort(404)
    shown = task_json(found)
    fields = {k: v for k, v in shown.items() if k not in ("payload", "lastError")}
    return page(
        "task.html",
        task=shown,
        fields=fields,
        attempts=attempt_output.dump(attempts, many=True),
        **notice(),
    )


@bp.get("/attention")
def attention() -> Response:
    """Stale tasks (they will never be called again unless retried) and the tasks whose
    last attempt failed and wait for a retry."""
    stale, more = list_tasks(TaskStatus.STALE, ATTENTION_LIMIT, None)
    retrying = store().retrying_tasks(ATTENTION_LIMIT)
    return page(
        "attention.html",
        stale=[task_json(t) for t in stale],
        more_stale=more is not None,
        retrying=[task_json(t) for t in retrying],
        limit=ATTENTION_LIMIT,
        **notice(),
    )


def config_fields(
    values: dict[str, Any], errors: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """The config form's fields, in the table's order: key, value, bounds, help, errors."""
    errors = errors or {}
    return [
        {
            "name": to_camel(column),
            "column": column,
            "value": values.get(to_camel(column), ""),
            "minimum": bound.minimum,
            "maximum": bound.maximum,
            "default": bound.default,
            "help": CONFIG_HELP.get(column, ""),
            "errors": errors.get(to_camel(column), []),
        }
        for column, bound in BOUNDS.items()
    ]


@bp.get("/config")
def config() -> Response:
    return page("config.html", fields=config_fields(store().get_config().as_camel()), **notice())

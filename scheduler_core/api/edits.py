"""Changing tasks beyond one transition of one task: `PATCH /api/v1/tasks/{id}`
reschedules a pending task; `POST /api/v1/tasks:retry` and `/api/v1/tasks:cancel` apply
a verb to every task a filter matches, each task as the single-task verb would take it.

The store works the bulk actions in batches (a transaction each), so a retry of a million
stale tasks never holds one giant lock, and dispatchers deliver the first retried tasks
while later batches are still being written. The answer counts the tasks that changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.body import json_body
from scheduler_core.api.errors import ApiError
from scheduler_core.api.fast_path import task_json
from scheduler_core.api.schemas import timestamp_text
from scheduler_core.api.schemas_rules import not_after_problem, overlap, overlap_message
from scheduler_core.api.schemas_tasks import (
    BulkFilterSchema,
    bulk_filter,
    load,
    task_patch,
    validation_error,
)
from scheduler_core.models import UNCHANGED, RuleChange, Task, TaskFilter, _Unchanged
from scheduler_core.store.base import Store, TaskConflict, TaskNotFound

log = logging.getLogger(__name__)
# Not tasks.bp's prefix: a blueprint joins its prefix and a rule with "/", which would
# make ":retry" "/api/v1/tasks/:retry". "/api/v1/tasks:retry" is a path of its own, apart
# from "/api/v1/tasks/<task_id>" (a "/" never matches the task id part).
bp = Blueprint("task_edits", __name__, url_prefix="/api/v1")


def _store() -> Store:
    store: Store = current_app.extensions["scheduler_store"]
    return store


def _not_found(task_id: str) -> ApiError:
    return ApiError(404, "not_found", f"No task with id {task_id!r}.")


@bp.patch("/tasks/<task_id>")
def reschedule_task(task_id: str) -> Response:
    """Reschedule a pending task.
    ---
    patch:
      summary: Reschedule a pending task, or change its delivery rules
      description: >
        The task's executeAt and nextAttemptAt become the new time; a past time is due at
        once. notAfter, successCodes and staleCodes, each alone or together, take their
        new value (null: the rule's default); they are checked with what the task keeps
        (notAfter not earlier than executeAt, no status in both lists). Only a pending
        task can be changed: a task that is running (or claimed while this request ran),
        resolved, stale or cancelled gives 409 and is not changed.
        An unknown task is 404 whatever the body.
      tags: [tasks]
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: TaskPatch}}
      responses:
        200: {description: The rescheduled task, content: {application/json: {schema: TaskOutput}}}
        400: {$ref: "#/components/responses/BadRequest"}
        404: {$ref: "#/components/responses/NotFound"}
        409: {$ref: "#/components/responses/Conflict"}
    """
    store = _store()
    try:
        change = load(task_patch, json_body(), "The change")
    except ApiError:
        # No task, nothing to change: 404 before any complaint about the body.
        if store.get(task_id) is None:
            raise _not_found(task_id) from None
        raise
    execute_at = change.get("executeAt")
    rules = rule_change(change)
    current = store.get(task_id)
    if current is None:
        raise _not_found(task_id)
    check_rules_with(current, execute_at, rules)
    try:
        task = store.reschedule(task_id, execute_at, rules)
    except TaskNotFound:
        raise _not_found(task_id) from None
    except TaskConflict as exc:
        status = exc.task.status.value
        raise ApiError(
            409,
            "conflict",
            f"Only pending tasks can be rescheduled; this one is {status}.",
            {"status": status},
        ) from None
    log.info(
        "task=%s %s through the API, due=%s",
        task.id,
        "rescheduled" if execute_at is not None else "rules changed",
        timestamp_text(task.execute_at),
    )
    return jsonify(task_json(task))


@bp.post("/tasks:retry")
def bulk_retry() -> Response:
    """Retry every stale or cancelled task a filter matches.
    ---
    post:
      summary: Retry every stale or cancelled task a filter matches
      description: >
        Each matching stale or cancelled task is pending again, due now, with a fresh
        retry budget, as `POST /api/v1/tasks/{id}/retry` makes it; tasks in other states
        are left alone, as are tasks whose notAfter has passed (not counted) and tasks
        enqueued after the request began. Works in batches.
      tags: [tasks]
      requestBody:
        required: true
        content: {application/json: {schema: BulkFilter}}
      responses:
        200:
          description: How many tasks were retried
          content: {application/json: {schema: BulkResult}}
        400: {$ref: "#/components/responses/BadRequest"}
    """
    return _bulk("retried", lambda store, f: store.bulk_retry(f))


@bp.post("/tasks:cancel")
def bulk_cancel() -> Response:
    """Cancel every pending or stale task a filter matches.
    ---
    post:
      summary: Cancel every pending or stale task a filter matches
      description: >
        Each matching pending or stale task is cancelled, as `DELETE /api/v1/tasks/{id}`
        cancels it; running and resolved tasks are left alone, and tasks already cancelled
        are not counted. Tasks enqueued after the request began are left alone. Works in
        batches.
      tags: [tasks]
      requestBody:
        required: true
        content: {application/json: {schema: BulkFilter}}
      responses:
        200:
          description: How many tasks were cancelled
          content: {application/json: {schema: BulkResult}}
        400: {$ref: "#/components/responses/BadRequest"}
    """
    return _bulk("cancelled", lambda store, f: store.bulk_cancel(f))


def _bulk(done: str, verb: Callable[[Store, TaskFilter], int]) -> Response:
    body = load(bulk_filter, json_body(), "The filter")
    task_filter = BulkFilterSchema.task_filter(body)
    count = verb(_store(), task_filter)
    log.info("bulk: %d tasks %s, filter %s", count, done, describe(task_filter))
    return jsonify({"count": count})


def describe(task_filter: TaskFilter) -> str:
    """The filter as a log line shows it: only the fields given."""
    parts = []
    if task_filter.statuses is not None:
        parts.append("status=" + ",".join(sorted(task_filter.statuses)))
    if task_filter.queue is not None:
        parts.append(f"queue={task_filter.queue}")
    if task_filter.created_after is not None:
        parts.append(f"createdAfter={timestamp_text(task_filter.created_after)}")
    if task_filter.created_before is not None:
        parts.append(f"createdBefore={timestamp_text(task_filter.created_before)}")
    return " ".join(parts)


def rule_change(change: dict[str, Any]) -> RuleChange:
    """The delivery rules a loaded PATCH body names (a field it leaves out: UNCHANGED)."""
    return RuleChange(
        not_after=change.get("notAfter", UNCHANGED),
        success_codes=change.get("successCodes", UNCHANGED),
        stale_codes=change.get("staleCodes", UNCHANGED),
    )


def check_rules_with(task: Task, execute_at: datetime | None, rules: RuleChange) -> None:
    """400 when the task's rules after the change cannot go together: notAfter earlier
    than executeAt, or a status both lists match. (Read before the write: a PATCH racing
    another PATCH of the same task may pass both checks; each is valid alone.)"""
    at = execute_at if execute_at is not None else task.execute_at
    not_after = task.not_after if rules.not_after is UNCHANGED else rules.not_after
    success = task.success_codes if rules.success_codes is UNCHANGED else rules.success_codes
    stale = task.stale_codes if rules.stale_codes is UNCHANGED else rules.stale_codes
    details: dict[str, list[str]] = {}
    assert not isinstance(not_after, _Unchanged)
    problem = not_after_problem(not_after, at, check_now=rules.not_after is not UNCHANGED)
    if problem:
        field = "notAfter" if rules.not_after is not UNCHANGED else "executeAt"
        details[field] = [
            problem
            if field == "notAfter"
            else "Must not be later than the task's notAfter: it could never be called."
        ]
    assert not isinstance(success, _Unchanged) and not isinstance(stale, _Unchanged)
    codes = overlap(success, stale)
    if codes:
        field = "staleCodes" if rules.stale_codes is not UNCHANGED else "successCodes"
        details[field] = [overlap_message(codes, success is not None)]
    if details:
        raise validation_error("The change", details)

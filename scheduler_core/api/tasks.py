"""/api/v1/tasks: enqueue, read, list, cancel, retry (reschedule and bulk: edits.py)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError

from scheduler_core.api.body import json_body
from scheduler_core.api.errors import ApiError
from scheduler_core.api.fast_path import read_task, read_tasks, task_json
from scheduler_core.api.schemas import (
    TaskInputSchema,
    attempt_output,
    missing_queue_message,
    timestamp_text,
)
from scheduler_core.api.schemas_tasks import ListQuerySchema, list_query, load
from scheduler_core.logs import loggable_url
from scheduler_core.models import DEFAULT_QUEUE, NewTask, Task
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.store.base import (
    QueueNotFound,
    Store,
    TaskConflict,
    TaskNotFound,
    TaskPastDeadline,
    TaskQueueGone,
    encode_cursor,
)
from scheduler_core.trace_context import parse_traceparent

log = logging.getLogger(__name__)
bp = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks")

MAX_BATCH = 1000


def _store() -> Store:
    store: Store = current_app.extensions["scheduler_store"]
    return store


def _plugins() -> PluginManager:
    plugins: PluginManager = current_app.extensions["scheduler_plugins"]
    return plugins


def _not_found(task_id: str) -> ApiError:
    return ApiError(404, "not_found", f"No task with id {task_id!r}.")


@bp.post("")
def enqueue() -> tuple[Response, int, dict[str, str]] | tuple[Response, int]:
    """Enqueue one task, or an array of tasks.
    ---
    post:
      tags: [tasks]
      description: >-
        One task object, or an array of 1 to 1000 enqueued in one transaction, all or
        nothing (a refused item is named by its index in the error details). A task whose
        idempotencyKey is already held by a task returns that task, with 200, and
        creates nothing. A W3C `traceparent` request header is kept with every task of
        the request and sent with each of its callbacks; a malformed one is ignored.
      parameters:
        - in: header
          name: traceparent
          required: false
          schema: {type: string, example: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
          description: >-
            W3C Trace Context of the enqueue: kept with the task, sent as the callback's
            traceparent header on every attempt. Ignored when malformed.
      requestBody:
        required: true
        content:
          application/json:
            schema:
              oneOf:
                - TaskInput
                - {type: array, items: TaskInput, minItems: 1, maxItems: 1000}
      responses:
        201:
          description: >-
            Created: the task (for one object), or {"tasks": [...]} in the order sent
            (for an array; idempotent repeats included, as they are).
          headers:
            Location:
              description: The new task's URL (for one object).
              schema: {type: string}
          links:
            GetTask:
              operationId: tasks_get_task
              parameters: {task_id: $response.body#/id}
            GetAttempts:
              operationId: tasks_get_attempts
              parameters: {task_id: $response.body#/id}
            CancelTask:
              operationId: tasks_cancel_task
              parameters: {task_id: $response.body#/id}
            RetryTask:
              operationId: tasks_retry_task
              parameters: {task_id: $response.body#/id}
          content:
            application/json:
              schema:
                oneOf: [TaskOutput, TaskArray]
        200:
          description: >-
            An idempotent repeat of one object: the task that holds the key, unchanged.
          content: {application/json: {schema: TaskOutput}}
    """
    body = json_body()
    schemes = _plugins().delivery_schemes()
    if isinstance(body, list):
        if not 1 <= len(body) <= MAX_BATCH:
            raise ApiError(
                400,
                "validation_error",
                f"An array of tasks must hold 1 to {MAX_BATCH} items.",
                {"_schema": [f"Got {len(body)} items."]},
            )
        new_tasks = read_tasks(body, schemes)
        if new_tasks is None:  # the schema names what is wrong (or finds nothing wrong)
            new_tasks = [_new_task(i) for i in _load(_input_schema(schemes), body, many=True)]
        new_tasks = _with_trace_context(new_tasks)
        _check_queues(new_tasks, many=True)
        results = _enqueue(new_tasks, many=True)
        _count_created(results)
        _log_batch(results)
        return jsonify({"tasks": [task_json(t) for t, _ in results]}), 201
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "validation_error",
            "The body must be a JSON object, or an array of objects.",
            {"_schema": ["Expected an object or an array."]},
        )
    new_task = read_task(body, schemes) or _new_task(
        _load(_input_schema(schemes), body, many=False)
    )
    [new_task] = _with_trace_context([new_task])
    _check_queues([new_task], many=False)
    [(task, created)] = _enqueue([new_task], many=False)
    _count_created([(task, created)])
    _log_enqueue(task, created)
    if not created:
        return jsonify(task_json(task)), 200
    return jsonify(task_json(task)), 201, {"Location": f"/api/v1/tasks/{task.id}"}


@functools.cache
def _input_schema(schemes: frozenset[str]) -> TaskInputSchema:
    """Schemas hold no per-request state: build one per set of schemes, not per request."""
    return TaskInputSchema(schemes=schemes)


def _load(schema: TaskInputSchema, body: Any, many: bool) -> Any:
    try:
        return schema.load(body, many=many)
    except ValidationError as exc:
        messages = exc.messages
        if many and isinstance(messages, dict):
            # marshmallow keys item errors by int index; JSON wants string keys.
            messages = {str(k): v for k, v in messages.items()}
        raise ApiError(
            400,
            "validation_error",
            "The task is not valid; see details.",
            messages if isinstance(messages, dict) else {"_schema": messages},
        ) from None


def _check_queues(new_tasks: list[NewTask], many: bool) -> None:
    """400 naming every task whose queue does not exist (`default` always does)."""
    named = {t.queue for t in new_tasks if t.queue != DEFAULT_QUEUE}
    if not named:
        return
    missing = named - _store().existing_queues(named)
    if not missing:
        return
    details: dict[str, Any] = {}
    for index, task in enumerate(new_tasks):
        if task.queue in missing:
            problem = {"queue": [missing_queue_message(task.queue)]}
            if not many:
                details = problem
                break
            details[str(index)] = problem
    raise ApiError(400, "validation_error", "The task is not valid; see details.", details)


def _enqueue(new_tasks: list[NewTask], many: bool) -> list[tuple[Task, bool]]:
    """Store the tasks. A queue removed after _check_queues looked is found missing in the
    enqueue's own transaction (which then stores nothing): the same 400 as _check_queues."""
    try:
        return _store().enqueue(new_tasks)
    except QueueNotFound as exc:
        _check_queues(new_tasks, many)
        details = {"queue": [missing_queue_message(str(exc.args[0]))]}
        raise ApiError(
            400, "validation_error", "The task is not valid; see details.", details
        ) from None


def _new_task(item: dict[str, Any]) -> NewTask:
    return NewTask(
        webhook_url=item["webhookUrl"],
        webhook_auth=item.get("webhookAuth"),
        execute_at=item.get("executeAt"),
        payload=item.get("payload"),
        idempotency_key=item.get("idempotencyKey"),
        max_retries=item.get("maxRetries"),
        queue=item.get("queue") or DEFAULT_QUEUE,
        not_after=item.get("notAfter"),
        success_codes=item.get("successCodes"),
        stale_codes=item.get("staleCodes"),
    )


def _with_trace_context(new_tasks: list[NewTask]) -> list[NewTask]:
    """The tasks with the request's `traceparent` (W3C Trace Context), when it has a valid
    one: a malformed one is ignored, as the specification asks."""
    traceparent = parse_traceparent(request.headers.getlist("traceparent"))
    if traceparent is None:
        return new_tasks
    return [dataclasses.replace(t, traceparent=traceparent) for t in new_tasks]


def _count_created(results: list[tuple[Task, bool]]) -> None:
    """Observers (scheduler_task_enqueued) hear of each task created, not of idempotent
    repeats: the built-in metrics count scheduler_tasks_enqueued_total{queue} there."""
    _plugins().tasks_enqueued([task for task, created in results if created])


def _log_enqueue(task: Task, created: bool) -> None:
    if not log.isEnabledFor(logging.INFO):  # spare loggable_url's parse
        return
    if created:
        log.info(
            "task=%s enqueued for %s due=%s",
            task.id,
            loggable_url(task.webhook_url),
            task.execute_at.isoformat(),
        )
    else:
        log.info("task=%s idempotent repeat of key, nothing created", task.id)


def _log_batch(results: list[tuple[Task, bool]]) -> None:
    """One line for an array: a line per task would be 1,000 lines for one request."""
    if len(results) == 1:
        _log_enqueue(*results[0])
        return
    if not log.isEnabledFor(logging.INFO):
        return
    created = [task for task, was_created in results if was_created]
    due = [task.execute_at for task in created]
    log.info(
        "enqueued an array of %d: %d created (first task=%s, last task=%s, due %s to %s),"
        " %d idempotent repeats",
        len(results),
        len(created),
        created[0].id if created else "-",
        created[-1].id if created else "-",
        min(due).isoformat() if due else "-",
        max(due).isoformat() if due else "-",
        len(results) - len(created),
    )


@bp.get("")
def list_tasks() -> Response:
    """List tasks, newest first.
    ---
    get:
      summary: List tasks, newest first
      description: >
        Pages are stable while tasks are added or change state: pass `nextCursor` back as
        `cursor` for the next page, with the same filters.
      tags: [tasks]
      parameters:
        - in: query
          name: status
          allowEmptyValue: true
          schema: {type: string, example: "pending,stale"}
          description: >
            Only tasks in these statuses, comma-separated, any of pending, running,
            resolved, stale, cancelled (each checked).
        - in: query
          name: queue
          schema: {type: string, example: default}
          description: Only tasks of this queue (today `default` is the only one).
        - in: query
          name: limit
          schema: {type: integer, minimum: 1, maximum: 1000, default: 100}
        - in: query
          name: cursor
          schema: {type: string}
          description: The `nextCursor` of the previous page.
      responses:
        200: {description: A page of tasks, content: {application/json: {schema: TaskPage}}}
        400: {$ref: "#/components/responses/BadRequest"}
    """
    query = load(list_query, request.args, "The query")
    tasks, next_position = _store().list_tasks(
        ListQuerySchema.task_filter(query), query["limit"], query["cursor"]
    )
    return jsonify(
        {
            "tasks": [task_json(t) for t in tasks],
            "nextCursor": encode_cursor(next_position) if next_position is not None else None,
        }
    )


@bp.get("/<task_id>")
def get_task(task_id: str) -> Response:
    """Read one task.
    ---
    get:
      tags: [tasks]
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: string}}
      responses:
        200: {description: The task., content: {application/json: {schema: TaskOutput}}}
        404: {$ref: "#/components/responses/NotFound"}
    """
    task = _store().get(task_id)
    if task is None:
        raise _not_found(task_id)
    return jsonify(task_json(task))


@bp.get("/<task_id>/attempts")
def get_attempts(task_id: str) -> Response:
    """List a task's delivery attempts.
    ---
    get:
      tags: [tasks]
      description: Every attempt, oldest first, including one in flight.
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: string}}
      responses:
        200:
          description: The attempts.
          content: {application/json: {schema: AttemptList}}
        404: {$ref: "#/components/responses/NotFound"}
    """
    attempts = _store().attempts(task_id)
    if attempts is None:
        raise _not_found(task_id)
    return jsonify({"attempts": attempt_output.dump(attempts, many=True)})


def _change(task_id: str, change: Callable[[str], Task], refusal: str, event: str) -> Response:
    """Apply a state change; 404 when the task is unknown, 409 when its state forbids it."""
    try:
        task = change(task_id)
    except TaskNotFound:
        raise _not_found(task_id) from None
    except TaskQueueGone as exc:
        status, queue = exc.task.status.value, exc.task.queue
        message = f"The task's queue {queue!r} no longer exists; it stays {status}."
        raise ApiError(409, "conflict", message, {"status": status, "queue": queue}) from None
    except TaskPastDeadline as exc:
        status, not_after = exc.task.status.value, timestamp_text(exc.task.not_after)
        message = (
            f"deadline passed: the task's notAfter ({not_after}) is past, so it could never "
            f"be called; it stays {status}. Enqueue it anew with a later notAfter."
        )
        details = {"status": status, "notAfter": not_after}
        raise ApiError(409, "conflict", message, details) from None
    except TaskConflict as exc:
        status = exc.task.status.value
        raise ApiError(409, "conflict", refusal.format(status=status), {"status": status}) from None
    log.info("task=%s %s", task.id, event)
    return jsonify(task_json(task))


@bp.delete("/<task_id>")
def cancel_task(task_id: str) -> Response:
    """Cancel a task.
    ---
    delete:
      tags: [tasks]
      description: >-
        A pending or stale task becomes cancelled; an already cancelled one is returned
        unchanged. A resolved or running task cannot be cancelled (409).
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: string}}
      responses:
        200:
          description: The task, cancelled.
          content: {application/json: {schema: TaskOutput}}
        404: {$ref: "#/components/responses/NotFound"}
        409: {$ref: "#/components/responses/Conflict"}
    """
    return _change(task_id, _store().cancel, "Cannot cancel: the task is {status}.", "cancelled")


@bp.post("/<task_id>/retry")
def retry_task(task_id: str) -> Response:
    """Retry a stale or cancelled task.
    ---
    post:
      tags: [tasks]
      description: >-
        The task is pending again, due now, with a fresh budget of maxRetries + 1
        attempts; attempts keeps counting. Other states are refused (409), and so is a
        task whose notAfter has passed (409, "deadline passed": it could never be called).
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: string}}
      responses:
        200:
          description: The task, pending again.
          content: {application/json: {schema: TaskOutput}}
        404: {$ref: "#/components/responses/NotFound"}
        409: {$ref: "#/components/responses/Conflict"}
    """
    return _change(
        task_id,
        _store().retry,
        "Only stale or cancelled tasks can be retried; this one is {status}.",
        "retried through the API",
    )

"""/api/v1/queues: named queues, each a row of the configuration table (camelCase keys).

A queue's config is validated by the rules of `PATCH /api/v1/config` (runtime_config's
schemas): integers within bounds, unknown keys refused, every bad key named, nothing
changed. The store checks and writes each change in one transaction (store/queues.py).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.body import json_body
from scheduler_core.api.errors import ApiError
from scheduler_core.api.schemas import name_problem, quoted
from scheduler_core.api.schemas_queues import queue_json
from scheduler_core.runtime_config import ConfigError, RuntimeConfig, validate_changes
from scheduler_core.store.base import QueueConflict, QueueNotFound, Store

log = logging.getLogger(__name__)
bp = Blueprint("queues", __name__, url_prefix="/api/v1/queues")


def _store() -> Store:
    store: Store = current_app.extensions["scheduler_store"]
    return store


def _checked(name: str) -> str:
    """400 naming the path's `name` when it cannot name a queue."""
    problem = name_problem(name)
    if problem:
        raise ApiError(400, "validation_error", "The queue name is not valid.", {"name": [problem]})
    return name


def _not_found(name: str) -> ApiError:
    return ApiError(404, "not_found", f"No queue named {quoted(name)}.")


def _config_body(*, at_least_one: bool) -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "validation_error",
            "The body must be a JSON object of configuration keys.",
            {"_schema": ["Expected an object."]},
        )
    if at_least_one and not body:
        raise ApiError(
            400,
            "validation_error",
            "Name at least one configuration key to change.",
            {"_schema": ["Name at least one key."]},
        )
    return body


def _refused(exc: ConfigError) -> ApiError:
    return ApiError(400, "validation_error", "The queue was not changed.", exc.details)


@bp.get("")
def list_queues() -> Response:
    """List every queue.
    ---
    get:
      tags: [queues]
      description: >-
        Every queue, `default` included, sorted by name: its configuration, pause switch,
        tasks by status and due backlog.
      responses:
        200: {description: Every queue., content: {application/json: {schema: QueueList}}}
    """
    return jsonify({"queues": [queue_json(info) for info in _store().list_queues()]})


@bp.get("/<name>")
def get_queue(name: str) -> Response:
    """Read one queue.
    ---
    get:
      tags: [queues]
      parameters:
        - in: path
          name: name
          required: true
          description: "The queue's name: 1..64 characters of A-Z, a-z, 0-9, '_', '.', '-'
            (not '.' or '..')."
          schema: {type: string, pattern: "^[A-Za-z0-9_.-]{1,64}$"}
      responses:
        200: {description: The queue., content: {application/json: {schema: Queue}}}
        400: {$ref: "#/components/responses/BadRequest"}
        404:
          description: No queue of that name (not_found).
          content: {application/json: {schema: Error}}
    """
    try:
        return jsonify(queue_json(_store().get_queue(_checked(name))))
    except QueueNotFound:
        raise _not_found(name) from None


@bp.put("/<name>")
def put_queue(name: str) -> tuple[Response, int] | tuple[Response, int, dict[str, str]]:
    """Create a queue, or replace its configuration.
    ---
    put:
      tags: [queues]
      description: >-
        The body is the queue's whole configuration: a key left out takes its default
        (`{}` gives every default). Creates the queue (201, with Location) or replaces
        an existing queue's configuration (200); its pause switch is kept. Every key must
        be an integer within its bounds, unknown keys are refused, and retryBackoffMaxMs
        must be at least retryBackoffMs: one bad key refuses the whole request, every bad
        key named in details. Dispatchers apply a change within a second.
      parameters:
        - in: path
          name: name
          required: true
          description: "The queue's name: 1..64 characters of A-Z, a-z, 0-9, '_', '.', '-'
            (not '.' or '..')."
          schema: {type: string, pattern: "^[A-Za-z0-9_.-]{1,64}$"}
      requestBody:
        required: true
        content: {application/json: {schema: QueueConfig}}
      responses:
        200:
          description: The queue after the replacement.
          content: {application/json: {schema: Queue}}
        201:
          description: The queue, created.
          headers:
            Location: {description: The queue's URL., schema: {type: string}}
          content: {application/json: {schema: Queue}}
    """
    _checked(name)
    body = _config_body(at_least_one=False)
    try:
        columns = validate_changes(RuntimeConfig(), body, camel=True)
        info, created = _store().put_queue(name, columns)
    except ConfigError as exc:
        raise _refused(exc) from None
    log.info(
        "queue %s %s: %s",
        name,
        "created" if created else "replaced",
        ", ".join(f"{k}={v}" for k, v in info.config.as_dict().items()),
    )
    if created:
        return jsonify(queue_json(info)), 201, {"Location": f"/api/v1/queues/{name}"}
    return jsonify(queue_json(info)), 200


@bp.patch("/<name>")
def update_queue(name: str) -> Response:
    """Change some configuration keys of a queue.
    ---
    patch:
      tags: [queues]
      description: >-
        Keys left out keep their values (at least one key). The rules of PUT: one bad key
        refuses the whole change, every bad key named in details.
      parameters:
        - in: path
          name: name
          required: true
          description: "The queue's name: 1..64 characters of A-Z, a-z, 0-9, '_', '.', '-'
            (not '.' or '..')."
          schema: {type: string, pattern: "^[A-Za-z0-9_.-]{1,64}$"}
      requestBody:
        required: true
        content: {application/json: {schema: QueuePatch}}
      responses:
        200:
          description: The queue after the change.
          content: {application/json: {schema: Queue}}
        404:
          description: No queue of that name (not_found).
          content: {application/json: {schema: Error}}
    """
    _checked(name)
    body = _config_body(at_least_one=True)
    store = _store()
    try:
        columns = validate_changes(store.get_config(name), body, camel=True)
        store.update_config(columns, queue=name)
        info = store.get_queue(name)
    except QueueNotFound:
        raise _not_found(name) from None
    except ConfigError as exc:
        raise _refused(exc) from None
    log.info("queue %s changed: %s", name, ", ".join(f"{k}={v}" for k, v in columns.items()))
    return jsonify(queue_json(info))


@bp.delete("/<name>")
def delete_queue(name: str) -> Response:
    """Remove a queue.
    ---
    delete:
      tags: [queues]
      description: >-
        Removes an empty queue and returns it as it was. Refused (409 conflict) for
        `default`, for a queue holding pending, running or stale tasks (details.counts:
        how many of each; cancel or purge them first) and for a queue a schedule
        enqueues into (details.schedules names them); details.reason says which. Its
        resolved and cancelled tasks stay until retention deletes them. An enqueue
        racing the removal either lands first (the removal is refused) or is refused.
      parameters:
        - in: path
          name: name
          required: true
          description: "The queue's name: 1..64 characters of A-Z, a-z, 0-9, '_', '.', '-'
            (not '.' or '..')."
          schema: {type: string, pattern: "^[A-Za-z0-9_.-]{1,64}$"}
      responses:
        200: {description: The queue as it was., content: {application/json: {schema: Queue}}}
        400: {$ref: "#/components/responses/BadRequest"}
        404:
          description: No queue of that name (not_found).
          content: {application/json: {schema: Error}}
        409:
          description: >-
            The queue cannot be removed (conflict): details.reason is default_queue,
            tasks (details.counts) or schedules (details.schedules).
          content: {application/json: {schema: Error}}
    """
    try:
        info = _store().delete_queue(_checked(name))
    except QueueNotFound:
        raise _not_found(name) from None
    except QueueConflict as exc:
        raise ApiError(409, "conflict", str(exc), exc.details) from None
    log.info("queue %s removed", name)
    return jsonify(queue_json(info))


def _pause(name: str, paused: bool) -> Response:
    try:
        info = _store().set_queue_paused(_checked(name), paused)
    except QueueNotFound:
        raise _not_found(name) from None
    log.info("queue %s %s", name, "paused" if paused else "resumed")
    return jsonify(queue_json(info))


@bp.post("/<name>/pause")
def pause_queue(name: str) -> Response:
    """Pause a queue.
    ---
    post:
      tags: [queues]
      description: >-
        The queue's tasks are no longer claimed (deliveries in flight finish);
        enqueueing into it still works. Pausing a paused queue changes nothing.
      parameters:
        - in: path
          name: name
          required: true
          description: "The queue's name: 1..64 characters of A-Z, a-z, 0-9, '_', '.', '-'
            (not '.' or '..')."
          schema: {type: string, pattern: "^[A-Za-z0-9_.-]{1,64}$"}
      responses:
        200: {description: The queue (paused)., content: {application/json: {schema: Queue}}}
        400: {$ref: "#/components/responses/BadRequest"}
        404:
          description: No queue of that name (not_found).
          content: {application/json: {schema: Error}}
    """
    return _pause(name, True)


@bp.post("/<name>/resume")
def resume_queue(name: str) -> Response:
    """Resume a paused queue.
    ---
    post:
      tags: [queues]
      description: >-
        Dispatchers claim the queue's due tasks again at once. Resuming a running queue
        changes nothing.
      parameters:
        - in: path
          name: name
          required: true
          description: "The queue's name: 1..64 characters of A-Z, a-z, 0-9, '_', '.', '-'
            (not '.' or '..')."
          schema: {type: string, pattern: "^[A-Za-z0-9_.-]{1,64}$"}
      responses:
        200: {description: The queue (running)., content: {application/json: {schema: Queue}}}
        400: {$ref: "#/components/responses/BadRequest"}
        404:
          description: No queue of that name (not_found).
          content: {application/json: {schema: Error}}
    """
    return _pause(name, False)


@bp.post("/<name>/purge")
def purge_queue(name: str) -> Response:
    """Cancel every pending and stale task of a queue.
    ---
    post:
      tags: [queues]
      description: >-
        As `POST /api/v1/tasks:cancel` with `{"queue": name}`: every pending and stale
        task of the queue is cancelled, in batches; running ones finish. Sent once per
        call: a second purge cancels what was enqueued since.
      parameters:
        - in: path
          name: name
          required: true
          description: "The queue's name: 1..64 characters of A-Z, a-z, 0-9, '_', '.', '-'
            (not '.' or '..')."
          schema: {type: string, pattern: "^[A-Za-z0-9_.-]{1,64}$"}
      responses:
        200:
          description: How many tasks were cancelled.
          content: {application/json: {schema: PurgeResult}}
        400: {$ref: "#/components/responses/BadRequest"}
        404:
          description: No queue of that name (not_found).
          content: {application/json: {schema: Error}}
    """
    try:
        count = _store().purge_queue(_checked(name))
    except QueueNotFound:
        raise _not_found(name) from None
    log.info("queue %s purged: %d tasks cancelled", name, count)
    return jsonify({"count": count})

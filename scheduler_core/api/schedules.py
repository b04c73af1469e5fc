"""/api/v1/schedules: recurring tasks kept by the server (create, read, change, delete,
pause, resume, trigger)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.body import json_body
from scheduler_core.api.errors import ApiError
from scheduler_core.api.fast_path import task_json
from scheduler_core.api.schemas import missing_queue_message
from scheduler_core.api.schemas_schedules import (
    ScheduleInputSchema,
    SchedulePatchSchema,
    schedule_output,
)
from scheduler_core.api.schemas_tasks import load
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.schedules import CronError, Schedule
from scheduler_core.store.base import QueueNotFound, ScheduleConflict, ScheduleNotFound, Store

log = logging.getLogger(__name__)
bp = Blueprint("schedules", __name__, url_prefix="/api/v1/schedules")


def _store() -> Store:
    store: Store = current_app.extensions["scheduler_store"]
    return store


def _schemes() -> frozenset[str]:
    plugins: PluginManager = current_app.extensions["scheduler_plugins"]
    return plugins.delivery_schemes()


@functools.cache
def _input_schema(schemes: frozenset[str]) -> ScheduleInputSchema:
    return ScheduleInputSchema(schemes=schemes)


@functools.cache
def _patch_schema(schemes: frozenset[str]) -> SchedulePatchSchema:
    return SchedulePatchSchema(schemes=schemes)


def _shown(schedule: Schedule) -> dict[str, Any]:
    shown: dict[str, Any] = schedule_output.dump(schedule)
    return shown


def _not_found(name: str) -> ApiError:
    return ApiError(404, "not_found", f"No schedule named {name[:64]!r}.")


def _object_body(what: str) -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "validation_error",
            f"The body must be a JSON object: {what}.",
            {"_schema": ["Expected an object."]},
        )
    return body


def _store_refusal(exc: Exception) -> ApiError:
    """A check the store made in its transaction, after the schema's (a queue removed
    meanwhile, say), as the same 400 the schema would answer."""
    if isinstance(exc, QueueNotFound):
        details = {"queue": [missing_queue_message(str(exc.args[0]))]}
    else:
        details = {"cron": [str(exc)]}
    return ApiError(400, "validation_error", "The schedule is not valid; see details.", details)


@bp.post("")
def create() -> tuple[Response, int, dict[str, str]]:
    """Create a schedule.
    ---
    post:
      tags: [schedules]
      description: >-
        Every fire time of `cron` in `timezone` enqueues one task from the template
        (webhookUrl, webhookAuth, payload, queue, maxRetries), with idempotencyKey
        `schedule:<name>:<fire time in UTC>` and `schedule` set to the name, so several
        dispatchers never fire it twice. A name that is taken is a 409.
      requestBody:
        required: true
        content: {application/json: {schema: ScheduleInput}}
      responses:
        201:
          description: Created.
          headers:
            Location:
              description: The schedule's URL.
              schema: {type: string}
          content: {application/json: {schema: ScheduleOutput}}
        409: {$ref: "#/components/responses/Conflict"}
    """
    body = load(_input_schema(_schemes()), _object_body("a schedule"), "The schedule")
    new = ScheduleInputSchema.new_schedule(body)
    try:
        schedule = _store().create_schedule(new)
    except ScheduleConflict:
        raise ApiError(
            409,
            "conflict",
            f"A schedule named {new.name!r} exists already.",
            {"name": [f"A schedule named {new.name!r} exists already."]},
        ) from None
    except (QueueNotFound, CronError) as exc:
        raise _store_refusal(exc) from None
    log.info(
        "schedule=%s created: %r in %s, next fire %s",
        schedule.name,
        schedule.cron,
        schedule.timezone,
        schedule.next_fire_at.isoformat() if schedule.next_fire_at else "none (paused)",
    )
    return jsonify(_shown(schedule)), 201, {"Location": f"/api/v1/schedules/{schedule.name}"}


@bp.get("")
def list_schedules() -> Response:
    """List schedules.
    ---
    get:
      tags: [schedules]
      description: Every schedule, sorted by name.
      responses:
        200: {description: The schedules., content: {application/json: {schema: ScheduleList}}}
    """
    return jsonify({"schedules": [_shown(s) for s in _store().list_schedules()]})


@bp.get("/<name>")
def get_schedule(name: str) -> Response:
    """Read one schedule.
    ---
    get:
      tags: [schedules]
      parameters:
        - {in: path, name: name, required: true, schema: {type: string}}
      responses:
        200: {description: The schedule., content: {application/json: {schema: ScheduleOutput}}}
        404: {$ref: "#/components/responses/NotFound"}
    """
    try:
        return jsonify(_shown(_store().get_schedule(name)))
    except ScheduleNotFound:
        raise _not_found(name) from None


@bp.patch("/<name>")
def update(name: str) -> Response:
    """Change some fields of a schedule.
    ---
    patch:
      tags: [schedules]
      description: >-
        Fields left out keep their values; webhookAuth null removes it. A new cron or
        timezone moves nextFireAt to the first fire time from now (a paused schedule stays
        paused). Every field is checked as on create; one bad field changes nothing.
      parameters:
        - {in: path, name: name, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: SchedulePatch}}
      responses:
        200: {description: The schedule., content: {application/json: {schema: ScheduleOutput}}}
        404: {$ref: "#/components/responses/NotFound"}
    """
    body = load(_patch_schema(_schemes()), _object_body("the fields to change"), "The change")
    try:
        schedule = _store().update_schedule(name, SchedulePatchSchema.changes(body))
    except ScheduleNotFound:
        raise _not_found(name) from None
    except (QueueNotFound, CronError) as exc:
        raise _store_refusal(exc) from None
    log.info("schedule=%s changed: %s", schedule.name, ", ".join(sorted(body)))
    return jsonify(_shown(schedule))


@bp.delete("/<name>")
def delete(name: str) -> Response:
    """Delete a schedule.
    ---
    delete:
      tags: [schedules]
      description: The schedule fires no more; the tasks it enqueued stay.
      parameters:
        - {in: path, name: name, required: true, schema: {type: string}}
      responses:
        200:
          description: The schedule as it was.
          content: {application/json: {schema: ScheduleOutput}}
        404: {$ref: "#/components/responses/NotFound"}
    """
    try:
        schedule = _store().delete_schedule(name)
    except ScheduleNotFound:
        raise _not_found(name) from None
    log.info("schedule=%s deleted", schedule.name)
    return jsonify(_shown(schedule))


def _set_paused(name: str, paused: bool) -> Response:
    try:
        schedule = _store().set_schedule_paused(name, paused)
    except ScheduleNotFound:
        raise _not_found(name) from None
    log.info("schedule=%s %s", schedule.name, "paused" if paused else "resumed")
    return jsonify(_shown(schedule))


@bp.post("/<name>/pause")
def pause(name: str) -> Response:
    """Pause a schedule.
    ---
    post:
      tags: [schedules]
      description: It fires nothing until resumed; nextFireAt is null. Idempotent.
      parameters:
        - {in: path, name: name, required: true, schema: {type: string}}
      responses:
        200: {description: The schedule., content: {application/json: {schema: ScheduleOutput}}}
        404: {$ref: "#/components/responses/NotFound"}
    """
    return _set_paused(name, True)


@bp.post("/<name>/resume")
def resume(name: str) -> Response:
    """Resume a paused schedule.
    ---
    post:
      tags: [schedules]
      description: >-
        nextFireAt becomes the first fire time from now: fire times that passed while it
        was paused are not caught up. Idempotent.
      parameters:
        - {in: path, name: name, required: true, schema: {type: string}}
      responses:
        200: {description: The schedule., content: {application/json: {schema: ScheduleOutput}}}
        404: {$ref: "#/components/responses/NotFound"}
    """
    return _set_paused(name, False)


@bp.post("/<name>/trigger")
def trigger(name: str) -> tuple[Response, int, dict[str, str]]:
    """Run a schedule's task now.
    ---
    post:
      tags: [schedules]
      description: >-
        Enqueues one task from the template, due now, with `schedule` set to the name and
        no idempotency key (a paused schedule can be triggered). nextFireAt and lastFireAt
        do not change. 409 when the schedule's queue no longer exists.
      parameters:
        - {in: path, name: name, required: true, schema: {type: string}}
      responses:
        201:
          description: The task enqueued.
          headers:
            Location:
              description: The task's URL.
              schema: {type: string}
          content: {application/json: {schema: TaskOutput}}
        404: {$ref: "#/components/responses/NotFound"}
        409: {$ref: "#/components/responses/Conflict"}
    """
    try:
        task = _store().trigger_schedule(name)
    except ScheduleNotFound:
        raise _not_found(name) from None
    except QueueNotFound as exc:
        raise ApiError(
            409,
            "conflict",
            f"The schedule's queue {exc.args[0]!r} no longer exists; PATCH its queue.",
            {"queue": [missing_queue_message(str(exc.args[0]))]},
        ) from None
    return jsonify(task_json(task)), 201, {"Location": f"/api/v1/tasks/{task.id}"}

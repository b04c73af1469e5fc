"""The queues page: every queue with its tasks, due backlog and pause switch, and a page
per queue with its config form. Pause, resume and saving the config are plain form POSTs
(guard.py checks their CSRF token, origin and sign-in) answered with a 303 redirect; the
store verbs and the validation are the API's own (`PATCH /api/v1/queues/{name}`)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, abort, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from scheduler_core.api.schemas import name_problem
from scheduler_core.models import QueueInfo, TaskStatus
from scheduler_core.runtime_config import ConfigError, validate_changes
from scheduler_core.store.base import QueueNotFound
from scheduler_core.ui.actions import read_config_form
from scheduler_core.ui.blueprint import bp, local_path, page, store, with_query
from scheduler_core.ui.pages import config_fields

log = logging.getLogger(__name__)

STATUSES = [status.value for status in TaskStatus]

# Messages a redirect asks for (?done=...): fixed texts, nothing from the URL is shown.
DONE = {
    "paused": "Paused: its tasks are not claimed until it is resumed (those in flight finish).",
    "resumed": "Resumed: dispatchers claim its due tasks again.",
    "saved": "Configuration saved. Every dispatcher applies it within a second.",
    "unchanged": "Nothing to save: every value was already set.",
}


def _queue(name: str) -> QueueInfo:
    """The queue `name`, or the dashboard's 404 page (a name no queue can have too)."""
    if name_problem(name):
        abort(404)
    try:
        return store().get_queue(name)
    except QueueNotFound:
        abort(404)


def _row(info: QueueInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "paused": info.paused,
        "counts": {status.value: info.counts.get(status, 0) for status in TaskStatus},
        "due_backlog": info.due_backlog,
        "config": info.config.as_camel(),
    }


@bp.get("/queues")
def queues() -> Response:
    return page(
        "queues.html",
        queues=[_row(info) for info in store().list_queues()],
        statuses=STATUSES,
        done=DONE.get(request.args.get("done", "")),
    )


@bp.get("/queues/<name>")
def queue(name: str) -> Response:
    info = _queue(name)
    return page(
        "queue.html",
        queue=_row(info),
        statuses=STATUSES,
        fields=config_fields(info.config.as_camel()),
        done=DONE.get(request.args.get("done", "")),
    )


def _switch(name: str, paused: bool) -> BaseResponse:
    _queue(name)
    back = local_path(request.form.get("next"), "/ui/queues")
    try:
        store().set_queue_paused(name, paused)
    except QueueNotFound:  # removed meanwhile
        abort(404)
    log.info("queue %s %s through the dashboard", name, "paused" if paused else "resumed")
    return redirect(with_query(back, done="paused" if paused else "resumed"), 303)


@bp.post("/queues/<name>/pause")
def pause_queue(name: str) -> BaseResponse:
    return _switch(name, True)


@bp.post("/queues/<name>/resume")
def resume_queue(name: str) -> BaseResponse:
    return _switch(name, False)


@bp.post("/queues/<name>/config")
def save_queue_config(name: str) -> Response | BaseResponse:
    """Every field of the form is sent; only the values that differ are changed. Any bad
    value: the form again, each error by its field, and nothing changed."""
    info = _queue(name)
    shown = info.config.as_camel()
    submitted, changes, errors = read_config_form(shown)
    columns: dict[str, int] = {}
    try:
        # The integers are checked even when another field is no integer: every bad
        # field is named at once.
        columns = validate_changes(info.config, changes, camel=True)
        if columns and not errors:
            store().update_config(columns, queue=name)
    except ConfigError as exc:
        errors = {**exc.details, **errors}
    except QueueNotFound:
        abort(404)
    if errors:
        return page(
            "queue.html",
            400,
            queue=_row(info),
            statuses=STATUSES,
            fields=config_fields({**shown, **submitted}, errors),
            failed=True,
        )
    if not columns:
        return redirect(f"/ui/queues/{name}?done=unchanged", 303)
    log.info(
        "queue %s config changed through the dashboard: %s",
        name,
        ", ".join(f"{k}={v}" for k, v in columns.items()),
    )
    return redirect(f"/ui/queues/{name}?done=saved", 303)

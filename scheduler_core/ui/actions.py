"""What an operator presses: retry, cancel, save the config.

Each is a plain form POST (guard.py has checked its CSRF token and origin, and the
sign-in) answered with a 303 redirect to the page it came from, carrying what happened
(Post/Redirect/Get: reloading that page repeats nothing). The store verbs and the
validation are the API's own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Response, abort, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from scheduler_core.models import Task
from scheduler_core.runtime_config import BOUNDS, ConfigError, RuntimeConfig, to_camel
from scheduler_core.runtime_config import validate_changes as validate_config_changes
from scheduler_core.store.base import TaskConflict, TaskNotFound
from scheduler_core.ui.blueprint import bp, local_path, page, store, with_query
from scheduler_core.ui.pages import config_fields

log = logging.getLogger(__name__)

_INTEGER = re.compile(r"[+-]?[0-9]+")


def _change(task_id: str, verb: Callable[[str], Task], action: str, done: str) -> BaseResponse:
    back = local_path(request.form.get("next"), f"/ui/tasks/{task_id}")
    try:
        task = verb(task_id)
    except TaskNotFound:
        abort(404)
    except TaskConflict:
        return redirect(with_query(back, refused=action, task=task_id), 303)
    log.info("task=%s %s through the dashboard", task.id, done)
    return redirect(with_query(back, done=done, task=task.id), 303)


@bp.post("/tasks/<task_id>/retry")
def retry(task_id: str) -> BaseResponse:
    return _change(task_id, store().retry, "retry", "retried")


@bp.post("/tasks/<task_id>/cancel")
def cancel(task_id: str) -> BaseResponse:
    return _change(task_id, store().cancel, "cancel", "cancelled")


def validate_changes(current: RuntimeConfig, changes: dict[str, Any]) -> dict[str, int]:
    """The API's validation of a config change (camelCase keys), keyed by column; raises
    ConfigError naming each bad key."""
    return validate_config_changes(current, changes, camel=True)


def read_config_form(
    shown: dict[str, int],
) -> tuple[dict[str, str], dict[str, int], dict[str, list[str]]]:
    """The config form as posted: every field sent (camelCase key -> text as typed), the
    integers that differ from `shown`, and the fields that hold no integer. Digits may
    be grouped as written ("3,600,000", "3_600_000")."""
    submitted: dict[str, str] = {}
    changes: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    for column in BOUNDS:
        name = to_camel(column)
        raw = request.form.get(name)
        if raw is None:
            continue
        submitted[name] = raw
        text = raw.strip().replace("_", "").replace(",", "")
        if not _INTEGER.fullmatch(text):
            errors[name] = ["Must be an integer."]
        elif int(text) != shown[name]:
            changes[name] = int(text)
    return submitted, changes, errors


@bp.post("/config")
def save_config() -> Response | BaseResponse:
    """Every field of the form is sent; only the values that differ are changed. Any
    bad value: the form again, each error by its field, and nothing changed."""
    current = store().get_config()
    shown = current.as_camel()
    submitted, changes, errors = read_config_form(shown)
    columns: dict[str, int] = {}
    if not errors:
        try:
            columns = validate_changes(current, changes)
            if columns:
                store().update_config(columns)
        except ConfigError as exc:
            errors = exc.details
    if errors:
        return page(
            "config.html",
            400,
            fields=config_fields({**shown, **submitted}, errors),
            failed=True,
        )
    if not columns:
        return redirect("/ui/config?done=unchanged", 303)
    log.info(
        "config changed through the dashboard: %s",
        ", ".join(f"{k}={v}" for k, v in columns.items()),
    )
    return redirect("/ui/config?done=saved", 303)

"""The dashboard's schedules page: every schedule with its cron, time zone and fire
times, and Pause, Resume and Trigger as plain form POSTs (guard.py checks their CSRF
token, origin and sign-in) answered with a redirect back (Post/Redirect/Get).

Schedules are shown through the API's own output (`ScheduleOutputSchema`): the webhook
URL masked as the API masks it, never the webhookAuth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Response, abort, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from scheduler_core.api.schemas_schedules import schedule_output
from scheduler_core.store.base import QueueNotFound, ScheduleNotFound
from scheduler_core.store.sql_store import is_task_id
from scheduler_core.ui.blueprint import bp, page, store, with_query

log = logging.getLogger(__name__)

# What a redirect after an action asks to show: fixed texts (nothing from the URL is shown
# but a schedule's name read back from the store and a task id that looks like one).
DONE = {
    "paused": "Paused: it fires nothing until resumed.",
    "resumed": "Resumed from its next fire time.",
    "triggered": "Triggered: a task was enqueued, due now.",
}
REFUSED = {"trigger": "Not triggered: the schedule's queue no longer exists."}


@bp.get("/schedules")
def schedules() -> Response:
    found = store().list_schedules()
    task_id = request.args.get("task", "")
    return page(
        "schedules.html",
        schedules=schedule_output.dump(found, many=True),
        done=DONE.get(request.args.get("done", "")),
        refused=REFUSED.get(request.args.get("refused", "")),
        notice_task=task_id if is_task_id(task_id) else None,
    )


def _act(name: str, verb: Callable[[], object], done: str, action: str) -> BaseResponse:
    try:
        result = verb()
    except ScheduleNotFound:
        abort(404)
    except QueueNotFound:
        return redirect(with_query("/ui/schedules", refused=action), 303)
    log.info("schedule=%s %s through the dashboard", name, done)
    params = {"done": done}
    task_id = getattr(result, "id", None)
    if isinstance(task_id, str):
        params["task"] = task_id
    return redirect(with_query("/ui/schedules", **params), 303)


@bp.post("/schedules/<name>/pause")
def pause_schedule(name: str) -> BaseResponse:
    return _act(name, lambda: store().set_schedule_paused(name, True), "paused", "pause")


@bp.post("/schedules/<name>/resume")
def resume_schedule(name: str) -> BaseResponse:
    return _act(name, lambda: store().set_schedule_paused(name, False), "resumed", "resume")


@bp.post("/schedules/<name>/trigger")
def trigger_schedule(name: str) -> BaseResponse:
    return _act(name, lambda: store().trigger_schedule(name), "triggered", "trigger")

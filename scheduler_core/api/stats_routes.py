"""/api/v1/stats: tasks by status, the due backlog and recent lateness, in one read."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.schemas_stats import stats_json
from scheduler_core.store.base import Store

bp = Blueprint("stats", __name__, url_prefix="/api/v1/stats")

LATENESS_WINDOW_S = 300


@bp.get("")
def get_stats() -> Response:
    """Counts by status, due backlog and lateness percentiles.
    ---
    get:
      summary: Counts by status, due backlog and lateness percentiles
      description: >
        Tasks by status and the due backlog (pending tasks whose nextAttemptAt has come)
        for every queue together and for each queue, and the p50/p99 lateness of the
        attempts started in the last five minutes, all by the database clock. The same
        numbers as the scheduler_tasks, scheduler_due_backlog and
        scheduler_oldest_due_age_seconds gauges of /metrics.
      tags: [stats]
      responses:
        200: {description: The numbers, content: {application/json: {schema: StatsOutput}}}
        401: {$ref: "#/components/responses/Unauthorized"}
        403: {$ref: "#/components/responses/Forbidden"}
        503: {$ref: "#/components/responses/Unavailable"}
        500: {$ref: "#/components/responses/InternalError"}
    """
    store: Store = current_app.extensions["scheduler_store"]
    queues = store.queue_counts()
    lateness = store.lateness_percentiles(LATENESS_WINDOW_S)
    return jsonify(stats_json(queues, lateness, LATENESS_WINDOW_S))

"""/metrics: Prometheus text format, open even when API keys are set (like /healthz).

It shows no task, URL or secret: only counts, durations and lateness, by queue.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from scheduler_core.plugin_manager import PluginManager
from scheduler_core.plugins.metrics import CONTENT_TYPE

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics of this process.
    ---
    get:
      summary: Prometheus metrics of this process
      description: >
        Counters and histograms of what this process did (tasks enqueued, attempts by
        outcome, delivery duration, lateness), and gauges read from the database at each
        scrape (tasks by status, due backlog, age of the oldest due task). Open even
        when SCHEDULER_API_KEYS is set. See docs/OPERATING.md.
      tags: [operations]
      responses:
        200:
          description: Prometheus text exposition format 0.0.4
          content: {text/plain: {schema: {type: string}}}
    """
    plugins: PluginManager = current_app.extensions["scheduler_plugins"]
    response = Response(plugins.metrics.exposition(), content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response

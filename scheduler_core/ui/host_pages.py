"""The hosts page: every target host under backpressure after its 429 or 503 answers,
with its limits and how long its tasks still wait, as `GET /api/v1/hosts` shows them."""

from __future__ import annotations

from flask import Response

from scheduler_core.api.schemas_hosts import host_json
from scheduler_core.ui.blueprint import bp, page, store


@bp.get("/hosts")
def hosts() -> Response:
    return page("hosts.html", hosts=[host_json(info) for info in store().list_hosts()])

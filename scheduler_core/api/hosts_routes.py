"""/api/v1/hosts: the hosts under backpressure (after their 429 or 503 answers)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.schemas_hosts import host_json
from scheduler_core.store.base import Store

bp = Blueprint("hosts", __name__, url_prefix="/api/v1/hosts")


@bp.get("")
def list_hosts() -> Response:
    """Throttled hosts with their limits and block.
    ---
    get:
      summary: Throttled hosts with their limits and block
      description: >
        Every target host that answered 429 or 503 and has not recovered yet: how long
        its tasks still wait (its Retry-After), its concurrency and start-rate limits
        (halved at each such answer, raised one step per second of successes) and how
        many throttling answers it gave. The same numbers as the scheduler_host_* series
        of /metrics. See docs/OPERATING.md.
      tags: [stats]
      responses:
        200: {description: The hosts, content: {application/json: {schema: HostsOutput}}}
        401: {$ref: "#/components/responses/Unauthorized"}
        403: {$ref: "#/components/responses/Forbidden"}
        503: {$ref: "#/components/responses/Unavailable"}
        500: {$ref: "#/components/responses/InternalError"}
    """
    store: Store = current_app.extensions["scheduler_store"]
    return jsonify({"hosts": [host_json(info) for info in store.list_hosts()]})

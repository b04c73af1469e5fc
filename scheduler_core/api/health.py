"""/healthz and /readyz: open even when API keys are set."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.errors import error_response
from scheduler_core.store.base import StoreUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness probe.
    ---
    get:
      tags: [operations]
      description: The process is up. Open even when API keys are set.
      responses:
        200: {description: Up., content: {application/json: {schema: Health}}}
    """
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness probe.
    ---
    get:
      tags: [operations]
      description: The database is reachable. Open even when API keys are set.
      responses:
        200: {description: Ready., content: {application/json: {schema: Ready}}}
        503: {$ref: "#/components/responses/Unavailable"}
    """
    try:
        current_app.extensions["scheduler_store"].ping()
    except StoreUnavailable:
        return error_response(503, "unavailable", "The database is not reachable.")
    return jsonify({"status": "ready"})

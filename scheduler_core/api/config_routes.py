"""/api/v1/config: the runtime configuration row, camelCase."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.body import json_body
from scheduler_core.api.errors import ApiError
from scheduler_core.runtime_config import ConfigError, validate_changes
from scheduler_core.store.base import Store

log = logging.getLogger(__name__)
bp = Blueprint("config", __name__, url_prefix="/api/v1/config")


def _store() -> Store:
    store: Store = current_app.extensions["scheduler_store"]
    return store


@bp.get("")
def show() -> Response:
    return jsonify(_store().get_config().as_camel())


@bp.patch("")
def update() -> Response:
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "validation_error",
            "The body must be a JSON object of settings.",
            {"_schema": ["Expected an object."]},
        )
    store = _store()
    try:
        columns = validate_changes(store.get_config(), body, camel=True)
        config = store.update_config(columns)
    except ConfigError as exc:
        raise ApiError(
            400, "validation_error", "The configuration was not changed.", exc.details
        ) from None
    if columns:
        log.info("config changed: %s", ", ".join(f"{k}={v}" for k, v in columns.items()))
    return jsonify(config.as_camel())

"""/api/v1/config: the runtime configuration row, camelCase."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.api.body import json_body
from scheduler_core.api.errors import ApiError
from scheduler_core.runtime_config import ConfigError, ConfigSchema, RuntimeConfig, validate_changes
from scheduler_core.store.base import Store

log = logging.getLogger(__name__)
bp = Blueprint("config", __name__, url_prefix="/api/v1/config")
_config_output = ConfigSchema()


def _store() -> Store:
    store: Store = current_app.extensions["scheduler_store"]
    return store


def _shown(config: RuntimeConfig) -> Response:
    return jsonify(_config_output.dump(config))


@bp.get("")
def show() -> Response:
    """Read the runtime configuration.
    ---
    get:
      tags: [config]
      description: The default queue's configuration, as every dispatcher reads it.
      responses:
        200: {description: The configuration., content: {application/json: {schema: Config}}}
    """
    return _shown(_store().get_config())


@bp.patch("")
def update() -> Response:
    """Change some configuration keys.
    ---
    patch:
      tags: [config]
      description: >-
        Keys left out keep their values. Every key must be an integer within its bounds
        (no null, strings, fractions or booleans), unknown keys are refused, and
        retryBackoffMaxMs must stay at least retryBackoffMs (the stored value counts when
        the body leaves one out). One bad key refuses the whole change, with every bad key
        named in details. Dispatchers apply a change within a second.
      requestBody:
        required: true
        content: {application/json: {schema: ConfigPatch}}
      responses:
        200:
          description: The configuration after the change.
          content: {application/json: {schema: Config}}
    """
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
        # ConfigPatchSchema (runtime_config.py), the rules `scheduler config set` uses too.
        columns = validate_changes(store.get_config(), body, camel=True)
        config = store.update_config(columns)
    except ConfigError as exc:
        raise ApiError(
            400, "validation_error", "The configuration was not changed.", exc.details
        ) from None
    if columns:
        log.info("config changed: %s", ", ".join(f"{k}={v}" for k, v in columns.items()))
    return _shown(config)

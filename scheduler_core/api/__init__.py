"""The Flask app: `create_app()` wires a store and a plugin manager into the API."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from scheduler_core import ui
from scheduler_core.api import (
    completion_routes,
    config_routes,
    cross_origin,
    edits,
    health,
    hosts_routes,
    metrics_routes,
    plugin_routes,
    queues,
    reference,
    schedules,
    stats_routes,
    tasks,
)
from scheduler_core.api.errors import ApiError, register_error_handlers
from scheduler_core.http_guard import HostPolicy
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store, open_store

API_PREFIX = "/api/"


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    plugins: PluginManager | None = None,
    test_config: dict[str, Any] | None = None,
    listen_host: str | None = None,
) -> Flask:
    """The API. `listen_host` is the address `scheduler serve` listens on, for the Host
    check of an open API (None: loopback)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # No 308 with an HTML page for /api/v1/tasks//attempts: an empty segment is a JSON 404.
    app.url_map.merge_slashes = False
    app.extensions["scheduler_settings"] = settings
    app.extensions["scheduler_plugins"] = plugins or PluginManager(settings)
    app.extensions["scheduler_store"] = store or open_store(
        settings.database_url, encryption_keys=settings.encryption_keys
    )
    app.extensions["scheduler_plugins"].metrics.read_database(app.extensions["scheduler_store"])
    app.extensions["scheduler_plugins"].use_store(app.extensions["scheduler_store"])
    policy = HostPolicy.for_listener(listen_host, settings.allowed_hosts, settings.cors_origins)
    cross_origin.install(app, settings, policy, API_PREFIX)  # before authentication

    @app.before_request
    def _authorize() -> None:
        if not request.path.startswith(API_PREFIX):
            return
        if not app.extensions["scheduler_plugins"].authorize(request):
            raise ApiError(
                401,
                "unauthorized",
                "Missing or invalid API key.",
                headers={"WWW-Authenticate": 'Bearer realm="scheduler-core"'},
            )

    register_error_handlers(app)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(edits.bp)
    app.register_blueprint(config_routes.bp)
    app.register_blueprint(queues.bp)
    app.register_blueprint(plugin_routes.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(stats_routes.bp)
    app.register_blueprint(hosts_routes.bp)
    app.register_blueprint(metrics_routes.bp)
    app.register_blueprint(reference.bp)
    app.register_blueprint(schedules.bp)
    app.register_blueprint(completion_routes.bp)  # outside /api/v1: its own signature
    ui.install(app, policy)
    return app

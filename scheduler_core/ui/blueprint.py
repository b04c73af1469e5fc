"""The dashboard's blueprint and what its pages share."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    render_template,
    request,
    request_started,
)
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Rule

from scheduler_core.http_guard import HostPolicy
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store.base import Store, StoreUnavailable
from scheduler_core.ui import display

log = logging.getLogger(__name__)

POLICY_EXTENSION = "scheduler_ui_host_policy"

# The navigation, in order: (endpoint, label). The queues and schedules pages join it
# when named queues and schedules exist.
NAV: tuple[tuple[str, str], ...] = (
    ("ui.overview", "Overview"),
    ("ui.tasks", "Tasks"),
    ("ui.attention", "Stale & failing"),
    ("ui.queues", "Queues"),
    ("ui.schedules", "Schedules"),
    ("ui.hosts", "Hosts"),
    ("ui.config", "Config"),
)

bp = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
display.register(bp)


# What a path under /ui that no rule matches is routed to: nothing but the blueprint's
# 404 page (see _claim_unknown_path). Never added to the URL map: the map's rules, their
# methods and the 405s they answer stay as they are.
_UNKNOWN_PATH_RULE = Rule("/ui/<path:unknown>", endpoint="ui.unknown_path")


@bp.record_once
def _on_register(state: BlueprintSetupState) -> None:
    request_started.connect(_claim_unknown_path, state.app, weak=False)


def _claim_unknown_path(sender: Flask, **_: Any) -> None:
    """Make a request for a path under /ui that no rule matches (`/ui/nope`, `/ui//tasks`,
    any method) one of the dashboard's, so that it answers with the dashboard's HTML 404
    page, after the same Host check, sign-in and headers as every page, rather than the
    API's JSON 404. Runs when the request starts, after routing and before any
    before_request hook; the routing's NotFound is still raised (by Flask, as for any
    request whose routing failed), now within the blueprint. A 405 is left alone."""
    path = request.path
    if isinstance(request.routing_exception, NotFound) and (
        path == "/ui" or path.startswith("/ui/")
    ):
        request.url_rule = _UNKNOWN_PATH_RULE
        request.view_args = {}


def store() -> Store:
    found: Store = current_app.extensions["scheduler_store"]
    return found


def plugins() -> PluginManager:
    found: PluginManager = current_app.extensions["scheduler_plugins"]
    return found


def settings() -> Settings:
    found: Settings = current_app.extensions["scheduler_settings"]
    return found


def host_policy() -> HostPolicy:
    found: HostPolicy = current_app.extensions[POLICY_EXTENSION]
    return found


def page(template: str, code: int = 200, /, **context: Any) -> Response:
    """`ui/<template>` rendered with `context` as an HTML response with status `code`."""
    return make_response(render_template(f"ui/{template}", **context), code)


def error_page(status: int, title: str, message: str) -> Response:
    return page("error.html", status, title=title, message=message)


def local_path(candidate: str | None, default: str = "/ui/") -> str:
    """`candidate` when it is a path of this dashboard (a `next` field, say), else
    `default`: a redirect never leads off the site (`//evil.example`, `/ui\\..`)."""
    if not candidate or "\\" in candidate or any(ord(c) < 0x20 for c in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc or candidate.startswith("//"):
        return default
    if not (parts.path == "/ui" or parts.path.startswith("/ui/")):
        return default
    return candidate


def with_query(path: str, **params: str) -> str:
    """`path` (already local) with `params` set in its query, replacing earlier values."""
    parts = urlsplit(path)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query = urlencode([*kept, *params.items()])
    return f"{parts.path}?{query}" if query else parts.path


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 404:
        return error_page(404, "Not found", "There is nothing here.")
    return error_page(status, exc.name, exc.description or exc.name)


@bp.errorhandler(StoreUnavailable)
def _unavailable(exc: StoreUnavailable) -> Response:
    log.error("database unavailable: %s", exc)
    response = error_page(503, "Database unavailable", "The database cannot be reached; retry.")
    response.headers["Retry-After"] = "1"
    return response


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error in the dashboard at %s", request.path)
    return error_page(500, "Internal error", "Something went wrong; the log says what.")

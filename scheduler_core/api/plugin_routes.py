"""/api/v1/plugins: what `scheduler plugins --json` prints, for a running server."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from scheduler_core.plugin_manager import PluginManager

bp = Blueprint("plugins", __name__, url_prefix="/api/v1/plugins")


@bp.get("")
def list_plugins() -> Response:
    """List the loaded plugins.

    `{"plugins": [...]}`, one object per loaded plugin in registration order, as
    `PluginManager.describe` shapes it (name, builtin, distribution, version, hooks,
    schemes).
    ---
    get:
      tags: [plugins]
      summary: List the loaded plugins
      description: What `scheduler plugins --json` prints, for this server.
      responses:
        200: {description: The plugins., content: {application/json: {schema: PluginList}}}
    """
    plugins: PluginManager = current_app.extensions["scheduler_plugins"]
    return jsonify({"plugins": plugins.describe()})

"""GET /api/v1/plugins, and what enqueueing says about URL schemes no plugin claims."""

from __future__ import annotations

import pytest

import scheduler_core
from scheduler_core.api import create_app
from scheduler_core.api.schemas import webhook_url_problem
from scheduler_core.hookspecs import hookimpl
from scheduler_core.plugin_manager import BUILTIN_PLUGINS, PluginManager
from scheduler_core.settings import Settings
from tests.api.helpers import FUTURE, NOWHERE, assert_error, task_count

NOT_HANDLED = "Scheme {!r} is not handled by any loaded delivery plugin (handled: {})."


class QueueScheme:
    """Claims queue:// (it is never asked to deliver in these tests)."""

    @hookimpl
    def scheduler_delivery_schemes(self) -> list[str]:
        return ["queue"]


# -- GET /api/v1/plugins ------------------------------------------------------------------


def test_plugins_lists_every_builtin_with_distribution_version_hooks_and_schemes(client):
    response = client.get("/api/v1/plugins")

    assert response.status_code == 200
    rows = response.get_json()["plugins"]
    assert [row["name"] for row in rows] == list(BUILTIN_PLUGINS)
    assert rows[1] == {
        "name": "scheduler_core.plugins.http_delivery",
        "builtin": True,
        "distribution": "scheduler-core",
        "version": scheduler_core.__version__,
        "hooks": ["scheduler_deliver", "scheduler_delivery_schemes"],
        "schemes": ["http", "https"],
    }
    assert {row["schemes"] == [] for row in rows if row["name"] != rows[1]["name"]} == {True}


def test_plugins_answers_what_the_manager_describes_and_shows_registered_plugins(client, plugins):
    plugins.register(QueueScheme(), name="queue-transport")

    rows = client.get("/api/v1/plugins").get_json()["plugins"]

    assert rows == plugins.describe()
    assert rows[-1] == {
        "name": "queue-transport",
        "builtin": False,
        "distribution": None,
        "version": None,
        "hooks": ["scheduler_delivery_schemes"],
        "schemes": ["queue"],
    }


def test_plugins_needs_an_api_key_when_keys_are_set(clean_database, store):
    settings = Settings(database_url=clean_database, api_keys=("k1",), load_entry_points=False)
    keyed = create_app(
        settings, store=store, plugins=PluginManager(settings), test_config={"TESTING": True}
    ).test_client()

    assert_error(keyed.get("/api/v1/plugins"), 401, "unauthorized")
    assert_error(
        keyed.get("/api/v1/plugins", headers={"Authorization": "Bearer k2"}), 401, "unauthorized"
    )
    allowed = keyed.get("/api/v1/plugins", headers={"Authorization": "Bearer k1"})
    assert allowed.status_code == 200
    assert allowed.get_json()["plugins"][0]["name"] == BUILTIN_PLUGINS[0]


def test_plugins_is_read_only(client):
    response = client.post("/api/v1/plugins", json={})

    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


# -- schemes at enqueue ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("ftp://example.com/x", "ftp"), ("QUEUE://broker/jobs", "queue"), ("mailto:a@b.c", "mailto")],
)
def test_a_scheme_no_plugin_claims_is_refused_naming_the_ones_handled(client, store, url, scheme):
    response = client.post("/api/v1/tasks", json={"webhookUrl": url})

    error = assert_error(response, 400, "validation_error")
    assert error["details"] == {"webhookUrl": [NOT_HANDLED.format(scheme, "http, https")]}
    assert task_count(store) == 0


def test_in_an_array_the_refused_scheme_is_named_at_its_index(client, store):
    body = [{"webhookUrl": NOWHERE, "executeAt": FUTURE} for _ in range(4)]
    body[2]["webhookUrl"] = "redis://127.0.0.1:6379/0?stream=jobs"

    response = client.post("/api/v1/tasks", json=body)

    error = assert_error(response, 400, "validation_error")
    assert error["details"] == {"2": {"webhookUrl": [NOT_HANDLED.format("redis", "http, https")]}}
    assert task_count(store) == 0  # all or nothing


def test_a_scheme_a_loaded_plugin_claims_is_accepted_and_listed_when_another_is_refused(
    client, store, plugins
):
    plugins.register(QueueScheme())

    accepted = client.post(
        "/api/v1/tasks",
        json=[
            {"webhookUrl": "queue://broker/jobs", "executeAt": FUTURE},
            {"webhookUrl": "QUEUE://broker/other", "executeAt": FUTURE},
        ],
    )
    refused = client.post(
        "/api/v1/tasks", json=[{"webhookUrl": NOWHERE}, {"webhookUrl": "amqp://broker/"}]
    )

    assert accepted.status_code == 201, accepted.get_json()
    error = assert_error(refused, 400, "validation_error")
    assert error["details"] == {
        "1": {"webhookUrl": [NOT_HANDLED.format("amqp", "http, https, queue")]}
    }
    assert task_count(store) == 2


def test_with_no_delivery_plugin_loaded_the_message_says_none_is_handled():
    assert webhook_url_problem("http://example.com/", frozenset()) == NOT_HANDLED.format(
        "http", "none"
    )

"""/healthz (process up) and /readyz (database reachable, else 503)."""

import pytest

from scheduler_core.api import create_app
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from tests.api.helpers import assert_error


@pytest.fixture
def unreachable_client(unreachable_database):
    settings = Settings(database_url=unreachable_database.url, load_entry_points=False)
    app = create_app(
        settings,
        store=unreachable_database.store,
        plugins=PluginManager(settings),
        test_config={"TESTING": True},
    )
    return app.test_client()


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_readyz_is_503_json_when_the_database_is_unreachable(
    unreachable_client, unreachable_database
):
    response = unreachable_client.get("/readyz")
    error = assert_error(response, 503, "unavailable")
    assert unreachable_database.internals not in response.get_data(as_text=True)
    assert "127.0.0.1" not in error["message"]


def test_healthz_does_not_need_the_database(unreachable_client):
    response = unreachable_client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_metrics_is_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "# TYPE" in response.get_data(as_text=True)

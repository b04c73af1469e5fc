"""SCHEDULER_API_KEYS: every /api/v1 request needs `Authorization: Bearer <key>`."""

import pytest

from scheduler_core.api import create_app
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from tests.api.helpers import FUTURE, NOWHERE, assert_error, task_count

KEYS = ("k1-secret-key", "k2-other-key")


@pytest.fixture
def keyed_client(clean_database, store):
    settings = Settings(database_url=clean_database, api_keys=KEYS, load_entry_points=False)
    app = create_app(
        settings, store=store, plugins=PluginManager(settings), test_config={"TESTING": True}
    )
    return app.test_client()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def assert_unauthorized(response):
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert "k1-secret-key" not in response.get_data(as_text=True)


BAD_HEADERS = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Bearer k1-secret-ke"},  # a prefix of a key
    {"Authorization": "Bearer k1-secret-keyX"},
    {"Authorization": "Bearer k1-secret-key,k2-other-key"},
    {"Authorization": "k1-secret-key"},  # no scheme
    {"Authorization": "Basic k1-secret-key"},
    {"Authorization": "Token k1-secret-key"},
    {"X-Api-Key": "k1-secret-key"},
]


@pytest.mark.parametrize("headers", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
def test_enqueue_without_a_valid_key_is_401_and_stores_nothing(keyed_client, store, headers):
    response = keyed_client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE}, headers=headers)
    assert_unauthorized(response)
    response = keyed_client.post("/api/v1/tasks", json=[{"webhookUrl": NOWHERE}], headers=headers)
    assert_unauthorized(response)
    assert task_count(store) == 0


@pytest.mark.parametrize("key", KEYS)
def test_every_configured_key_works(keyed_client, store, key):
    response = keyed_client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE}, headers=bearer(key))
    assert response.status_code == 201
    task_id = response.get_json()["id"]
    assert keyed_client.get(f"/api/v1/tasks/{task_id}", headers=bearer(key)).status_code == 200
    assert keyed_client.get("/api/v1/tasks", headers=bearer(key)).status_code == 200
    assert keyed_client.get("/api/v1/config", headers=bearer(key)).status_code == 200
    assert task_count(store) == 1


def test_the_scheme_is_case_insensitive(keyed_client):
    response = keyed_client.get("/api/v1/tasks", headers={"Authorization": f"bearer {KEYS[0]}"})
    assert response.status_code == 200


def test_every_route_needs_a_key_and_nothing_happens_without_one(keyed_client, store):
    created = keyed_client.post(
        "/api/v1/tasks", json={"webhookUrl": NOWHERE, "executeAt": FUTURE}, headers=bearer(KEYS[0])
    ).get_json()
    task_id = created["id"]
    wrong = bearer("wrong")
    for response in [
        keyed_client.get(f"/api/v1/tasks/{task_id}", headers=wrong),
        keyed_client.get(f"/api/v1/tasks/{task_id}/attempts", headers=wrong),
        keyed_client.get("/api/v1/tasks", headers=wrong),
        keyed_client.delete(f"/api/v1/tasks/{task_id}", headers=wrong),
        keyed_client.post(f"/api/v1/tasks/{task_id}/retry", headers=wrong),
        keyed_client.get("/api/v1/config", headers=wrong),
        keyed_client.patch("/api/v1/config", json={"selectSize": 1}, headers=wrong),
        keyed_client.patch("/api/v1/config", json={"selectSize": 1}),
        keyed_client.delete(f"/api/v1/tasks/{task_id}"),
    ]:
        assert_unauthorized(response)
    assert store.get(task_id).status == "pending"  # not cancelled
    assert store.get_config().select_size == 100  # not changed
    assert task_count(store) == 1


def test_unknown_api_paths_and_methods_need_a_key_too(keyed_client):
    assert_unauthorized(keyed_client.get("/api/v1/nothing-here"))
    assert_unauthorized(keyed_client.get("/api/v2/tasks"))
    assert_unauthorized(keyed_client.put("/api/v1/tasks"))
    assert_error(
        keyed_client.get("/api/v1/nothing-here", headers=bearer(KEYS[1])), 404, "not_found"
    )
    assert_error(
        keyed_client.put("/api/v1/tasks", headers=bearer(KEYS[1])), 405, "method_not_allowed"
    )


def test_an_oversized_body_without_a_key_is_401(keyed_client, store):
    body = b'{"webhookUrl": "http://x/", "payload": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = keyed_client.post("/api/v1/tasks", data=body, content_type="application/json")
    assert_unauthorized(response)
    assert task_count(store) == 0


def test_health_endpoints_stay_open(keyed_client):
    healthz = keyed_client.get("/healthz")
    assert healthz.status_code == 200
    assert healthz.get_json() == {"status": "ok"}
    readyz = keyed_client.get("/readyz")
    assert readyz.status_code == 200


def test_metrics_stays_open(keyed_client):
    response = keyed_client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"


def test_stats_needs_a_key(keyed_client):
    assert_unauthorized(keyed_client.get("/api/v1/stats"))
    assert keyed_client.get("/api/v1/stats", headers=bearer(KEYS[1])).status_code == 200


def test_without_keys_the_api_is_open(client):
    assert client.get("/api/v1/tasks").status_code == 200
    # A stray Authorization header does not matter when no keys are set.
    assert client.get("/api/v1/tasks", headers=bearer("anything")).status_code == 200

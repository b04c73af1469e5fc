"""/api/v1/schedules on both backends: shapes (checked against the OpenAPI document),
validation naming each field, write-only webhookAuth, 404/409, pause/resume/trigger."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.test_openapi import assert_conforms
from tests.support.database import TestDatabase

BASE = "/api/v1/schedules"
HOOK = "http://127.0.0.1:9/hook"
SECRET = "Bearer schedule-secret-42"
SHAPE = [
    "name",
    "cron",
    "timezone",
    "catchUp",
    "paused",
    "webhookUrl",
    "payload",
    "queue",
    "maxRetries",
    "notAfter",
    "successCodes",
    "staleCodes",
    "nextFireAt",
    "lastFireAt",
    "createdAt",
    "updatedAt",
]


@pytest.fixture
def doc(client: FlaskClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/api/v1/openapi.json").get_json()
    return document


def create(client: FlaskClient, **fields: Any) -> Any:
    body = {"name": "nightly", "cron": "0 3 * * *", "webhookUrl": HOOK, **fields}
    return client.post(BASE, json=body)


def refusal(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.get_data(as_text=True)
    error: dict[str, Any] = response.get_json()["error"]
    assert error["code"] == "validation_error"
    return error


def test_create_read_list_with_the_documented_shapes(client: FlaskClient, doc: Any) -> None:
    response = create(
        client,
        timezone="Europe/Berlin",
        webhookAuth=SECRET,
        payload={"report": 7},
        maxRetries=2,
        webhookUrl="http://user:pw@127.0.0.1:9/hook?token=abc",
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["Location"] == f"{BASE}/nightly"
    body = assert_conforms(doc, "post", BASE, response)
    assert list(body) == SHAPE
    assert body["cron"] == "0 3 * * *" and body["timezone"] == "Europe/Berlin"
    assert (body["catchUp"], body["paused"], body["queue"]) == ("latest", False, "default")
    assert body["nextFireAt"].endswith(":00:00Z") and body["lastFireAt"] is None
    assert "pw" not in body["webhookUrl"] and "abc" not in body["webhookUrl"]
    got = client.get(f"{BASE}/nightly")
    assert assert_conforms(doc, "get", f"{BASE}/{{name}}", got) == body
    create(client, name="alpha", cron="*/5 * * * *")
    listed = assert_conforms(doc, "get", BASE, client.get(BASE))
    assert [s["name"] for s in listed["schedules"]] == ["alpha", "nightly"]
    for response in (got, client.get(BASE)):
        assert "schedule-secret" not in response.get_data(as_text=True)
        assert "webhookAuth" not in response.get_data(as_text=True)


def test_a_taken_name_is_409_and_nothing_changes(client: FlaskClient) -> None:
    assert create(client).status_code == 201
    again = create(client, cron="0 4 * * *")
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"
    assert client.get(f"{BASE}/nightly").get_json()["cron"] == "0 3 * * *"


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "0 25 * * *"}, "cron", "hour field (field 2 of 5) '25' is not valid"),
        ({"cron": "0 3 * *"}, "cron", "five fields"),
        ({"cron": 5}, "cron", "Not a valid string"),
        ({"timezone": "Europe/Berln"}, "timezone", "Unknown time zone 'Europe/Berln'"),
        ({"timezone": "europe/berlin"}, "timezone", "did you mean 'Europe/Berlin'"),
        ({"catchUp": "all"}, "catchUp", "latest, none"),
        ({"queue": "missing"}, "queue", "No queue named 'missing'"),
        ({"queue": "bad name"}, "queue", "1..64 characters"),
        ({"name": "no spaces"}, "name", "1..64 characters"),
        ({"webhookUrl": "ftp://example.com/x"}, "webhookUrl", "Scheme 'ftp'"),
        ({"webhookUrl": "http://169.254.169.254/latest"}, "webhookUrl", "Target refused"),
        ({"webhookAuth": "a\nb"}, "webhookAuth", "valid header value"),
        ({"maxRetries": 1001}, "maxRetries", "1000"),
        ({"maxRetries": True}, "maxRetries", "Not a valid integer"),
        ({"webhookURL": HOOK}, "webhookURL", "Unknown field"),
        ({"executeAt": "2030-01-01T00:00:00Z"}, "executeAt", "Unknown field"),
    ],
)
def test_a_bad_field_is_a_400_naming_it_and_nothing_is_stored(
    client: FlaskClient, fields: dict[str, Any], field: str, words: str
) -> None:
    error = refusal(create(client, **fields))
    assert field in error["details"], error
    assert words in " ".join(error["details"][field]), error
    assert client.get(BASE).get_json() == {"schedules": []}


def test_a_body_that_is_not_an_object_and_missing_fields_are_400(client: FlaskClient) -> None:
    assert refusal(client.post(BASE, json=[1]))["details"] == {"_schema": ["Expected an object."]}
    details = refusal(client.post(BASE, json={}))["details"]
    assert set(details) == {"name", "cron", "webhookUrl"}


def test_patch_changes_fields_and_a_new_cron_moves_the_next_fire(
    client: FlaskClient, doc: Any, db: TestDatabase
) -> None:
    created = create(client, cron="0 0 1 1 *", webhookAuth=SECRET).get_json()
    patched = client.patch(
        f"{BASE}/nightly",
        json={"cron": "*/5 * * * *", "timezone": "Asia/Tokyo", "catchUp": "none", "payload": 1},
    )
    body = assert_conforms(doc, "patch", f"{BASE}/{{name}}", patched)
    assert (body["cron"], body["timezone"], body["catchUp"], body["payload"]) == (
        "*/5 * * * *",
        "Asia/Tokyo",
        "none",
        1,
    )
    assert body["nextFireAt"] < created["nextFireAt"]
    [(auth,)] = db.execute("SELECT webhook_auth FROM scheduler_schedules")
    assert auth == SECRET
    assert client.patch(f"{BASE}/nightly", json={"webhookAuth": None}).status_code == 200
    assert db.execute("SELECT webhook_auth FROM scheduler_schedules") == [(None,)]
    assert "name" in refusal(client.patch(f"{BASE}/nightly", json={"name": "x"}))["details"]
    paused = refusal(client.patch(f"{BASE}/nightly", json={"paused": True}))["details"]
    assert "pause/resume" in paused["paused"][0]
    assert refusal(client.patch(f"{BASE}/nightly", json={}))["details"]["_schema"]
    assert "cron" in refusal(client.patch(f"{BASE}/nightly", json={"cron": "* * *"}))["details"]
    assert client.get(f"{BASE}/nightly").get_json()["cron"] == "*/5 * * * *"
    assert client.patch(f"{BASE}/nope", json={"payload": 1}).status_code == 404


def test_pause_resume_trigger_delete_and_404s(client: FlaskClient, doc: Any) -> None:
    create(client, payload={"n": 1})
    paused = client.post(f"{BASE}/nightly/pause")
    body = assert_conforms(doc, "post", f"{BASE}/{{name}}/pause", paused)
    assert (body["paused"], body["nextFireAt"]) == (True, None)
    assert client.post(f"{BASE}/nightly/pause").get_json() == body  # idempotent
    triggered = client.post(f"{BASE}/nightly/trigger")
    task = assert_conforms(doc, "post", f"{BASE}/{{name}}/trigger", triggered)
    assert triggered.status_code == 201
    assert triggered.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    assert (task["schedule"], task["payload"], task["status"]) == ("nightly", {"n": 1}, "pending")
    assert client.get(f"/api/v1/tasks/{task['id']}").get_json()["schedule"] == "nightly"
    resumed = assert_conforms(
        doc, "post", f"{BASE}/{{name}}/resume", client.post(f"{BASE}/nightly/resume")
    )
    assert resumed["paused"] is False and resumed["nextFireAt"] is not None
    deleted = client.delete(f"{BASE}/nightly")
    assert assert_conforms(doc, "delete", f"{BASE}/{{name}}", deleted)["name"] == "nightly"
    for method, path in [
        ("get", f"{BASE}/nightly"),
        ("delete", f"{BASE}/nightly"),
        ("post", f"{BASE}/nightly/pause"),
        ("post", f"{BASE}/nightly/resume"),
        ("post", f"{BASE}/nightly/trigger"),
    ]:
        response = client.open(path, method=method.upper())
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["code"] == "not_found"
    # the task it enqueued stays
    assert client.get(f"/api/v1/tasks/{task['id']}").status_code == 200


def test_the_schedule_routes_are_documented(doc: Any) -> None:
    paths = doc["paths"]
    assert set(paths[BASE]) == {"get", "post"}
    assert set(paths[f"{BASE}/{{name}}"]) == {"get", "patch", "delete"}
    for verb in ("pause", "resume", "trigger"):
        assert set(paths[f"{BASE}/{{name}}/{verb}"]) == {"post"}
    schemas = doc["components"]["schemas"]
    assert "webhookAuth" not in schemas["ScheduleOutput"]["properties"]
    assert schemas["ScheduleInput"]["properties"]["webhookAuth"]["writeOnly"] is True
    assert schemas["SchedulePatch"]["minProperties"] == 1

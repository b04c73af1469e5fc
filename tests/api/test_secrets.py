"""webhookAuth is write-only: never returned by any endpoint, never logged."""

import logging

from tests.api.helpers import FUTURE, enqueue
from tests.conftest import set_config

SECRET = "Bearer sk_live_7f3a9c1e-never-shown"


def responses_for(client, task_id):
    """Every read of the task the API offers."""
    return [
        client.get(f"/api/v1/tasks/{task_id}"),
        client.get(f"/api/v1/tasks/{task_id}/attempts"),
        client.get("/api/v1/tasks"),
        client.get("/api/v1/tasks?status=stale"),
        client.get("/api/v1/tasks?status=resolved"),
    ]


def assert_secret_absent(responses):
    for response in responses:
        text = response.get_data(as_text=True)
        assert "sk_live_7f3a9c1e" not in text
        assert "webhookAuth" not in text
        assert "webhook_auth" not in text
        assert "sk_live_7f3a9c1e" not in str(response.headers)


def test_webhook_auth_is_sent_but_never_returned_or_logged(
    client, store, dispatcher, receiver, caplog
):
    caplog.set_level(logging.DEBUG)
    set_config(store, retry_backoff_ms=0)
    receiver.behave("/ok", statuses=[200])
    receiver.behave("/fail", statuses=[500], body=b"nope")
    responses = []

    created_ok = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/ok"), "webhookAuth": SECRET, "idempotencyKey": "ok"},
    )
    created_fail = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/fail"), "webhookAuth": SECRET, "maxRetries": 1},
    )
    created_refused = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": "http://127.0.0.1:9/refused", "webhookAuth": SECRET, "maxRetries": 0},
    )
    later = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/ok"), "webhookAuth": SECRET, "executeAt": FUTURE},
    )
    batch = client.post(
        "/api/v1/tasks",
        json=[{"webhookUrl": receiver.url("/ok"), "webhookAuth": SECRET, "executeAt": FUTURE}],
    )
    repeat = client.post(
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/ok"), "webhookAuth": SECRET, "idempotencyKey": "ok"},
    )
    refused = client.post(
        "/api/v1/tasks", json={"webhookUrl": "ftp://x/", "webhookAuth": SECRET, "maxRetries": "x"}
    )
    assert [
        r.status_code
        for r in (created_ok, created_fail, created_refused, later, batch, repeat, refused)
    ] == [201, 201, 201, 201, 201, 200, 400]
    responses += [created_ok, created_fail, created_refused, later, batch, repeat, refused]

    dispatcher.tick()  # /ok resolves, /fail fails once, the refused one goes stale
    dispatcher.tick()  # /fail fails again and goes stale
    fail_id = created_fail.get_json()["id"]
    assert client.get(f"/api/v1/tasks/{fail_id}").get_json()["status"] == "stale"
    refused_id = created_refused.get_json()["id"]
    assert client.get(f"/api/v1/tasks/{refused_id}").get_json()["status"] == "stale"

    # The receiver did get the secret, verbatim, on every call.
    calls = receiver.calls()
    assert len(calls) == 3
    assert all(call.header("Authorization") == SECRET for call in calls)

    for task in (created_ok, created_fail, created_refused, later):
        responses += responses_for(client, task.get_json()["id"])
    responses.append(client.post(f"/api/v1/tasks/{fail_id}/retry"))
    responses.append(client.delete(f"/api/v1/tasks/{fail_id}"))
    responses.append(client.delete(f"/api/v1/tasks/{later.get_json()['id']}"))
    assert_secret_absent(responses)

    assert caplog.records, "the dispatcher and API log their events"
    assert "sk_live_7f3a9c1e" not in caplog.text
    for record in caplog.records:
        assert "sk_live_7f3a9c1e" not in repr(record.args)


def test_a_task_without_webhook_auth_sends_no_authorization(client, dispatcher, receiver):
    enqueue(client, receiver.url("/plain"))
    dispatcher.tick()
    [call] = receiver.calls("/plain")
    assert call.header("Authorization") is None

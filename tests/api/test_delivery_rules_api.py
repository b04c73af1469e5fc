"""The delivery rules through the API: accepted and returned at enqueue (one task and an
array), refused field by field with nothing stored, changed by PATCH, and what retry does
with a task whose notAfter passed. Both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.helpers import FUTURE, NOWHERE, all_tasks
from tests.support.waiting import wait_until

LATER = "2099-01-01T00:10:00Z"


def _post(client, **fields):
    return client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, **fields})


def test_rules_are_stored_and_returned(client):
    response = _post(
        client,
        executeAt=FUTURE,
        notAfter="2099-01-01T01:10:00+01:00",
        successCodes=[200, "2XX", 409, 200],
        staleCodes=["4xx"],
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert body["notAfter"] == LATER
    assert body["successCodes"] == [200, "2xx", 409]  # normalised, repeats dropped
    assert body["staleCodes"] == ["4xx"]
    fetched = client.get(f"/api/v1/tasks/{body['id']}").json
    assert {k: fetched[k] for k in ("notAfter", "successCodes", "staleCodes")} == {
        "notAfter": LATER,
        "successCodes": [200, "2xx", 409],
        "staleCodes": ["4xx"],
    }


def test_unset_rules_are_null(client):
    body = _post(client).json
    assert body["notAfter"] is None
    assert body["successCodes"] is None  # the default, ["2xx"]
    assert body["staleCodes"] is None


def test_an_array_carries_each_items_rules(client):
    response = client.post(
        "/api/v1/tasks",
        json=[
            {"webhookUrl": NOWHERE, "staleCodes": [410]},
            {"webhookUrl": NOWHERE},
            {"webhookUrl": NOWHERE, "executeAt": FUTURE, "notAfter": LATER},
        ],
    )
    assert response.status_code == 201, response.json
    tasks = response.json["tasks"]
    assert [t["staleCodes"] for t in tasks] == [[410], None, None]
    assert [t["notAfter"] for t in tasks] == [None, None, LATER]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"successCodes": [600]}, "successCodes", "outside 100..599"),
        ({"successCodes": [99]}, "successCodes", "outside 100..599"),
        ({"staleCodes": ["6xx"]}, "staleCodes", "not a status class"),
        ({"staleCodes": ["200"]}, "staleCodes", "not a status class"),
        ({"staleCodes": [True]}, "staleCodes", "true is not a status code"),
        ({"staleCodes": [404.0]}, "staleCodes", "not a number with a fraction part"),
        ({"staleCodes": [None]}, "staleCodes", "not null"),
        ({"staleCodes": [[404]]}, "staleCodes", "not an array"),
        ({"staleCodes": [" 4xx"]}, "staleCodes", "not a status class"),
        # Rules under which a task could never resolve, or never be called.
        ({"successCodes": []}, "successCodes", "at least one final status"),
        ({"successCodes": ["1xx", 102]}, "successCodes", "at least one final status"),
        (
            {"executeAt": "2020-01-01T00:00:00Z", "notAfter": "2020-01-02T00:00:00Z"},
            "notAfter",
            "in the past",
        ),
        ({"successCodes": "2xx"}, "successCodes", "Must be an array"),
        ({"successCodes": [200] * 101}, "successCodes", "at most 100"),
        ({"notAfter": "tomorrow"}, "notAfter", "RFC 3339"),
        ({"executeAt": FUTURE, "notAfter": "2098-12-31T23:59:59Z"}, "notAfter", "executeAt"),
        ({"notAfter": "2001-01-01T00:00:00Z"}, "notAfter", "in the past"),
        ({"successCodes": [200, 410], "staleCodes": [410]}, "staleCodes", "410"),
        ({"staleCodes": ["2xx"]}, "staleCodes", "default successCodes"),
        ({"successCodes": ["4xx"], "staleCodes": ["4XX"]}, "staleCodes", "4xx"),
    ],
)
def test_bad_rules_are_refused_field_by_field(client, store, fields, field, words):
    response = _post(client, **fields)
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    assert words in " ".join(error["details"][field]), error
    assert all_tasks(store) == []


def test_a_bad_item_of_an_array_is_named_and_nothing_is_stored(client, store):
    response = client.post(
        "/api/v1/tasks",
        json=[{"webhookUrl": NOWHERE}, {"webhookUrl": NOWHERE, "staleCodes": [700]}],
    )
    assert response.status_code == 400
    assert "staleCodes" in response.json["error"]["details"]["1"]
    assert all_tasks(store) == []


def test_null_rules_mean_the_defaults(client):
    body = _post(client, notAfter=None, successCodes=None, staleCodes=None).json
    assert (body["notAfter"], body["successCodes"], body["staleCodes"]) == (None, None, None)


def test_a_code_and_a_class_over_it_may_go_together(client):
    # the code, more precise, decides its status (tests/dispatch/test_delivery_rules.py)
    body = _post(client, successCodes=[409], staleCodes=["4xx"]).json
    assert (body["successCodes"], body["staleCodes"]) == ([409], ["4xx"])
    assert _post(client, staleCodes=[204]).status_code == 201


def test_an_empty_stale_list_is_kept(client):
    assert _post(client, staleCodes=[]).json["staleCodes"] == []


# -- PATCH ----------------------------------------------------------------------------


def _patch(client, task_id, **fields):
    return client.patch(f"/api/v1/tasks/{task_id}", json=fields)


def test_patch_changes_rules_alone_and_keeps_the_due_time(client):
    created = _post(client, executeAt=FUTURE).json
    response = _patch(client, created["id"], notAfter=LATER, staleCodes=[404, 410])
    assert response.status_code == 200, response.json
    body = response.json
    assert body["notAfter"] == LATER
    assert body["staleCodes"] == [404, 410]
    assert body["successCodes"] is None
    assert body["executeAt"] == created["executeAt"]
    assert body["nextAttemptAt"] == created["nextAttemptAt"]


def test_patch_changes_rules_with_execute_at(client):
    created = _post(client, executeAt=FUTURE, notAfter="2099-01-01T00:05:00Z").json
    later = "2099-01-01T00:07:00Z"
    body = _patch(client, created["id"], executeAt=later, notAfter=LATER).json
    assert (body["executeAt"], body["notAfter"]) == (later, LATER)


def test_patch_null_brings_a_rule_back_to_its_default(client):
    created = _post(client, executeAt=FUTURE, notAfter=LATER, successCodes=[202]).json
    body = _patch(client, created["id"], notAfter=None, successCodes=None).json
    assert body["notAfter"] is None and body["successCodes"] is None


def test_patch_checks_the_rules_with_what_the_task_keeps(client, store):
    created = _post(client, executeAt=FUTURE, notAfter=LATER, successCodes=["2xx", 410]).json
    # moving executeAt after the kept notAfter
    response = _patch(client, created["id"], executeAt="2099-01-01T01:00:00Z")
    assert response.status_code == 400
    assert "executeAt" in response.json["error"]["details"]
    # a notAfter before the kept executeAt
    response = _patch(client, created["id"], notAfter="2098-01-01T00:00:00Z")
    assert response.status_code == 400
    assert "notAfter" in response.json["error"]["details"]
    # a staleCode the kept successCodes hold
    response = _patch(client, created["id"], staleCodes=[410])
    assert response.status_code == 400
    assert "410" in " ".join(response.json["error"]["details"]["staleCodes"])
    unchanged = client.get(f"/api/v1/tasks/{created['id']}").json
    assert unchanged == created


def test_patch_of_a_task_that_is_not_pending_is_409(client):
    created = _post(client).json
    client.delete(f"/api/v1/tasks/{created['id']}")
    response = _patch(client, created["id"], staleCodes=[410])
    assert response.status_code == 409


def test_patch_refuses_unknown_fields_and_names_the_changeable_ones(client):
    created = _post(client, executeAt=FUTURE).json
    response = _patch(client, created["id"])
    assert response.status_code == 400
    message = response.json["error"]["message"]
    for name in ("executeAt", "notAfter", "successCodes", "staleCodes"):
        assert name in message


# -- retry of a task past its deadline -------------------------------------------------


def _stale_past_deadline(client, dispatcher, db) -> dict:
    not_after = db.now() + timedelta(milliseconds=200)
    created = _post(
        client, notAfter=not_after.astimezone(UTC).isoformat().replace("+00:00", "Z")
    ).json
    wait_until(lambda: db.now() > not_after, timeout=10, message="for notAfter to pass")
    dispatcher.tick()
    after = client.get(f"/api/v1/tasks/{created['id']}").json
    assert after["status"] == "stale" and after["lastError"] == "deadline passed"
    return after


def test_retry_of_a_task_past_its_deadline_is_refused(client, dispatcher, db):
    stale = _stale_past_deadline(client, dispatcher, db)
    response = client.post(f"/api/v1/tasks/{stale['id']}/retry")
    assert response.status_code == 409
    error = response.json["error"]
    assert error["code"] == "conflict"
    assert error["message"].startswith("deadline passed")
    assert error["details"] == {"status": "stale", "notAfter": stale["notAfter"]}
    assert client.get(f"/api/v1/tasks/{stale['id']}").json["status"] == "stale"


def test_bulk_retry_skips_tasks_past_their_deadline(client, dispatcher, db):
    stale = _stale_past_deadline(client, dispatcher, db)
    other = _post(client, executeAt=FUTURE, notAfter=LATER).json
    client.delete(f"/api/v1/tasks/{other['id']}")
    response = client.post("/api/v1/tasks:retry", json={"status": ["stale", "cancelled"]})
    assert response.json == {"count": 1}
    assert client.get(f"/api/v1/tasks/{stale['id']}").json["status"] == "stale"
    assert client.get(f"/api/v1/tasks/{other['id']}").json["status"] == "pending"


def test_retry_of_a_task_whose_deadline_is_ahead_works(client):
    created = _post(client, executeAt=FUTURE, notAfter=LATER).json
    client.delete(f"/api/v1/tasks/{created['id']}")
    response = client.post(f"/api/v1/tasks/{created['id']}/retry")
    assert response.status_code == 200
    assert response.json["status"] == "pending"


def test_every_rule_field_is_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").json
    schemas = document["components"]["schemas"]
    for name in ("TaskInput", "TaskOutput", "TaskPatch"):
        for field in ("notAfter", "successCodes", "staleCodes"):
            assert schemas[name]["properties"][field]["description"], (name, field)
    parameters = document["paths"]["/api/v1/tasks"]["post"]["parameters"]
    assert [p["name"] for p in parameters] == ["traceparent"]


def test_now_is_measured_by_a_wide_margin():
    # the "in the past" check uses the server clock: a deadline seconds ahead is fine
    from scheduler_core.api.schemas_rules import not_after_problem

    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert not_after_problem(now + timedelta(seconds=1), None, now) is None
    assert not_after_problem(now - timedelta(seconds=1), None, now) is not None


def test_bulk_cancel_takes_tasks_past_their_deadline_too(client, store, db):
    # Cancelling is always possible: only a retry is refused past notAfter.
    ids = [_post(client, notAfter="2099-01-01T00:00:00Z").json["id"] for _ in range(3)]
    db.sql(
        postgresql="UPDATE scheduler_tasks SET not_after = now() - interval '1 second'",
        sqlite="UPDATE scheduler_tasks SET not_after = not_after - 4200000000000000",
    )
    answer = client.post("/api/v1/tasks:cancel", json={"status": ["pending"]})
    assert answer.status_code == 200 and answer.json == {"count": 3}
    assert {client.get(f"/api/v1/tasks/{i}").json["status"] for i in ids} == {"cancelled"}

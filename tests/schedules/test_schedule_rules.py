"""A schedule's template keeps the delivery rules: through the API (create, read, PATCH,
refusals), the client, and every task it fires or a trigger enqueues. Both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask.testing import FlaskClient

from scheduler_core.store import Store
from tests.schedules.conftest import new_schedule, place
from tests.support.database import TestDatabase

BASE = "/api/v1/schedules"
HOOK = "http://127.0.0.1:9/hook"
DEADLINE = "2099-06-01T00:00:00Z"


def _create(client: FlaskClient, **fields: Any) -> Any:
    body = {"name": "nightly", "cron": "0 3 * * *", "webhookUrl": HOOK, **fields}
    return client.post(BASE, json=body)


def test_the_template_rules_are_kept_shown_and_given_to_each_task(client: FlaskClient) -> None:
    response = _create(client, notAfter=DEADLINE, successCodes=[202, "2XX"], staleCodes=[410])
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["notAfter"], body["successCodes"], body["staleCodes"]) == (
        DEADLINE,
        [202, "2xx"],
        [410],
    )
    assert client.get(f"{BASE}/nightly").json == body
    triggered = client.post(f"{BASE}/nightly/trigger").json
    assert (triggered["notAfter"], triggered["successCodes"], triggered["staleCodes"]) == (
        DEADLINE,
        [202, "2xx"],
        [410],
    )


def test_a_schedule_without_rules_shows_null(client: FlaskClient) -> None:
    body = _create(client).json
    assert (body["notAfter"], body["successCodes"], body["staleCodes"]) == (None, None, None)


def test_patch_changes_and_clears_the_template_rules(client: FlaskClient) -> None:
    _create(client, staleCodes=[404])
    changed = client.patch(f"{BASE}/nightly", json={"staleCodes": None, "successCodes": [200]})
    assert changed.status_code == 200, changed.json
    assert (changed.json["staleCodes"], changed.json["successCodes"]) == (None, [200])
    triggered = client.post(f"{BASE}/nightly/trigger").json
    assert (triggered["staleCodes"], triggered["successCodes"]) == (None, [200])


def test_bad_template_rules_are_refused_and_nothing_is_stored(client: FlaskClient) -> None:
    response = _create(client, successCodes=[200, 700], staleCodes=[200])
    assert response.status_code == 400
    assert "successCodes" in response.json["error"]["details"]
    response = _create(client, successCodes=[410], staleCodes=[410])
    assert response.status_code == 400
    assert "staleCodes" in response.json["error"]["details"]
    # A notAfter already past: every task the schedule fired would be stale unsent.
    response = _create(client, notAfter="2020-01-01T00:00:00Z")
    assert response.status_code == 400
    assert "in the past" in " ".join(response.json["error"]["details"]["notAfter"])
    assert client.get(BASE).json["schedules"] == []


def test_each_fire_carries_the_rules(store: Store, db: TestDatabase) -> None:
    deadline = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    store.create_schedule(
        new_schedule("every", "* * * * *", not_after=deadline, stale_codes=(404, 410))
    )
    place(db, "every", datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    [fired] = store.fire_due_schedules(now=datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC))
    task = store.get(fired.id)
    assert task is not None
    assert (task.not_after, task.stale_codes, task.success_codes) == (deadline, (404, 410), None)
    assert task.schedule == "every"


def test_the_client_creates_a_schedule_with_rules(client: FlaskClient) -> None:
    from scheduler_core.client.schedules import Schedule

    body = _create(client, notAfter=DEADLINE, staleCodes=["4xx"]).json
    schedule = Schedule.from_json(body)
    assert schedule.not_after == datetime(2099, 6, 1, tzinfo=UTC)
    assert schedule.stale_codes == ("4xx",)
    assert schedule.success_codes is None

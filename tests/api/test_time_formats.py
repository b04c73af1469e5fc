"""Every time the API reads (executeAt at enqueue and PATCH, the bulk filter's creation
bounds) is an RFC 3339 date-time with its offset, and nothing else: Python's
fromisoformat alone would read week dates, basic format and hour-only times, and stop at
a NUL, so "2035-01-01T00:00:00Z<NUL>junk" would have been stored as a time."""

import pytest

from tests.api.helpers import FUTURE, NOWHERE, assert_error, enqueue, task_count

REFUSED = [
    "2035-01-01T00:00:00Z\u0000junk",
    "2035-01-01T00:00:00\u0000Z",
    "2035-W01-1T00:00:00Z",
    "20350101T000000Z",
    "2035-01-01T00Z",
    "2035-01-01T00:00Z",
    "2035-01-01T00:00:00.Z",
    "2035-01-01T00:00:00,5Z",
    "2035-01-01T00:00:00",  # no offset
    "2035-01-01",
    "\uff12035-01-01T00:00:00Z",  # a fullwidth digit
    "2035-02-30T00:00:00Z",
    "2035-01-01T24:00:00Z",
    " 2035-01-01T00:00:00Z",
    "2035-01-01T00:00:00Z ",
]

ACCEPTED = {
    "2035-01-01T00:00:00Z": "2035-01-01T00:00:00Z",
    "2035-01-01t00:00:00z": "2035-01-01T00:00:00Z",
    "2035-01-01 00:00:00Z": "2035-01-01T00:00:00Z",
    "2035-01-01T01:30:00+01:30": "2035-01-01T00:00:00Z",
    "2035-01-01T00:00:00.5-00:00": "2035-01-01T00:00:00.500000Z",
    "2035-01-01T00:00:00.123456789Z": "2035-01-01T00:00:00.123456Z",
}


@pytest.mark.parametrize("value", REFUSED)
def test_enqueue_refuses_a_time_that_is_not_rfc_3339(client, store, value):
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "executeAt": value})
    details = assert_error(response, 400, "validation_error")["details"]
    assert "executeAt" in details
    array = client.post("/api/v1/tasks", json=[{"webhookUrl": NOWHERE}, {"executeAt": value}])
    assert "executeAt" in assert_error(array, 400, "validation_error")["details"]["1"]
    assert task_count(store) == 0


@pytest.mark.parametrize("value, stored", ACCEPTED.items())
def test_enqueue_takes_every_rfc_3339_spelling(client, value, stored):
    task = enqueue(client, executeAt=value)
    assert task["executeAt"].replace(".000000", "") == stored.replace(".000000", "")


@pytest.mark.parametrize("value", REFUSED)
def test_patch_refuses_a_time_that_is_not_rfc_3339(client, value):
    task = enqueue(client, executeAt=FUTURE)
    response = client.patch(f"/api/v1/tasks/{task['id']}", json={"executeAt": value})
    assert "executeAt" in assert_error(response, 400, "validation_error")["details"]
    assert client.get(f"/api/v1/tasks/{task['id']}").get_json() == task


@pytest.mark.parametrize("value", REFUSED[:6])
@pytest.mark.parametrize("field", ["createdBefore", "createdAfter"])
def test_bulk_filters_refuse_a_time_that_is_not_rfc_3339(client, field, value):
    task = enqueue(client, executeAt=FUTURE)
    response = client.post("/api/v1/tasks:cancel", json={"status": ["pending"], field: value})
    assert field in assert_error(response, 400, "validation_error")["details"]
    assert client.get(f"/api/v1/tasks/{task['id']}").get_json()["status"] == "pending"

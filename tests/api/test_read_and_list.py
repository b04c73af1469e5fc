"""GET a task, its attempts, and the list with its filter, limit and keyset cursor."""

import base64
import uuid

import pytest

from tests.api.helpers import (
    FUTURE,
    NOWHERE,
    STATUSES,
    TASK_FIELDS,
    assert_error,
    enqueue,
    get_task,
    parse_time,
)


def enqueue_many(client, count, start=0):
    body = [
        {"webhookUrl": NOWHERE, "executeAt": FUTURE, "payload": i}
        for i in range(start, start + count)
    ]
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201
    return response.get_json()["tasks"]


def list_page(client, query=""):
    response = client.get(f"/api/v1/tasks{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"tasks", "nextCursor"}
    return body


def walk(client, limit, extra=""):
    pages, cursor = [], None
    while True:
        query = f"?limit={limit}{extra}" + (f"&cursor={cursor}" if cursor else "")
        body = list_page(client, query)
        pages.append(body["tasks"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "the cursor never ends"


def cursor_of(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- one task ------------------------------------------------------------------------


def test_get_returns_the_task(client):
    created = enqueue(client, payload={"a": 1}, idempotencyKey="x", maxRetries=4)
    fetched = get_task(client, created["id"])
    assert set(fetched) == TASK_FIELDS
    assert fetched == created


@pytest.mark.parametrize(
    "task_id",
    [
        "abc",
        str(uuid.uuid4()),
        "00000000-0000-0000-0000-000000000000",
        "1",
        "null",
        "' OR 1=1 --",
        "%00",
        "x" * 300,
    ],
)
def test_get_unknown_or_malformed_id_is_404(client, task_id):
    enqueue(client)
    assert_error(client.get(f"/api/v1/tasks/{task_id}"), 404, "not_found")
    assert_error(client.get(f"/api/v1/tasks/{task_id}/attempts"), 404, "not_found")


@pytest.mark.parametrize(
    "spelling", [str.upper, lambda task_id: task_id.replace("-", "")], ids=["upper", "bare"]
)
def test_an_id_is_found_in_any_case_with_or_without_hyphens(client, spelling):
    """A task id is a UUID: every backend finds it however a client spells it."""
    created = enqueue(client, executeAt=FUTURE)
    other = spelling(created["id"])
    assert other != created["id"]
    assert get_task(client, other) == created
    response = client.get(f"/api/v1/tasks/{other}/attempts")
    assert response.status_code == 200 and response.get_json() == {"attempts": []}
    cancelled = client.delete(f"/api/v1/tasks/{other}")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["id"] == created["id"]
    assert cancelled.get_json()["status"] == "cancelled"
    retried = client.post(f"/api/v1/tasks/{other}/retry")
    assert retried.status_code == 200
    assert (retried.get_json()["id"], retried.get_json()["status"]) == (created["id"], "pending")


# -- attempts -----------------------------------------------------------------------


def test_attempts_are_empty_before_delivery(client):
    task = enqueue(client, executeAt=FUTURE)
    response = client.get(f"/api/v1/tasks/{task['id']}/attempts")
    assert response.status_code == 200
    assert response.get_json() == {"attempts": []}


def test_attempts_record_each_delivery(client, dispatcher, receiver, fast_retries):
    receiver.behave("/flaky", statuses=[503, 200], body=b"not yet")
    task = enqueue(client, receiver.url("/flaky"))
    dispatcher.tick()
    after_first = get_task(client, task["id"])
    assert after_first["status"] == "pending"
    assert after_first["attempts"] == 1
    assert after_first["lastStatusCode"] == 503
    assert "503" in after_first["lastError"]
    dispatcher.tick()
    resolved = get_task(client, task["id"])
    assert resolved["status"] == "resolved"
    assert resolved["attempts"] == 2
    assert resolved["lastStatusCode"] == 200
    assert resolved["lastError"] is None
    assert resolved["resolvedAt"] is not None

    response = client.get(f"/api/v1/tasks/{task['id']}/attempts")
    assert response.status_code == 200
    failed, succeeded = response.get_json()["attempts"]
    for number, attempt in [(1, failed), (2, succeeded)]:
        assert set(attempt) == {
            "attempt",
            "startedAt",
            "finishedAt",
            "durationMs",
            "statusCode",
            "error",
            "outcome",
            "latenessMs",
        }
        assert attempt["attempt"] == number
        # Due at once and called within the tick: late by milliseconds, not seconds.
        assert isinstance(attempt["latenessMs"], int) and 0 <= attempt["latenessMs"] < 5000
        assert parse_time(attempt["finishedAt"]) >= parse_time(attempt["startedAt"])
        assert isinstance(attempt["durationMs"], int) and attempt["durationMs"] >= 0
    assert (failed["statusCode"], failed["outcome"]) == (503, "failed")
    assert "503" in failed["error"]
    assert (succeeded["statusCode"], succeeded["outcome"]) == (200, "resolved")
    assert succeeded["error"] is None
    assert parse_time(succeeded["startedAt"]) >= parse_time(failed["finishedAt"])


def test_an_attempt_without_a_response_has_an_error_and_no_status(client, dispatcher, fast_retries):
    task = enqueue(client, "http://127.0.0.1:9/refused", maxRetries=0)
    dispatcher.tick()
    assert get_task(client, task["id"])["status"] == "stale"
    [attempt] = client.get(f"/api/v1/tasks/{task['id']}/attempts").get_json()["attempts"]
    assert attempt["statusCode"] is None
    assert attempt["error"]
    assert attempt["finishedAt"] is not None


def test_a_running_attempt_has_no_finish_yet(client, store):
    task = enqueue(client)
    store.claim_due(10, 60_000)
    assert get_task(client, task["id"])["status"] == "running"
    assert get_task(client, task["id"])["attempts"] == 1
    [attempt] = client.get(f"/api/v1/tasks/{task['id']}/attempts").get_json()["attempts"]
    assert attempt["attempt"] == 1
    assert attempt["startedAt"] is not None
    assert attempt["finishedAt"] is None
    assert attempt["statusCode"] is None


# -- the list -------------------------------------------------------------------------


def test_empty_list(client):
    assert list_page(client) == {"tasks": [], "nextCursor": None}


def test_list_is_newest_first(client):
    ids = [enqueue(client, payload=i)["id"] for i in range(5)]
    body = list_page(client)
    assert [t["id"] for t in body["tasks"]] == ids[::-1]
    assert all(set(t) == TASK_FIELDS for t in body["tasks"])
    assert body["nextCursor"] is None


def test_newest_first_is_by_creation_not_by_due_time(client):
    late = enqueue(client, executeAt="2090-01-01T00:00:00Z")
    early = enqueue(client, executeAt="2001-01-01T00:00:00Z")
    assert [t["id"] for t in list_page(client)["tasks"]] == [early["id"], late["id"]]


def test_default_limit_is_100(client):
    enqueue_many(client, 150)
    body = list_page(client)
    assert len(body["tasks"]) == 100
    assert [t["payload"] for t in body["tasks"]] == list(range(149, 49, -1))
    assert body["nextCursor"] is not None
    rest = list_page(client, f"?cursor={body['nextCursor']}")
    assert [t["payload"] for t in rest["tasks"]] == list(range(49, -1, -1))
    assert rest["nextCursor"] is None


@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_limit_in_range_is_honoured(client, limit):
    enqueue_many(client, 10)
    body = list_page(client, f"?limit={limit}")
    assert len(body["tasks"]) == min(limit, 10)
    assert (body["nextCursor"] is None) == (limit >= 10)


@pytest.mark.parametrize(
    "limit", ["0", "1001", "-1", "x", "1.5", "", "1e2", "10000000000000000000000"]
)
def test_limit_outside_1_to_1000_is_refused(client, limit):
    enqueue(client)
    error = assert_error(client.get(f"/api/v1/tasks?limit={limit}"), 400, "validation_error")
    assert "limit" in error["details"]


def test_status_filter_returns_only_that_status(client, tasks_by_status):
    for status in STATUSES:
        body = list_page(client, f"?status={status}")
        assert [t["id"] for t in body["tasks"]] == [tasks_by_status[status]["id"]], status
        assert body["tasks"][0]["status"] == status
        assert body["nextCursor"] is None
    assert len(list_page(client)["tasks"]) == len(STATUSES)


@pytest.mark.parametrize(
    "status", ["done", "PENDING", "failed", "pending,done", "0", "pending,", ",stale", "a,,b"]
)
def test_unknown_status_is_refused(client, status):
    error = assert_error(client.get(f"/api/v1/tasks?status={status}"), 400, "validation_error")
    assert "status" in error["details"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "abc",
        cursor_of("v1:"),
        cursor_of("v1:x"),
        cursor_of("v1:-5"),
        cursor_of("v2:5"),
        cursor_of("5"),
        cursor_of("v1:9223372036854775808"),  # just past a bigint
        cursor_of("v1:9999999999999999999"),
        cursor_of("v1:123456789012345678901234567890"),
    ],
)
def test_malformed_cursor_is_refused(client, cursor):
    enqueue(client)
    error = assert_error(client.get(f"/api/v1/tasks?cursor={cursor}"), 400, "validation_error")
    assert "cursor" in error["details"]


@pytest.mark.parametrize(("total", "limit"), [(25, 7), (21, 7), (3, 1), (5, 100)])
def test_pagination_visits_every_task_once(client, total, limit):
    created = enqueue_many(client, total)
    pages = walk(client, limit)
    seen = [t["id"] for page in pages for t in page]
    assert seen == [t["id"] for t in reversed(created)]
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit  # the last page is never an empty extra one


def test_pagination_with_a_status_filter(client, store, tasks_by_status):
    more = enqueue_many(client, 9)
    pages = walk(client, 4, "&status=pending")
    seen = [t["id"] for page in pages for t in page]
    assert seen == [t["id"] for t in reversed(more)] + [tasks_by_status["pending"]["id"]]
    assert [len(p) for p in pages] == [4, 4, 2]


def test_cursor_is_stable_while_tasks_are_added(client):
    original = enqueue_many(client, 10)
    first = list_page(client, "?limit=4")
    assert [t["payload"] for t in first["tasks"]] == [9, 8, 7, 6]
    added = enqueue_many(client, 5, start=100)
    second = list_page(client, f"?limit=4&cursor={first['nextCursor']}")
    assert [t["payload"] for t in second["tasks"]] == [5, 4, 3, 2]
    enqueue(client, payload=200)
    third = list_page(client, f"?limit=4&cursor={second['nextCursor']}")
    assert [t["payload"] for t in third["tasks"]] == [1, 0]
    assert third["nextCursor"] is None
    seen = [t["id"] for t in first["tasks"] + second["tasks"] + third["tasks"]]
    assert seen == [t["id"] for t in reversed(original)]
    # A fresh walk starts from the newest and sees the added tasks too.
    fresh = [t["payload"] for t in list_page(client, "?limit=1000")["tasks"]]
    assert fresh[:6] == [200, 104, 103, 102, 101, 100]
    assert len(fresh) == 10 + len(added) + 1


def test_cursor_survives_a_task_changing_state(client):
    created = enqueue_many(client, 6)
    first = list_page(client, "?limit=3")
    client.delete(f"/api/v1/tasks/{created[1]['id']}")
    second = list_page(client, f"?limit=3&cursor={first['nextCursor']}")
    assert [t["payload"] for t in second["tasks"]] == [2, 1, 0]
    assert second["tasks"][1]["status"] == "cancelled"

"""POST /api/v1/tasks with one task: the shape, the defaults, and what is refused."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.api.helpers import (
    FUTURE,
    NOWHERE,
    TASK_FIELDS,
    assert_error,
    enqueue,
    get_task,
    parse_time,
    task_count,
    utc_now,
)


def post_raw(client, body, content_type="application/json"):
    return client.post("/api/v1/tasks", data=body, content_type=content_type)


# -- the created task ------------------------------------------------------------


def test_created_task_has_the_full_shape_and_a_location(client):
    response = client.post(
        "/api/v1/tasks",
        json={
            "webhookUrl": "https://example.com/hook?x=1",
            "webhookAuth": "Bearer hunter2",
            "executeAt": "2030-06-01T12:30:00Z",
            "payload": {"order": 42},
            "idempotencyKey": "order-42",
            "maxRetries": 3,
        },
    )
    assert response.status_code == 201
    task = response.get_json()
    assert set(task) == TASK_FIELDS
    assert isinstance(task["id"], str) and task["id"]
    # Query values may be tokens: the API shows their keys only (SPEC "Security").
    assert task["webhookUrl"] == "https://example.com/hook?x=***"
    assert task["executeAt"] == "2030-06-01T12:30:00Z"
    assert task["nextAttemptAt"] == "2030-06-01T12:30:00Z"
    assert task["status"] == "pending"
    assert task["attempts"] == 0
    assert task["maxRetries"] == 3
    assert task["payload"] == {"order": 42}
    assert task["idempotencyKey"] == "order-42"
    assert task["lastError"] is None
    assert task["lastStatusCode"] is None
    assert task["resolvedAt"] is None
    created, updated = parse_time(task["createdAt"]), parse_time(task["updatedAt"])
    assert abs(created - utc_now()) < timedelta(minutes=1)
    assert updated >= created
    assert response.headers["Location"].endswith(f"/api/v1/tasks/{task['id']}")
    assert "hunter2" not in response.get_data(as_text=True)
    assert client.get(response.headers["Location"]).get_json() == task


def test_defaults_are_due_now_null_payload_and_config_retries(client):
    before = utc_now()
    task = enqueue(client)
    after = utc_now()
    execute_at = parse_time(task["executeAt"])
    # The database clock decides; it runs on this host, so allow a little slack.
    assert before - timedelta(seconds=5) <= execute_at <= after + timedelta(seconds=5)
    assert task["nextAttemptAt"] == task["executeAt"]
    assert task["payload"] is None
    assert task["maxRetries"] is None
    assert task["idempotencyKey"] is None
    assert task["status"] == "pending"


def test_explicit_nulls_mean_the_defaults(client):
    task = enqueue(
        client, executeAt=None, payload=None, maxRetries=None, idempotencyKey=None, webhookAuth=None
    )
    assert task["payload"] is None and task["maxRetries"] is None
    assert abs(parse_time(task["executeAt"]) - utc_now()) < timedelta(minutes=1)


def test_task_ids_are_unique(client):
    ids = {enqueue(client)["id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2030-01-01T12:00:00+02:00", "2030-01-01T10:00:00Z"),
        ("2030-01-01T12:00:00-05:30", "2030-01-01T17:30:00Z"),
        ("2030-01-01T12:00:00+00:00", "2030-01-01T12:00:00Z"),
        ("2030-01-01T12:00:00.250Z", "2030-01-01T12:00:00.250000Z"),
        ("2030-12-31T23:30:00-01:00", "2031-01-01T00:30:00Z"),
    ],
)
def test_execute_at_with_an_offset_is_normalised_to_utc(client, given, expected):
    task = enqueue(client, executeAt=given)
    assert task["executeAt"] == expected
    assert task["nextAttemptAt"] == expected
    assert get_task(client, task["id"])["executeAt"] == expected


def test_a_past_execute_at_is_due_at_once_and_a_future_one_is_not(client, dispatcher, receiver):
    past = enqueue(client, receiver.url("/past"), executeAt="2001-02-03T04:05:06Z")
    future = enqueue(client, receiver.url("/future"), executeAt=FUTURE)
    dispatcher.tick()  # returns after every claimed delivery has its outcome
    [call] = receiver.calls()
    assert call.path == "/past"
    assert call.json()["taskId"] == past["id"]
    assert call.json()["executeAt"] == "2001-02-03T04:05:06Z"
    assert get_task(client, past["id"])["status"] == "resolved"
    assert get_task(client, past["id"])["executeAt"] == "2001-02-03T04:05:06Z"
    assert get_task(client, future["id"])["status"] == "pending"


@pytest.mark.parametrize(
    "execute_at",
    [
        "2030-01-01T12:00:00",  # naive: no offset
        "2030-01-01",  # a date alone
        "tomorrow",
        "2030-13-01T00:00:00Z",
        "2030-01-01T25:00:00Z",
        "",
        1893456000,  # epoch seconds are not ISO-8601
        True,
        ["2030-01-01T00:00:00Z"],
        {"at": "2030-01-01T00:00:00Z"},
    ],
)
def test_bad_execute_at_is_refused(client, store, execute_at):
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "executeAt": execute_at})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"executeAt"}
    assert task_count(store) == 0


# -- content types ---------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        None,
    ],
)
def test_body_is_json_whatever_the_content_type(client, store, content_type):
    body = json.dumps({"webhookUrl": NOWHERE, "payload": {"a": [1, 2]}, "idempotencyKey": "k"})
    if content_type is None:
        response = client.post("/api/v1/tasks", data=body.encode())
    else:
        response = post_raw(client, body, content_type)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["payload"] == {"a": [1, 2]}
    assert response.get_json()["idempotencyKey"] == "k"
    assert task_count(store) == 1


def test_a_utf8_byte_order_mark_is_tolerated(client):
    body = b"\xef\xbb\xbf" + json.dumps({"webhookUrl": NOWHERE, "payload": "x"}).encode()
    response = post_raw(client, body, "text/plain")
    assert response.status_code == 201
    assert response.get_json()["payload"] == "x"


# -- refused fields ---------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["webhookURL", "webhook_url", "url", "id", "status", "attempts", "extra"]
)
def test_unknown_field_is_refused_by_name(client, store, field):
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, field: "x"})
    error = assert_error(response, 400, "validation_error")
    assert field in error["details"]
    assert task_count(store) == 0


def test_typo_in_the_url_field_names_both_fields(client, store):
    response = client.post("/api/v1/tasks", json={"webhookURL": NOWHERE})
    error = assert_error(response, 400, "validation_error")
    assert "webhookURL" in error["details"]
    assert "webhookUrl" in error["details"]  # required, and missing
    assert task_count(store) == 0


@pytest.mark.parametrize(
    "url",
    [
        "/relative/hook",
        "example.com/hook",
        "//example.com/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "mailto:ops@example.com",
        "http://",
        "http:///hook",
        "https://:443/hook",
        "http://example.com:99999/hook",
        "http://exa mple.com/hook",
        "http://example.com/ho\nok",
        "http://[::1/hook",
        "http://example.com/" + "a" * 5000,
        "",
        None,
        42,
        ["http://example.com"],
        {"url": "http://example.com"},
    ],
)
def test_bad_webhook_url_is_refused(client, store, url):
    response = client.post("/api/v1/tasks", json={"webhookUrl": url})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"webhookUrl"}
    assert task_count(store) == 0


def test_missing_webhook_url_is_refused(client, store):
    response = client.post("/api/v1/tasks", json={"payload": 1})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"webhookUrl"}
    assert task_count(store) == 0


@pytest.mark.parametrize(
    "url,shown",
    [
        ("http://example.com/hook", None),
        ("https://example.com/hook", None),
        ("HTTPS://EXAMPLE.COM/Hook", None),
        # What may hold credentials (SPEC "Security") is shown masked, the rest verbatim.
        ("http://127.0.0.1:8080/hook?a=1&b=2#frag", "http://127.0.0.1:8080/hook?a=***&b=***#***"),
        ("http://[::1]:8080/hook", None),
        ("https://user:pass@example.com/hook", "https://***@example.com/hook"),
        ("http://internal-service/hook", None),
    ],
)
def test_http_and_https_urls_are_accepted_verbatim(client, url, shown):
    assert enqueue(client, url)["webhookUrl"] == (shown or url)


@pytest.mark.parametrize("value", [True, False, 1.5, 2.0, "3", -1, 1001, 10**30, [1], {"n": 1}])
def test_bad_max_retries_is_refused(client, store, value):
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "maxRetries": value})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"maxRetries"}
    assert task_count(store) == 0


@pytest.mark.parametrize("value", [0, 1, 1000])
def test_max_retries_in_range_is_kept(client, value):
    assert enqueue(client, maxRetries=value)["maxRetries"] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("webhookAuth", "Bearer abc\u0000def"),
        ("idempotencyKey", "key\u0000"),
        ("webhookAuth", 123),
        ("idempotencyKey", 123),
        ("idempotencyKey", ["k"]),
    ],
)
def test_bad_strings_are_refused(client, store, field, value):
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, field: value})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {field}
    assert task_count(store) == 0


@pytest.mark.parametrize(
    "auth",
    [
        "Bearer abc\r\nX-Injected: yes",
        "Bearer abc\ndef",
        "\tBearer abc",
        " Bearer abc",
        "Bearer \u20ac",
    ],
)
def test_webhook_auth_that_cannot_be_a_header_is_refused_without_echoing_it(client, store, auth):
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "webhookAuth": auth})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"webhookAuth"}
    assert "abc" not in response.get_data(as_text=True)
    assert task_count(store) == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_invalid_json(client, store, literal):
    body = f'{{"webhookUrl": "{NOWHERE}", "payload": {{"n": {literal}}}}}'
    assert_error(post_raw(client, body), 400, "invalid_json")
    assert task_count(store) == 0


@pytest.mark.parametrize("field", ["payload", "webhookAuth", "idempotencyKey"])
def test_a_lone_surrogate_is_invalid_json(client, store, field):
    body = f'{{"webhookUrl": "{NOWHERE}", "{field}": "x\\ud800y"}}'
    assert_error(post_raw(client, body), 400, "invalid_json")
    assert task_count(store) == 0


# -- payloads ----------------------------------------------------------------------


PAYLOADS = [
    {"nested": {"list": [1, 2.5, "three", None, True, False, {"deep": [[[]]]}]}},
    {"z": 1, "a": 2, "m": 3},  # key order is kept
    "héllo wörld ☃ 日本語 😀",
    'a string with "quotes", \\backslashes\\ and\nnew lines\t',
    "NUL inside \u0000 a string",
    2**64 + 1,
    -(2**70),
    123456789012345678901234567890,
    0.1,
    -2.5e-300,
    1.7976931348623157e308,
    [],
    {},
    [1, "two", [3], {"four": 4}],
    "",
    0,
    False,
    True,
    {"": "empty key", "😀": "emoji key"},
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payload_round_trips_exactly(client, payload):
    task = enqueue(client, payload=payload, executeAt=FUTURE)
    assert task["payload"] == payload
    fetched = get_task(client, task["id"])["payload"]
    assert fetched == payload
    assert json.dumps(fetched) == json.dumps(payload)  # same types and key order
    [listed] = client.get("/api/v1/tasks").get_json()["tasks"]
    assert json.dumps(listed["payload"]) == json.dumps(payload)


def test_payload_reaches_the_receiver_and_an_omitted_one_is_null(client, dispatcher, receiver):
    payload = {"b": [1, 2**65, "ü"], "a": None}
    with_payload = enqueue(client, receiver.url("/with"), payload=payload)
    without = enqueue(client, receiver.url("/without"))
    dispatcher.tick()
    [call_with] = receiver.calls("/with")
    [call_without] = receiver.calls("/without")
    assert call_with.json()["payload"] == payload
    assert list(call_with.json()["payload"]) == ["b", "a"]
    assert call_with.json()["taskId"] == with_payload["id"]
    assert "payload" in call_without.json() and call_without.json()["payload"] is None
    assert call_without.json()["taskId"] == without["id"]


# -- idempotency -------------------------------------------------------------------


def test_idempotency_key_returns_the_first_task_whatever_the_new_body_says(client, store):
    first = client.post(
        "/api/v1/tasks",
        json={
            "webhookUrl": NOWHERE,
            "payload": {"v": 1},
            "idempotencyKey": "invoice-7",
            "executeAt": FUTURE,
            "maxRetries": 2,
            "webhookAuth": "first",
        },
    )
    assert first.status_code == 201
    again = client.post(
        "/api/v1/tasks",
        json={
            "webhookUrl": "https://other.example.com/x",
            "payload": {"v": 2},
            "idempotencyKey": "invoice-7",
            "executeAt": "2031-01-01T00:00:00Z",
            "maxRetries": 9,
            "webhookAuth": "second",
        },
    )
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert task_count(store) == 1
    assert get_task(client, first.get_json()["id"]) == first.get_json()


def test_idempotency_key_holds_after_the_task_was_cancelled(client, store):
    first = enqueue(client, idempotencyKey="k1", executeAt=FUTURE)
    client.delete(f"/api/v1/tasks/{first['id']}")
    again = enqueue(client, expect=200, idempotencyKey="k1")
    assert again["id"] == first["id"]
    assert again["status"] == "cancelled"
    assert task_count(store) == 1


def test_different_idempotency_keys_create_different_tasks(client, store):
    a = enqueue(client, idempotencyKey="a")
    b = enqueue(client, idempotencyKey="b")
    c = enqueue(client, idempotencyKey="A")  # keys are case-sensitive
    assert len({a["id"], b["id"], c["id"]}) == 3
    assert task_count(store) == 3


def test_concurrent_enqueues_with_one_key_create_one_task(app, store):
    def post(i):
        # One test client per thread: a Flask test client is not meant to be shared.
        response = app.test_client().post(
            "/api/v1/tasks", json={"webhookUrl": NOWHERE, "idempotencyKey": "race", "payload": i}
        )
        return response.status_code, response.get_json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(post, range(16)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 15 + [201]
    assert len({task_id for _, task_id in results}) == 1
    assert task_count(store) == 1


def test_a_refused_repeat_of_a_key_is_still_refused(client, store):
    enqueue(client, idempotencyKey="k")
    response = client.post("/api/v1/tasks", json={"webhookUrl": "ftp://x/", "idempotencyKey": "k"})
    assert_error(response, 400, "validation_error")
    assert task_count(store) == 1


# -- documented but not built yet ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
    ],
)
def test_link_local_targets_are_refused_at_enqueue(client, store, url):
    response = client.post("/api/v1/tasks", json={"webhookUrl": url})
    assert_error(response, 400, "validation_error")
    assert task_count(store) == 0

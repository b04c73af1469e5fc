"""Property-based fuzz of the API beyond POST /tasks bodies (tests/api/test_fuzz.py):
config patches, list queries, task ids in paths, HTTP methods, Content-Types and raw
bytes. Never a 500, always the error shape, and a refused request changes nothing.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scheduler_core.runtime_config import BOUNDS, CAMEL_TO_COLUMN, to_camel
from scheduler_core.store.base import encode_cursor
from tests.dispatch.helpers import enqueue

pytestmark = pytest.mark.slow  # thousands of generated requests

STATUSES = ("pending", "running", "resolved", "stale", "cancelled")
NOWHERE = "http://127.0.0.1:9/hook"
FUTURE = "2099-01-01T00:00:00Z"

fuzz = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def assert_error_shape(response: Any, status: int | None = None) -> dict[str, Any]:
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if status is not None:
        assert response.status_code == status
    return dict(error)


def stored_config(db: Any) -> dict[str, int]:
    columns = list(BOUNDS)
    rows = db.execute(f"SELECT {', '.join(columns)} FROM scheduler_config")
    assert len(rows) == 1, rows  # one row, always
    return {to_camel(c): v for c, v in zip(columns, rows[0], strict=True)}


def task_total(db: Any) -> int:
    [(n,)] = db.execute("SELECT count(*) FROM scheduler_tasks")
    return int(n)


@pytest.fixture
def seeded(client, store) -> dict[str, str]:
    """A few tasks, made once per test (not per example): {status: id}."""
    pending = enqueue(client, NOWHERE, executeAt=FUTURE)["id"]
    cancelled = enqueue(client, NOWHERE, executeAt=FUTURE)["id"]
    assert client.delete(f"/api/v1/tasks/{cancelled}").status_code == 200
    running = enqueue(client, NOWHERE)["id"]
    [claimed] = store.claim_due(10, 3_600_000)
    assert claimed.id == running
    for _ in range(4):
        enqueue(client, NOWHERE, executeAt=FUTURE, payload={"n": _})
    return {"pending": pending, "cancelled": cancelled, "running": running}


# -- PATCH /api/v1/config ---------------------------------------------------------------

edge_integers = sorted(
    {v for b in BOUNDS.values() for v in (b.minimum - 1, b.minimum, b.default, b.maximum)}
    | {b.maximum + 1 for b in BOUNDS.values()}
    | {0, -1, 2**31, 2**63, 10**30}
)
config_values = st.one_of(
    st.sampled_from(edge_integers),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([5.0, 1e3, "100", "", [], {}, [100]]),
    json_values,
)
config_keys = st.one_of(
    st.sampled_from(sorted(CAMEL_TO_COLUMN)),
    st.sampled_from(sorted(BOUNDS)),  # the column spelling is the CLI's, not the API's
    st.sampled_from(["SelectSize", "selectsize", "select_size ", "", "__proto__", "singleton"]),
    st.text(max_size=12),
)
config_bodies = st.one_of(
    st.dictionaries(config_keys, config_values, max_size=5),
    st.dictionaries(st.sampled_from(sorted(CAMEL_TO_COLUMN)), st.sampled_from(edge_integers)),
    json_values,
)


@fuzz
@given(body=config_bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_config_patches_never_crash_and_refusals_change_nothing(client, db, body, content_type):
    before = client.get("/api/v1/config").get_json()
    assert before == stored_config(db)
    response = client.patch(
        "/api/v1/config", data=json.dumps(body), content_type=content_type or None
    )
    after = stored_config(db)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert assert_error_shape(response)["code"] == "validation_error"
        assert after == before
        return
    assert isinstance(body, dict)
    returned = response.get_json()
    assert returned == after
    for key, value in after.items():
        assert value == body.get(key, before[key])
        bound = BOUNDS[CAMEL_TO_COLUMN[key]]
        assert type(value) is int and bound.minimum <= value <= bound.maximum
    assert after["retryBackoffMaxMs"] >= after["retryBackoffMs"]
    assert set(body) <= set(CAMEL_TO_COLUMN)


# -- GET /api/v1/tasks?status=&limit=&cursor= -------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


query_text = st.text(max_size=16)
limits = st.one_of(
    st.integers(min_value=-5, max_value=1005).map(str),
    st.sampled_from(
        ["", " ", "+5", "5 ", " 5", "1e3", "0x10", "05", "²", "١٢", "５", "10" * 12, "1.0"]
    ),
    query_text,
)
statuses = st.one_of(
    st.sampled_from([*STATUSES, "PENDING", "Resolved", "", " pending", "running\n"]),
    st.sampled_from(["pending,", ",", "stale,,pending", "pending, stale"]),
    st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3).map(",".join),
    query_text,
)
queues = st.one_of(st.sampled_from(["default", "Default", "x", ""]), query_text)
cursors = st.one_of(
    st.integers(min_value=0, max_value=2**64).map(encode_cursor),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: _b64(f"v1:{n}")),
    st.text(max_size=24).map(lambda t: _b64(f"v1:{t}")),
    st.binary(max_size=24).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    st.sampled_from(["", "=", "====", "v1:5", "djE6", "djE6MA", "djE6LTE"]),
    query_text,
)
queries = st.lists(
    st.one_of(
        st.tuples(st.just("status"), statuses),
        st.tuples(st.just("limit"), limits),
        st.tuples(st.just("cursor"), cursors),
        st.tuples(st.just("queue"), queues),
        st.tuples(st.sampled_from(["Status", "LIMIT", "page", "status[]"]), query_text),
    ),
    max_size=4,
)


@fuzz
@given(pairs=queries)
def test_list_queries_are_200_or_400_never_500(client, db, seeded, pairs):
    total = task_total(db)
    response = client.get("/api/v1/tasks", query_string=urlencode(pairs))
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    args: dict[str, str] = {}
    for key, value in pairs:
        if key == "status" and key in args:  # repeated statuses add up, as status=a,b
            args[key] = ",".join(v for v in (args[key], value) if v)
        else:
            args.setdefault(key, value)  # another repeated parameter is refused unless equal
    if response.status_code == 400:
        error = assert_error_shape(response)
        assert error["code"] == "validation_error"
        assert set(error["details"]) <= {"status", "limit", "cursor", "queue"}
        return
    body = response.get_json()
    assert set(body) == {"tasks", "nextCursor"}
    limit = 100
    if "limit" in args:  # an accepted limit is plain ASCII digits within 1..1000
        raw = args["limit"]
        assert raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 1000, raw
        limit = int(raw)
    assert len(body["tasks"]) <= min(limit, total)
    if args.get("status"):  # comma-separated, each one a status
        named = set(args["status"].split(","))
        assert named <= set(STATUSES), args["status"]
        assert {t["status"] for t in body["tasks"]} <= named
    if args.get("queue"):
        assert args["queue"] == "default"
    if body["nextCursor"] is not None:
        follow = client.get("/api/v1/tasks", query_string={"cursor": body["nextCursor"]})
        assert follow.status_code == 200
    assert task_total(db) == total


# -- PATCH /api/v1/tasks/{id} and the bulk filters -------------------------------------

time_texts = st.sampled_from(
    [
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00z",
        "2030-01-01T00:00:00+05:30",
        "2030-01-01T00:00:00",
        "2030-01-01",
        "2030-01-01T00:00:00+25:00",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "",
    ]
)
task_fields = st.sampled_from(["executeAt", "webhookUrl", "webhookAuth", "status", "id", ""])
patch_bodies = st.one_of(
    st.dictionaries(task_fields, st.one_of(time_texts, json_values), max_size=3),
    st.fixed_dictionaries({"executeAt": time_texts}),
    json_values,
)
filter_keys = st.one_of(
    st.sampled_from(["status", "queue", "createdBefore", "createdAfter"]),
    st.sampled_from(["Status", "ids", "created_before", ""]),
    st.text(max_size=6),
)
filter_values = st.one_of(
    st.lists(st.sampled_from([*STATUSES, "PENDING", "", " stale", "x"]), max_size=3),
    st.sampled_from(["default", "Default", "x"]),
    time_texts,
    json_values,
)
filter_bodies = st.one_of(st.dictionaries(filter_keys, filter_values, max_size=4), json_values)


def stored_tasks(db: Any) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT id, status, execute_at, next_attempt_at, attempts, budget_start, updated_at"
        " FROM scheduler_tasks ORDER BY seq"
    )


@fuzz
@given(body=patch_bodies, which=st.sampled_from(["pending", "running", "cancelled"]))
def test_reschedules_never_crash_and_refusals_change_nothing(client, db, seeded, body, which):
    before = stored_tasks(db)
    response = client.patch(f"/api/v1/tasks/{seeded[which]}", data=json.dumps(body))
    event(f"{which} {response.status_code}")
    assert response.status_code in (200, 400, 409), response.get_data(as_text=True)
    if response.status_code != 200:
        assert_error_shape(response)
        assert stored_tasks(db) == before
        return
    assert which == "pending" and set(body) == {"executeAt"}
    moved = response.get_json()
    assert moved["executeAt"] == moved["nextAttemptAt"]


@fuzz
@given(body=filter_bodies, verb=st.sampled_from(["retry", "cancel"]))
def test_bulk_filters_never_crash_and_refusals_change_nothing(client, db, seeded, body, verb):
    before = stored_tasks(db)
    response = client.post(f"/api/v1/tasks:{verb}", data=json.dumps(body))
    event(f"{verb} {response.status_code}")
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert assert_error_shape(response)["code"] == "validation_error"
        assert stored_tasks(db) == before
        return
    assert isinstance(body, dict) and body
    assert set(body) <= {"status", "queue", "createdBefore", "createdAfter"}
    count = response.get_json()["count"]
    assert type(count) is int and 0 <= count <= len(before)
    running = [row for row in before if row[1] == "running"]
    assert [row for row in stored_tasks(db) if row[0] in {r[0] for r in running}] == running


# -- task ids in paths -------------------------------------------------------------------

ROUTES_WITH_AN_ID = {
    ("GET", ""): {200, 404},
    ("GET", "/attempts"): {200, 404},
    ("DELETE", ""): {200, 404, 409},
    ("POST", "/retry"): {200, 404, 409},
}


def id_spellings(seeded_ids: list[str]) -> st.SearchStrategy[str]:
    real = st.sampled_from(seeded_ids)
    return st.one_of(
        real,
        real.map(str.upper),
        real.map(lambda i: i.replace("-", "")),
        st.tuples(real, st.sampled_from(["\n", "\r\n", " ", "\t", "\x00", "}", "%", "/", "."])).map(
            "".join
        ),
        st.tuples(st.sampled_from(["{", " ", "\n", "urn:uuid:", "0"]), real).map("".join),
        st.uuids().map(str),
        st.text(min_size=1, max_size=40),
        st.text(alphabet="0123456789abcdefABCDEF-", min_size=30, max_size=38),
    )


@fuzz
@given(data=st.data(), route=st.sampled_from(sorted(ROUTES_WITH_AN_ID)))
def test_any_task_id_in_a_path_is_an_answer_never_a_500(client, db, seeded, data, route):
    task_id = data.draw(id_spellings(sorted(seeded.values())), label="task_id")
    method, suffix = route
    total = task_total(db)
    response = client.open(f"/api/v1/tasks/{quote(task_id, safe='')}{suffix}", method=method)
    event(f"{method} {suffix or '/id'} {response.status_code}")
    allowed = ROUTES_WITH_AN_ID[route]
    if "/" in task_id:  # another route, or none
        allowed = allowed | {404, 405}
    assert response.status_code in allowed, (task_id, response.get_data(as_text=True))
    if response.status_code >= 400:
        error = assert_error_shape(response)
        if response.status_code == 409:
            assert error["code"] == "conflict" and error["details"]["status"] in STATUSES
    elif suffix != "/attempts":
        returned = response.get_json()
        assert returned["id"] in seeded.values()  # the canonical spelling
        if method == "DELETE":
            assert returned["status"] == "cancelled"
        if method == "POST":
            assert returned["status"] == "pending"
    assert task_total(db) == total


# -- HTTP methods ------------------------------------------------------------------------

methods = st.one_of(
    st.sampled_from(
        [
            "GET",
            "HEAD",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
            "OPTIONS",
            "TRACE",
            "CONNECT",
            "PROPFIND",
            "MKCOL",
            "LOCK",
            "PURGE",
            "QUERY",
            "SEARCH",
        ]
    ),
    st.text(alphabet=string.ascii_uppercase + "-_", min_size=1, max_size=12),
)


@fuzz
@given(data=st.data(), method=methods)
def test_every_route_answers_any_method_without_a_500(app, client, db, seeded, data, method):
    routes: dict[str, set[str]] = {}  # one path may have a rule per method
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            routes.setdefault(rule.rule, set()).update(rule.methods or ())
    route = data.draw(st.sampled_from(sorted(routes)), label="route")
    path, allowed = route.replace("<task_id>", seeded["pending"]), routes[route]
    total = task_total(db)
    response = client.open(path, method=method)
    event(f"{'allowed' if method in allowed else 'refused'} {response.status_code}")
    assert response.status_code < 500 or (path == "/readyz" and response.status_code == 503)
    if method in allowed:
        assert response.status_code != 405, (method, path)
    else:
        assert response.status_code == 405
        if method != "HEAD":  # an answer to HEAD has no body
            assert assert_error_shape(response)["code"] == "method_not_allowed"
        allow = {m.strip() for m in response.headers.get("Allow", "").split(",")}
        assert allow == allowed, (method, path, allow)
    if method not in ("DELETE", "POST"):
        assert task_total(db) == total


# -- Content-Types and raw bytes ---------------------------------------------------------

content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "application/json; charset=nonsense",
            "text/plain",
            "text/html; charset=latin-1",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/octet-stream",
            "*/*",
            ";;;",
            "",
        ]
    ),
    st.text(alphabet=string.printable.replace("\r", "").replace("\n", ""), max_size=40).filter(
        lambda t: "\x0b" not in t and "\x0c" not in t
    ),
)
task_json = st.fixed_dictionaries(
    {"webhookUrl": st.sampled_from([NOWHERE, "https://example.com/x"])},
    optional={"payload": json_values, "executeAt": st.just(FUTURE)},
).map(json.dumps)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    task_json.map(str.encode),
    task_json.map(lambda t: b"\xef\xbb\xbf" + t.encode()),  # a UTF-8 byte order mark
    task_json.map(lambda t: t.encode("utf-16")),
    task_json.map(lambda t: t.encode()[: len(t) // 2]),  # cut short
    st.tuples(task_json, st.binary(min_size=1, max_size=8)).map(lambda p: p[0].encode() + p[1]),
    st.sampled_from([b"webhookUrl=http://127.0.0.1:9/hook", b"--xyz\r\n\r\n--xyz--", b"\x00"]),
    st.dictionaries(st.sampled_from(sorted(CAMEL_TO_COLUMN)), st.integers(1, 100)).map(
        lambda d: json.dumps(d).encode()
    ),
)


def _json_of(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None


@fuzz
@given(content_type=content_types, data=raw_bodies)
def test_enqueue_takes_any_content_type_and_refuses_bad_bytes_cleanly(
    client, db, content_type, data
):
    total = task_total(db)
    response = client.post("/api/v1/tasks", data=data, content_type=content_type or None)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 201, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert assert_error_shape(response)["code"] in ("invalid_json", "validation_error")
        assert task_total(db) == total
        return
    sent = _json_of(data)
    assert isinstance(sent, dict), data  # only a JSON task was taken, whatever the type
    created = response.get_json()
    stored = client.get(f"/api/v1/tasks/{created['id']}").get_json()
    assert stored["webhookUrl"] == sent["webhookUrl"]
    assert stored["payload"] == sent.get("payload")
    assert task_total(db) == total + 1


@fuzz
@given(content_type=content_types, data=raw_bodies)
def test_config_takes_any_content_type_and_refuses_bad_bytes_cleanly(
    client, db, content_type, data
):
    before = stored_config(db)
    response = client.patch("/api/v1/config", data=data, content_type=content_type or None)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert assert_error_shape(response)["code"] in ("invalid_json", "validation_error")
        assert stored_config(db) == before
        return
    sent = _json_of(data)
    assert isinstance(sent, dict)
    assert stored_config(db) == {**before, **sent}


# -- what the fuzz found, pinned down ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("GET", "/attempts"), ("DELETE", ""), ("POST", "/retry")]
)
@pytest.mark.parametrize("tail", ["%0A", "%0D%0A"])
def test_a_task_id_with_a_trailing_newline_is_a_404_not_a_500(client, seeded, method, suffix, tail):
    # The id pattern ended in `$`, which also matches before a final newline; uuid.UUID
    # then refused the id and the request failed with 500.
    response = client.open(f"/api/v1/tasks/{seeded['pending']}{tail}{suffix}", method=method)
    assert assert_error_shape(response, 404)["code"] == "not_found"


@pytest.mark.parametrize("limit", ["²", "¹²", "５", "١٢", "𝟓"])
def test_a_limit_in_non_ascii_digits_is_a_400_not_a_500(client, limit):
    # str.isdigit() accepts them; int() refused "²" (500) and read "５" as 5.
    response = client.get("/api/v1/tasks", query_string={"limit": limit})
    error = assert_error_shape(response, 400)
    assert error["code"] == "validation_error" and "limit" in error["details"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/tasks//attempts"),
        ("POST", "/api/v1/tasks//retry"),
        ("GET", "/api/v1//tasks"),
        ("GET", "//api/v1/config"),
    ],
)
def test_an_empty_path_segment_is_a_json_404_not_an_html_redirect(client, method, path):
    # werkzeug merged the slashes with a 308 and an HTML page, sending the client to
    # another resource (/api/v1/tasks/attempts).
    response = client.open(path, method=method)
    assert assert_error_shape(response, 404)["code"] == "not_found"

"""The enqueue route's fast path must be the schemas, only faster: `read_task` never
accepts what TaskInputSchema refuses and reads what it accepts to the same task, and
`task_json` writes exactly what TaskOutputSchema dumps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from scheduler_core.api.fast_path import INPUT_FIELDS, read_task, read_tasks, task_json
from scheduler_core.api.schemas import TaskInputSchema, TaskOutputSchema
from scheduler_core.api.tasks import _new_task
from scheduler_core.models import NewTask, Task, TaskStatus
from scheduler_core.store.sql_store import new_task_ids

SCHEMES = frozenset({"http", "https"})
SCHEMA = TaskInputSchema(schemes=SCHEMES)

urls = st.one_of(
    st.sampled_from(
        [
            "http://127.0.0.1:9/x",
            "https://example.com/hook?a=1#f",
            "HTTP://EXAMPLE.com:8080/",
            "ftp://example.com/x",
            "http://",
            "http://[::1]:70000/",
            "http://exa mple.com/",
            "http://example.com/\x7f",
            "http://example.com/\u2028",
            "/relative/path",
            "http://user:pw@example.com/",
            "x" * 3000,
        ]
    ),
    st.text(max_size=40).map(lambda s: "http://example.com/" + s),
)
times = st.one_of(
    st.sampled_from(
        [
            "2099-01-01T00:00:00Z",
            "2099-01-01T00:00:00z",
            "2099-01-01T00:00:00+02:00",
            "2099-01-01T00:00:00",
            "2099-01-01",
            "1969-12-31T23:59:59Z",
            "9000-01-01T00:00:00Z",
            "9000-01-01T00:00:00.000001Z",
            "20990101T000000Z",
            "not a time",
            "",
        ]
    ),
    st.datetimes(
        min_value=datetime(1960, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(0))])
    ).map(lambda d: d.isoformat()),
)
texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", " lead", "tab\tin", "nul\x00", "é", "\u0100", "x" * 255, "x" * 256]
        + ["x" * 8192, "x" * 8193]  # the limits of idempotencyKey and webhookAuth
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2000),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
payloads = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)

VALID = {
    "webhookUrl": "http://127.0.0.1:9/x",
    "webhookAuth": "Bearer t0k3n",
    "executeAt": "2099-01-01T00:00:00Z",
    "payload": {"n": 1},
    "idempotencyKey": "key-1",
    "maxRetries": 3,
    "queue": "default",
}
FIELD_VALUES: dict[str, Any] = {
    "webhookUrl": st.one_of(urls, scalars),
    "webhookAuth": st.one_of(texts, scalars),
    "executeAt": st.one_of(times, scalars),
    "payload": payloads,
    "idempotencyKey": st.one_of(texts, scalars),
    "maxRetries": st.one_of(st.sampled_from([-1, 0, 1000, 1001]), st.integers(), scalars),
    "queue": st.one_of(st.sampled_from(["default", "Default", "other", ""]), scalars),
    "unknown": scalars,
}


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    """A valid task with a few fields dropped and one or two replaced by anything: one
    odd value at a time is what finds a check the fast path forgot."""
    item = {k: v for k, v in VALID.items() if k == "webhookUrl" or draw(st.booleans())}
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=2)):
        item[name] = draw(FIELD_VALUES[name])
    return item


def schema_read(item: Any) -> NewTask | None:
    try:
        return _new_task(SCHEMA.load(item))
    except ValidationError:
        return None


@settings(max_examples=1500, deadline=None)
@given(item=st.one_of(items(), scalars))
def test_read_task_accepts_only_what_the_schema_accepts_and_reads_it_alike(item: Any) -> None:
    fast = read_task(item, SCHEMES)
    if fast is not None:
        assert schema_read(item) == fast


EDGE_VALUES: dict[str, list[Any]] = {
    "webhookUrl": ["http://example.com/\x00", "http://exa mple.com/", "ftp://x/", "http://"],
    "webhookAuth": ["", " lead", "nul\x00", "\u0100", "x" * 8192, "x" * 8193, 5, True],
    "executeAt": ["2099-01-01T00:00:00", "1969-12-31T23:59:59Z", "9000-01-01T00:00:01Z", 0],
    "payload": [None, 0, "", [], {"a": [1, {"b": None}]}],
    "idempotencyKey": ["", "x" * 255, "x" * 256, "nul\x00", 7, False],
    "maxRetries": [-1, 0, 1000, 1001, True, 2.0, "3"],
    "queue": ["default", None, "other", "", "default ", 0, False],
}


@pytest.mark.parametrize(
    "name,value", [(n, v) for n, values in EDGE_VALUES.items() for v in values]
)
def test_each_limit_is_where_the_schema_puts_it(name: str, value: Any) -> None:
    item = {**VALID, name: value}
    fast = read_task(item, SCHEMES)
    assert fast == schema_read(item) or (fast is None and schema_read(item) is not None)


def test_plainly_valid_tasks_take_the_fast_path() -> None:
    item = {
        "webhookUrl": "https://example.com/hook",
        "webhookAuth": "Bearer t0k3n",
        "executeAt": "2099-01-01T00:00:00Z",
        "payload": {"order": 7, "tags": ["a"]},
        "idempotencyKey": "order-7",
        "maxRetries": 3,
        "queue": "default",
        # null rules (the defaults) stay on the fast path; a rule given goes to the schema
        "notAfter": None,
        "successCodes": None,
        "staleCodes": None,
    }
    assert set(item) == INPUT_FIELDS
    fast = read_task(item, SCHEMES)
    assert fast is not None and fast == schema_read(item)
    assert read_task({"webhookUrl": "http://127.0.0.1:9/x"}, SCHEMES) == schema_read(
        {"webhookUrl": "http://127.0.0.1:9/x"}
    )


def test_one_unusual_item_sends_the_whole_array_to_the_schema() -> None:
    good = {"webhookUrl": "http://127.0.0.1:9/x"}
    assert read_tasks([good, good], SCHEMES) is not None
    assert (
        read_tasks([good, {"webhookUrl": "http://127.0.0.1:9/x", "maxRetries": True}], SCHEMES)
        is None
    )


moments = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(8999, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))]),
)


@settings(max_examples=300, deadline=None)
@given(
    execute_at=moments,
    resolved_at=st.one_of(st.none(), moments),
    status=st.sampled_from(list(TaskStatus)),
    payload=payloads,
    max_retries=st.one_of(st.none(), st.integers(0, 1000)),
    key=st.one_of(st.none(), texts),
    error=st.one_of(st.none(), texts),
    code=st.one_of(st.none(), st.integers(100, 599)),
)
def test_task_json_is_the_output_schema(
    execute_at: datetime,
    resolved_at: datetime | None,
    status: TaskStatus,
    payload: Any,
    max_retries: int | None,
    key: str | None,
    error: str | None,
    code: int | None,
) -> None:
    task = Task(
        id=str(uuid.uuid4()),
        webhook_url="https://example.com/hook",
        execute_at=execute_at,
        status=status,
        attempts=2,
        max_retries=max_retries,
        next_attempt_at=execute_at + timedelta(seconds=1),
        payload=payload,
        idempotency_key=key,
        last_error=error,
        last_status_code=code,
        created_at=execute_at - timedelta(days=1),
        updated_at=execute_at,
        resolved_at=resolved_at,
    )
    expected = TaskOutputSchema().dump(task)
    written = task_json(task)
    assert written == expected
    assert list(written) == list(expected)  # same key order as the schema's


def test_new_task_ids_are_distinct_version_4_uuids() -> None:
    ids = new_task_ids(5000)
    assert len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122

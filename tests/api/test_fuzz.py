"""Random JSON bodies never make POST /api/v1/tasks answer 500, and a 400 stores nothing."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scheduler_core.redaction import masked_url
from tests.api.helpers import assert_error, task_ids

pytestmark = pytest.mark.slow  # thousands of generated bodies

FIELDS = ("webhookUrl", "webhookAuth", "executeAt", "payload", "idempotencyKey", "maxRetries")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

urls = st.one_of(
    st.sampled_from(
        [
            "http://127.0.0.1:9/hook",
            "https://example.com/a?b=c",
            "ftp://example.com/",
            "http://",
            "example.com",
            "http://[::1",
            "http://exa mple.com/",
            "HTTP://X/",
        ]
    ),
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https", "gopher", ""]),
        st.text(max_size=12),
        st.text(max_size=12),
    ),
    st.text(max_size=30),
    json_values,
)
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # naive
    st.sampled_from(["2030-01-01T00:00:00Z", "2030-01-01", "now", "", "2030-02-30T00:00:00Z"]),
    json_values,
)
field_values = {
    "webhookUrl": urls,
    "webhookAuth": st.one_of(st.text(max_size=20), json_values),
    "executeAt": times,
    "payload": json_values,
    "idempotencyKey": st.one_of(
        st.sampled_from(["k1", "k2", "k3"]), st.text(max_size=10), json_values
    ),
    "maxRetries": st.one_of(st.integers(min_value=-5, max_value=1005), json_values),
}
task_bodies = st.fixed_dictionaries(
    {}, optional={**field_values, "webhookURL": json_values, "extra": json_values}
)
valid_tasks = st.fixed_dictionaries(
    {"webhookUrl": st.sampled_from(["http://127.0.0.1:9/a", "https://example.com/b?c=d"])},
    optional={
        "webhookAuth": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
        "executeAt": st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(8999, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.isoformat()),
        "payload": json_values,
        "idempotencyKey": st.sampled_from(["k1", "k2", "k3"]),
        "maxRetries": st.integers(min_value=0, max_value=1000) | st.none(),
    },
)
bodies = st.one_of(
    json_values,
    task_bodies,
    st.lists(task_bodies, min_size=0, max_size=4),
    valid_tasks,
    st.lists(valid_tasks, min_size=1, max_size=4),
    st.fixed_dictionaries(
        {"webhookUrl": st.sampled_from(["http://127.0.0.1:9/a", "https://example.com/b"])},
        optional={k: v for k, v in field_values.items() if k != "webhookUrl"},
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_random_bodies_never_crash_and_refusals_store_nothing(client, store, body):
    before = task_ids(store)
    response = client.post("/api/v1/tasks", data=json.dumps(body), content_type="text/plain")
    after = task_ids(store)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 201, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert_error(response, 400, "validation_error")
        assert after == before
        return
    text = response.get_data(as_text=True)
    assert "webhookAuth" not in text
    returned = response.get_json()
    tasks = returned["tasks"] if isinstance(body, list) else [returned]
    assert isinstance(body, list) or set(returned) != {"tasks"}
    ids = {task["id"] for task in tasks}
    assert after - before == ids - before  # exactly the new tasks were stored
    if response.status_code == 200:
        assert not isinstance(body, list)
        assert ids <= before  # an idempotent repeat creates nothing
    elif not isinstance(body, list):
        assert ids.isdisjoint(before)
    seen = set(before)
    for item, task in zip(body if isinstance(body, list) else [body], tasks, strict=True):
        if task["id"] not in seen:  # created by this item: it shows what the item said
            assert task["payload"] == item.get("payload")
            # shown with its userinfo and query values masked (SPEC, "Security")
            assert task["webhookUrl"] == masked_url(item["webhookUrl"])
            seen.add(task["id"])

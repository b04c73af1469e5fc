"""GET and PATCH /api/v1/config: the runtime configuration, camelCase."""

import json

import pytest

from scheduler_core.runtime_config import BOUNDS as COLUMN_BOUNDS
from scheduler_core.runtime_config import ConfigError, RuntimeConfig, to_camel, validate_changes
from tests.api.helpers import assert_error, enqueue, get_task

DEFAULTS = {
    "baseIntervalMs": 1000,
    "httpCallbackTimeoutMs": 5000,
    "selectSize": 100,
    "maxRetries": 5,
    "retryBackoffMs": 1000,
    "retryBackoffMaxMs": 3_600_000,
    "retentionHours": 168,
    "maxDispatchesPerSecond": 0,
    "maxConcurrentDispatches": 0,
}
BOUNDS = {
    "baseIntervalMs": (10, 3_600_000),
    "httpCallbackTimeoutMs": (100, 1_800_000),
    "selectSize": (1, 10_000),
    "maxRetries": (0, 1000),
    "retryBackoffMs": (0, 86_400_000),
    "retryBackoffMaxMs": (0, 604_800_000),
    "retentionHours": (1, 87_600),
    "maxDispatchesPerSecond": (0, 100_000),
    "maxConcurrentDispatches": (0, 100_000),
}
# Keys a bound value needs alongside it to keep retryBackoffMaxMs >= retryBackoffMs.
COMPANIONS = {
    ("retryBackoffMs", 86_400_000): {"retryBackoffMaxMs": 604_800_000},
    ("retryBackoffMaxMs", 0): {"retryBackoffMs": 0},
}


def get_config(client):
    response = client.get("/api/v1/config")
    assert response.status_code == 200
    return response.get_json()


def patch(client, body):
    return client.patch("/api/v1/config", json=body)


def assert_refused(client, response, *keys):
    before = DEFAULTS
    error = assert_error(response, 400, "validation_error")
    for key in keys:
        assert key in error["details"], error
    assert get_config(client) == before


def test_defaults(client):
    assert get_config(client) == DEFAULTS
    assert list(get_config(client)) == list(DEFAULTS)


def test_patch_one_key(client):
    response = patch(client, {"baseIntervalMs": 250})
    assert response.status_code == 200
    assert response.get_json() == {**DEFAULTS, "baseIntervalMs": 250}
    assert get_config(client) == {**DEFAULTS, "baseIntervalMs": 250}


def test_patch_every_key(client):
    changed = {
        "baseIntervalMs": 20,
        "httpCallbackTimeoutMs": 2000,
        "selectSize": 7,
        "maxRetries": 0,
        "retryBackoffMs": 10,
        "retryBackoffMaxMs": 20,
        "retentionHours": 1,
        "maxDispatchesPerSecond": 50,
        "maxConcurrentDispatches": 3,
    }
    response = patch(client, changed)
    assert response.status_code == 200
    assert response.get_json() == changed
    assert get_config(client) == changed


def test_patch_is_partial_and_keeps_other_keys(client):
    patch(client, {"selectSize": 3})
    patch(client, {"maxRetries": 9})
    assert get_config(client) == {**DEFAULTS, "selectSize": 3, "maxRetries": 9}


def test_empty_patch_changes_nothing(client):
    response = patch(client, {})
    assert response.status_code == 200
    assert response.get_json() == DEFAULTS


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_patch_body_is_json_whatever_the_content_type(client, content_type):
    response = client.patch(
        "/api/v1/config", data=json.dumps({"selectSize": 5}), content_type=content_type
    )
    assert response.status_code == 200
    assert get_config(client)["selectSize"] == 5


@pytest.mark.parametrize("key", list(BOUNDS))
def test_bounds_are_accepted(client, key):
    for value in BOUNDS[key]:
        body = {key: value, **COMPANIONS.get((key, value), {})}
        response = patch(client, body)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()[key] == value
        assert get_config(client)[key] == value


@pytest.mark.parametrize("key", list(BOUNDS))
def test_out_of_bounds_is_refused(client, key):
    low, high = BOUNDS[key]
    for value in (low - 1, high + 1, -(2**63)):
        assert_refused(client, patch(client, {key: value}), key)


@pytest.mark.parametrize(
    "value", [None, "500", 500.5, 500.0, True, False, [500], {"v": 500}, 10**30]
)
def test_non_integers_are_refused(client, value):
    for key in BOUNDS:
        assert_refused(client, patch(client, {key: value}), key)


@pytest.mark.parametrize(
    "key",
    ["base_interval_ms", "BaseIntervalMs", "baseintervalms", "pollInterval", "", "maxRetries "],
)
def test_unknown_keys_are_refused(client, key):
    assert_refused(client, patch(client, {key: 500}), key)


def test_backoff_max_below_backoff_is_refused(client):
    assert_refused(
        client,
        patch(client, {"retryBackoffMs": 5000, "retryBackoffMaxMs": 4000}),
        "retryBackoffMaxMs",
    )
    # Against the stored value too: the default max is 3,600,000.
    assert_refused(client, patch(client, {"retryBackoffMs": 3_600_001}), "retryBackoffMaxMs")
    assert_refused(client, patch(client, {"retryBackoffMaxMs": 999}), "retryBackoffMaxMs")


def test_backoff_max_equal_to_backoff_is_accepted(client):
    response = patch(client, {"retryBackoffMs": 7000, "retryBackoffMaxMs": 7000})
    assert response.status_code == 200
    assert get_config(client)["retryBackoffMaxMs"] == 7000


def test_one_bad_key_refuses_the_whole_patch(client):
    response = patch(client, {"baseIntervalMs": 500, "selectSize": 0, "maxRetries": 2})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"selectSize"}
    assert get_config(client) == DEFAULTS


def test_every_bad_key_is_named(client):
    response = patch(client, {"selectSize": 0, "maxRetries": "x", "nope": 1, "retentionHours": 2})
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"selectSize", "maxRetries", "nope"}
    assert get_config(client) == DEFAULTS


@pytest.mark.parametrize("body", ["[]", '[{"selectSize": 5}]', '"selectSize"', "5", "null", "true"])
def test_a_body_that_is_not_an_object_is_refused(client, body):
    response = client.patch("/api/v1/config", data=body, content_type="application/json")
    assert_error(response, 400, "validation_error")
    assert get_config(client) == DEFAULTS


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"{", b"{selectSize: 5}", b'{"selectSize": NaN}', b"\xff\xfe{}"]
)
def test_a_body_that_is_not_json_is_refused(client, body):
    response = client.patch("/api/v1/config", data=body, content_type="application/json")
    assert_error(response, 400, "invalid_json")
    assert get_config(client) == DEFAULTS


def test_a_change_takes_effect_on_the_next_tick(client, dispatcher, receiver):
    assert patch(client, {"maxRetries": 0, "retryBackoffMs": 0}).status_code == 200
    receiver.behave("/down", statuses=[500])
    task = enqueue(client, receiver.url("/down"))
    dispatcher.tick()
    assert get_task(client, task["id"])["status"] == "stale"  # no retries left
    assert patch(client, {"maxRetries": 2}).status_code == 200
    assert client.post(f"/api/v1/tasks/{task['id']}/retry").status_code == 200
    dispatcher.tick()
    assert get_task(client, task["id"])["status"] == "pending"  # now it has retries left


def test_select_size_limits_one_tick(client, dispatcher, receiver):
    assert patch(client, {"selectSize": 2}).status_code == 200
    body = [{"webhookUrl": receiver.url(f"/s{i}")} for i in range(5)]
    assert client.post("/api/v1/tasks", json=body).status_code == 201
    dispatcher.tick()
    assert len(receiver.calls()) == 2
    dispatcher.tick()
    assert len(receiver.calls()) == 4


# -- one rule set: the API's ConfigPatchSchema and `scheduler config set` -----------------

SAMPLES = [0, 1, 9, 10, 99, 100, 1000, 1001, 3_600_000, 3_600_001, 86_400_001, 604_800_001]
SAMPLES += [-1, None, True, "5", 5.0, 5.5, [5], 10**30]


def _outcome(key, value, camel):
    """What validate_changes makes of one key: the columns it accepts, or the keys it
    names with their reasons (in column spelling, so both spellings compare)."""
    try:
        return validate_changes(RuntimeConfig(), {key: value}, camel=camel)
    except ConfigError as exc:
        text = repr(exc.details)
        for column in COLUMN_BOUNDS:
            text = text.replace(to_camel(column), column)
        return text


@pytest.mark.parametrize("column", list(COLUMN_BOUNDS))
def test_the_api_and_the_cli_accept_and_refuse_the_same_values(column):
    for value in SAMPLES:
        assert _outcome(to_camel(column), value, camel=True) == _outcome(
            column, value, camel=False
        ), (column, value)


def test_each_spelling_refuses_the_other():
    with pytest.raises(ConfigError) as camel_in_cli:
        validate_changes(RuntimeConfig(), {"selectSize": 5}, camel=False)
    with pytest.raises(ConfigError) as column_in_api:
        validate_changes(RuntimeConfig(), {"select_size": 5}, camel=True)

    assert "Unknown key" in camel_in_cli.value.details["selectSize"][0]
    assert "select_size" in camel_in_cli.value.details["selectSize"][0]  # the known keys
    assert "selectSize" in column_in_api.value.details["select_size"][0]

"""The delivery rules and the traceparent from the Python client and `scheduler enqueue`,
against the real API served by waitress. Both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from scheduler_core.client import Client, NewTask
from scheduler_core.client.errors import ValidationError
from tests.client.test_cli_remote import scheduler

NOWHERE = "http://127.0.0.1:9/hook"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
DEADLINE = datetime(2099, 1, 2, tzinfo=UTC)


def test_enqueue_sends_the_rules_and_the_traceparent(api: Client, store) -> None:
    task = api.enqueue(
        NOWHERE,
        execute_at="2099-01-01T00:00:00Z",
        not_after=DEADLINE,
        success_codes=[200, "2xx"],
        stale_codes=[404, 410],
        traceparent=TRACEPARENT,
    )
    assert task.not_after == DEADLINE
    assert task.success_codes == (200, "2xx")
    assert task.stale_codes == (404, 410)
    stored = store.get(task.id)
    assert stored.traceparent == TRACEPARENT  # kept, never shown by the API


def test_a_refused_rule_is_a_validation_error_naming_it(api: Client) -> None:
    with pytest.raises(ValidationError) as refused:
        api.enqueue(NOWHERE, stale_codes=[700])
    assert "staleCodes" in refused.value.details


def test_enqueue_many_and_reschedule_carry_rules(api: Client) -> None:
    [first, second] = api.enqueue_many(
        [
            NewTask(NOWHERE, execute_at="2099-01-01T00:00:00Z", stale_codes=[410]),
            {"webhook_url": NOWHERE, "success_codes": ["2xx", 409]},
        ]
    )
    assert (first.stale_codes, second.success_codes) == ((410,), ("2xx", 409))
    changed = api.reschedule(first.id, not_after=DEADLINE, stale_codes=None)
    assert (changed.not_after, changed.stale_codes) == (DEADLINE, None)
    assert changed.execute_at == first.execute_at


def test_cli_enqueue_takes_the_rules(base_url: str, api: Client) -> None:
    result = scheduler(
        base_url,
        "enqueue",
        NOWHERE,
        "--at",
        "2099-01-01T00:00:00Z",
        "--not-after",
        "2099-01-02T00:00:00Z",
        "--success-codes",
        "200,2XX",
        "--stale-codes",
        "404, 410",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["notAfter"] == "2099-01-02T00:00:00Z"
    assert body["successCodes"] == [200, "2xx"]
    assert body["staleCodes"] == [404, 410]
    shown = scheduler(base_url, "tasks", "show", body["id"])
    assert "not after" in shown.stdout


def test_cli_refuses_a_rule_that_is_no_code(base_url: str) -> None:
    result = scheduler(base_url, "enqueue", NOWHERE, "--stale-codes", "gone")
    assert result.returncode != 0
    assert "--stale-codes" in result.stderr and "'gone'" in result.stderr

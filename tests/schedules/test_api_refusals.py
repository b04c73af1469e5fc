"""What a schedule's body refuses besides cron syntax: a zone name that is no IANA zone,
a loose boolean, a read-only field in PATCH, each named with why."""

from __future__ import annotations

import pytest

from tests.api.helpers import NOWHERE, assert_error


def _create(client, **fields):
    return client.post(
        "/api/v1/schedules",
        json={"name": "job", "cron": "* * * * *", "webhookUrl": NOWHERE, **fields},
    )


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory"])
def test_a_zone_file_that_is_no_iana_zone_is_refused(client, zone) -> None:
    error = assert_error(_create(client, timezone=zone), 400, "validation_error")
    assert list(error["details"]) == ["timezone"]
    assert "IANA" in error["details"]["timezone"][0]


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "false", None])
def test_paused_takes_json_booleans_only(client, value) -> None:
    error = assert_error(_create(client, paused=value), 400, "validation_error")
    assert list(error["details"]) == ["paused"]
    assert client.get("/api/v1/schedules").get_json() == {"schedules": []}


@pytest.mark.parametrize("field", ["lastFireAt", "nextFireAt", "createdAt", "updatedAt"])
def test_patch_names_a_read_only_field(client, field) -> None:
    assert _create(client).status_code == 201
    response = client.patch("/api/v1/schedules/job", json={field: "2030-01-01T00:00:00Z"})
    error = assert_error(response, 400, "validation_error")
    assert error["details"] == {field: ["Read-only: the scheduler sets it."]}

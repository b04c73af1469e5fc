"""Queue and schedule names everywhere they are read: the API, the command line and the
database refuse what the rule refuses, `.` and `..` included (a URL path would normalise
them away: such a queue could be made and never be managed again)."""

from __future__ import annotations

import pytest

from scheduler_core.names import name_problem
from tests.api.helpers import NOWHERE, assert_error
from tests.support.processes import run_cli

BAD = ["", ".", "..", "a b", "a/b", "é", "q" * 65]
GOOD = ["...", ".a", "a.", "mail-1.x_Y", "q" * 64]


@pytest.mark.parametrize("name", BAD)
def test_the_rule_refuses(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", GOOD)
def test_the_rule_takes(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused_for_tasks_schedules_and_the_database(client, db, name) -> None:
    error = assert_error(
        client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "queue": name}),
        400,
        "validation_error",
    )
    assert "not '.' or '..'" in error["details"]["queue"][0]
    body = {"name": name, "cron": "* * * * *", "webhookUrl": NOWHERE}
    error = assert_error(client.post("/api/v1/schedules", json=body), 400, "validation_error")
    assert list(error["details"]) == ["name"]
    with pytest.raises(Exception, match="(?i)check"):
        db.execute(f"INSERT INTO scheduler_config (queue) VALUES ('{name}')")
    assert client.get("/api/v1/schedules").get_json() == {"schedules": []}


@pytest.mark.parametrize(
    ("args"),
    [
        ["queues", "show", ""],
        ["queues", "create", ".."],
        ["queues", "set", "", "max_retries=1"],
        ["queues", "pause", "a/b"],
        ["schedules", "show", ""],
        ["schedules", "trigger", "."],
    ],
    ids=["show-empty", "create-dots", "set-empty", "pause-slash", "schedule-empty", "trigger-dot"],
)
def test_the_cli_refuses_a_bad_name_as_a_usage_error(args: list[str]) -> None:
    # Nothing listens at the URL: the name is refused before anything is sent.
    result = run_cli(None, *args, env={"SCHEDULER_URL": "http://127.0.0.1:9"})
    assert result.returncode == 2, result.stderr
    assert "Usage:" in result.stderr
    assert "1..64 characters" in result.stderr
    assert "Traceback" not in result.stderr

"""The Python client's schedule methods and `scheduler schedules ...`, against the real
API served by waitress on loopback (each backend)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scheduler_core.client import Client, Conflict, NotFound, ValidationError
from scheduler_core.client.schedules import Schedule
from tests.support.database import TestDatabase
from tests.support.processes import run_cli

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def api(base_url: str) -> Iterator[Client]:
    with Client(base_url, retries=0) as client:
        yield client


class Result:
    """`scheduler schedules <args>` run as a real command (a subprocess: the CLI sets up
    logging for its process), talking to `base_url`."""

    def __init__(self, base_url: str, args: tuple[str, ...]):
        env = {"SCHEDULER_URL": base_url, "SCHEDULER_API_KEY": ""}
        done = run_cli(None, "schedules", *args, env=env)
        self.exit_code = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr
        self.output = done.stdout + done.stderr


def run(base_url: str, *args: str) -> Result:
    return Result(base_url, args)


def test_the_client_covers_every_schedule_endpoint(api: Client, db: TestDatabase) -> None:
    created = api.create_schedule(
        "nightly",
        "30 2 * * *",
        HOOK,
        timezone="Europe/Berlin",
        auth="Bearer s",
        payload={"n": 1},
        max_retries=3,
    )
    assert isinstance(created, Schedule)
    assert (created.name, created.timezone, created.catch_up, created.paused) == (
        "nightly",
        "Europe/Berlin",
        "latest",
        False,
    )
    assert created.next_fire_at is not None and created.last_fire_at is None
    assert "Bearer s" not in repr(created)
    assert [s.name for s in api.list_schedules()] == ["nightly"]
    assert api.get_schedule("nightly") == created
    changed = api.update_schedule("nightly", catch_up="none", auth=None, max_retries=None)
    assert (changed.catch_up, changed.max_retries) == ("none", None)
    assert db.execute("SELECT webhook_auth FROM scheduler_schedules") == [(None,)]
    assert api.pause_schedule("nightly").paused is True
    assert api.resume_schedule("nightly").paused is False
    task = api.trigger_schedule("nightly")
    assert (task.schedule, task.payload) == ("nightly", {"n": 1})
    with pytest.raises(Conflict):
        api.create_schedule("nightly", "0 * * * *", HOOK)
    with pytest.raises(ValidationError) as refused:
        api.create_schedule("other", "0 * * *", HOOK, timezone="Nowhere")
    assert set(refused.value.details) == {"cron", "timezone"}
    with pytest.raises(ValueError):
        api.update_schedule("nightly")
    assert api.delete_schedule("nightly").name == "nightly"
    with pytest.raises(NotFound):
        api.get_schedule("nightly")


def test_the_cli_creates_lists_changes_and_triggers(base_url: str) -> None:
    made = run(
        base_url,
        "create",
        "nightly",
        "0 3 * * *",
        HOOK,
        "--timezone",
        "Europe/Berlin",
        "--payload",
        '{"report": 7}',
        "--catch-up",
        "none",
    )
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith("nightly  created, next fire ")
    listed = run(base_url, "list")
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "CRON", "TIME", "ZONE"]
    assert "0 3 * * *" in row and "Europe/Berlin" in row and "active" in row
    shown = run(base_url, "show", "nightly")
    assert "catch up     none" in shown.stdout and '{"report": 7}' in shown.stdout
    as_json = json.loads(run(base_url, "show", "nightly", "--json").stdout)
    assert as_json["cron"] == "0 3 * * *"
    changed = run(base_url, "set", "nightly", "--cron", "*/10 * * * *", "--webhook-url", HOOK + "2")
    assert changed.exit_code == 0 and "changed, next fire" in changed.stdout
    assert "paused" in run(base_url, "pause", "nightly").stdout
    assert "paused" in run(base_url, "list").stdout
    assert "resumed" in run(base_url, "resume", "nightly").stdout
    triggered = run(base_url, "trigger", "nightly")
    assert triggered.exit_code == 0 and "schedule         nightly" in triggered.stdout
    assert "deleted" in run(base_url, "delete", "nightly").stdout
    empty = run(base_url, "list")
    assert empty.stdout == "" and "no schedules" in empty.stderr


def test_the_cli_reports_refusals_field_by_field(base_url: str) -> None:
    refused = run(base_url, "create", "bad", "0 25 * * *", HOOK)
    assert refused.exit_code == 1
    assert "cron: The hour field (field 2 of 5) '25' is not valid" in refused.output
    missing = run(base_url, "show", "nope")
    assert missing.exit_code == 1 and "No schedule named 'nope'" in missing.output
    nothing = run(base_url, "set", "nope")
    assert nothing.exit_code == 2 and "name something to change" in nothing.output

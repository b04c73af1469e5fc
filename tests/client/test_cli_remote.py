"""`scheduler enqueue`, `scheduler tasks ...`, `scheduler stats`: the real command in a
subprocess, talking to the real API served on loopback (each backend)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler_core.client import Client
from scheduler_core.settings import Settings
from tests.cli.test_migrate_and_config import table_rows
from tests.client.conftest import API_KEY, waitress_thread
from tests.client.servers import FakeApi, Route, json_answer
from tests.client.test_new_endpoints import STATS, task_json
from tests.support.processes import run_cli

NOWHERE = "http://127.0.0.1:9/hook"
LATER = "2099-01-01T00:00:00Z"
# A value that would recolour a terminal, forge a line, reverse the text after it (RLO,
# an isolate), and hold DEL and a C1 CSI (an escape sequence on its own in some terminals).
HOSTILE = "\u001b[31mevil\u001b[0m\r\nFAKE LINE\u202e\u2066gnp.exe\u2069\x7f\x9b[2J"
HOSTILE_SHOWN = r"\x1b[31mevil\x1b[0m\r\nFAKE LINE\u202e\u2066gnp.exe\u2069\x7f\x9b[2J"
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def raw_controls(text: str) -> list[str]:
    """The control, format and separator characters in `text`, but its line breaks."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in UNSAFE]


def scheduler(url: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    """`scheduler <args>` with SCHEDULER_URL set to `url` (no API key unless given)."""
    full_env = {"SCHEDULER_URL": url, "SCHEDULER_API_KEY": "", **(env or {})}
    if stdin is None:
        return run_cli(None, *args, env=full_env)
    return subprocess.run(
        [sys.executable, "-m", "scheduler_core.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **full_env},
        timeout=60,
    )


def test_enqueue_then_show_and_list(base_url: str, api: Client) -> None:
    result = scheduler(
        base_url,
        "enqueue",
        NOWHERE,
        "--at",
        LATER,
        "--auth",
        "Bearer receiver-secret-1",
        "--payload",
        '{"report": "payload-secret-2"}',
        "--idempotency-key",
        "report-7",
        "--max-retries",
        "2",
    )
    assert result.returncode == 0, result.stderr
    task_id, rest = result.stdout.split(maxsplit=1)
    assert rest.strip() == "pending, due 2099-01-01 00:00:00Z"
    for secret in ("receiver-secret-1", "payload-secret-2"):
        assert secret not in result.stdout + result.stderr
    stored = api.get_task(task_id)
    assert (stored.payload, stored.max_retries, stored.idempotency_key) == (
        {"report": "payload-secret-2"},
        2,
        "report-7",
    )

    shown = scheduler(base_url, "tasks", "show", task_id)
    assert shown.returncode == 0, shown.stderr
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in shown.stdout.splitlines())
    assert (fields["id"], fields["status"], fields["queue"]) == (task_id, "pending", "default")
    assert fields["execute at"] == fields["next attempt"] == "2099-01-01 00:00:00Z"
    assert fields["attempts"] == "0 (max retries: 2)"
    assert fields["payload"] == '{"report": "payload-secret-2"}'  # asked for: shown
    assert "receiver-secret-1" not in shown.stdout

    as_json = scheduler(base_url, "tasks", "show", task_id, "--json")
    assert json.loads(as_json.stdout) == dict(stored.raw)

    listed = scheduler(base_url, "tasks", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = table_rows(listed.stdout)
    assert (row["ID"], row["STATUS"], row["QUEUE"], row["DUE"], row["ATTEMPTS"]) == (
        task_id,
        "pending",
        "default",
        "2099-01-01 00:00:00Z",
        "0",
    )


def test_payload_from_stdin_or_a_file_and_bad_json_is_not_quoted(
    base_url: str, api: Client, tmp_path: Path
) -> None:
    from_stdin = scheduler(base_url, "enqueue", NOWHERE, "--payload", "-", stdin='{"a": 1}')
    assert from_stdin.returncode == 0, from_stdin.stderr
    path = tmp_path / "payload.json"
    path.write_text("[1, 2, 3]")
    from_file = scheduler(base_url, "enqueue", NOWHERE, "--payload", f"@{path}", "--json")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["payload"] == [1, 2, 3]
    assert sorted(str(t.payload) for t in api.iter_tasks()) == ["[1, 2, 3]", "{'a': 1}"]

    bad = scheduler(base_url, "enqueue", NOWHERE, "--payload", '{"secret-token-3": ')
    assert bad.returncode == 2
    assert "--payload" in bad.stderr and "not valid JSON" in bad.stderr
    assert "secret-token-3" not in bad.stderr


def test_list_pages_and_filters(base_url: str, api: Client) -> None:
    created = [api.enqueue(NOWHERE, execute_at=LATER) for _ in range(3)]
    api.cancel(created[0].id)

    first = scheduler(base_url, "tasks", "list", "--limit", "2")
    rows = table_rows(first.stdout)
    assert [r["ID"] for r in rows] == [created[2].id, created[1].id]
    [more] = [line for line in first.stderr.splitlines() if line.startswith("more:")]
    cursor = more.split("--cursor ")[1]
    second = scheduler(base_url, "tasks", "list", "--limit", "2", "--cursor", cursor)
    assert [r["ID"] for r in table_rows(second.stdout)] == [created[0].id]
    assert "more:" not in second.stderr

    cancelled = scheduler(base_url, "tasks", "list", "--status", "cancelled", "--json")
    assert [t["id"] for t in json.loads(cancelled.stdout)["tasks"]] == [created[0].id]

    bad = scheduler(base_url, "tasks", "list", "--status", "pending,sleeping")
    assert bad.returncode == 2 and "sleeping" in bad.stderr


def test_attempts_retry_cancel(base_url: str, api: Client, dispatcher, receiver) -> None:
    receiver.behave("/fail", statuses=[500])
    task = api.enqueue(receiver.url("/fail"), max_retries=0)
    dispatcher.tick()

    attempts = scheduler(base_url, "tasks", "attempts", task.id)
    assert attempts.returncode == 0, attempts.stderr
    [row] = table_rows(attempts.stdout)
    assert (row["#"], row["STATUS"], row["OUTCOME"]) == ("1", "500", "failed")

    retried = scheduler(base_url, "tasks", "retry", task.id)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"{task.id}  now pending"

    again = scheduler(base_url, "tasks", "retry", task.id)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Error: Only stale or cancelled tasks can be retried; this one is pending. (conflict)"
    )

    cancelled = scheduler(base_url, "tasks", "cancel", task.id, "--json")
    assert json.loads(cancelled.stdout)["status"] == "cancelled"


def test_errors_are_one_clear_line_and_exit_1(base_url: str) -> None:
    missing = scheduler(base_url, "tasks", "show", "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: No task with id 'nope'. (not_found)"

    invalid = scheduler(base_url, "enqueue", "not-a-url", "--max-retries", "3")
    assert invalid.returncode == 1
    first, *details = invalid.stderr.strip().splitlines()
    assert first.startswith("Error: ") and first.endswith("(validation_error)")
    assert any(line.startswith("  webhookUrl: ") for line in details)
    assert "Traceback" not in invalid.stderr


def test_bad_input_is_a_usage_error_naming_the_option_and_value(fake: FakeApi) -> None:
    """As README says: caught before anything is sent, click's usage hint, exit status 2."""
    cases = {
        ("enqueue", NOWHERE, "--at", "yesterday"): (
            "Error: Invalid value for '--at': 'yesterday' is not a time: use "
            "2026-12-01T10:00:00Z, +30s, +5m, +2h, +1d or now"
        ),
        ("tasks", "list", "--status", "pending,bogus"): (
            "Error: Invalid value for '--status': unknown status bogus: use one or more of "
            "pending, running, resolved, stale, cancelled, comma-separated"
        ),
        ("tasks", "list", "--limit", "0"): (
            "Error: Invalid value for '--limit': 0 is not in the range 1<=x<=1000."
        ),
        ("tasks", "retry-all"): (
            "Error: name the tasks to retry: --status, --queue, --created-before or "
            "--created-after (--status stale,cancelled, say)"
        ),
        ("tasks", "show"): "Error: Missing argument 'TASK_ID'.",
    }
    for args, message in cases.items():
        result = scheduler(fake.url, *args)
        assert result.returncode == 2, args
        usage, hint, blank, error = result.stderr.splitlines()
        assert usage.startswith(
            f"Usage: scheduler {' '.join(args[: 2 if args[0] == 'tasks' else 1])} "
        )
        assert hint.startswith("Try 'scheduler ") and blank == ""
        assert error == message, args
        assert result.stdout == ""
    assert fake.seen == []  # nothing was sent


def test_an_unreachable_server_is_named_with_exit_1() -> None:
    result = scheduler("http://127.0.0.1:9", "tasks", "list")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot reach the scheduler at http://127.0.0.1:9/api/v1/tasks")
    assert "connection refused" in line and "SCHEDULER_URL" in line

    bad_url = run_cli(None, "stats", "--url", "localhost:8080")
    assert bad_url.returncode == 2 and "--url" in bad_url.stderr


@pytest.fixture
def keyed_url(clean_database: str, store) -> Iterator[str]:
    from scheduler_core.api import create_app
    from scheduler_core.plugin_manager import PluginManager

    settings = Settings(database_url=clean_database, load_entry_points=False, api_keys=(API_KEY,))
    app = create_app(settings, store=store, plugins=PluginManager(settings))
    with waitress_thread(app, settings) as url:
        yield url


def test_the_api_key_comes_from_the_environment_or_a_file(keyed_url: str, tmp_path: Path) -> None:
    refused = scheduler(keyed_url, "tasks", "list")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "Error: Missing or invalid API key. (unauthorized)"

    from_env = scheduler(keyed_url, "enqueue", NOWHERE, env={"SCHEDULER_API_KEY": API_KEY})
    assert from_env.returncode == 0, from_env.stderr

    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    from_file = scheduler(keyed_url, "tasks", "list", "--api-key-file", str(key_file))
    assert from_file.returncode == 0, from_file.stderr
    assert len(table_rows(from_file.stdout)) == 1
    for result in (refused, from_env, from_file):
        assert API_KEY not in result.stdout + result.stderr


# -- against a fake API: routes built on other branches (see test_new_endpoints.py) ----------


@pytest.fixture
def fake() -> Iterator[FakeApi]:
    server = FakeApi(
        {
            ("PATCH", "/api/v1/tasks/t1"): lambda seen: json_answer(
                200, task_json(nextAttemptAt=seen.json()["executeAt"])
            ),
            ("POST", "/api/v1/tasks:retry"): lambda _: json_answer(200, {"count": 3}),
            ("POST", "/api/v1/tasks:cancel"): lambda _: json_answer(200, {"count": 1}),
            ("GET", "/api/v1/stats"): lambda _: json_answer(200, STATS),
        }
    )
    yield server
    server.close()


def test_reschedule_and_bulk_verbs_on_a_fake_api(fake: FakeApi) -> None:
    moved = scheduler(fake.url, "tasks", "reschedule", "t1", "--at", "2030-06-01T12:00:00+02:00")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == "t1  rescheduled: due 2030-06-01 10:00:00Z"
    assert fake.seen[-1].json() == {"executeAt": "2030-06-01T10:00:00Z"}

    retried = scheduler(
        fake.url, "tasks", "retry-all", "--status", "stale", "--created-after", "2030-01-01T00:00Z"
    )
    assert retried.stdout.strip() == "retried 3 tasks"
    assert fake.seen[-1].json() == {"status": ["stale"], "createdAfter": "2030-01-01T00:00:00Z"}
    cancelled = scheduler(fake.url, "tasks", "cancel-all", "--queue", "default", "--json")
    assert json.loads(cancelled.stdout) == {"count": 1}

    unfiltered = scheduler(fake.url, "tasks", "cancel-all")
    assert unfiltered.returncode == 2 and "--status" in unfiltered.stderr
    assert fake.count("POST", "/api/v1/tasks:cancel") == 1  # the refused one sent nothing


def test_stats_on_a_fake_api(fake: FakeApi) -> None:
    shown = scheduler(fake.url, "stats")
    assert shown.returncode == 0, shown.stderr
    header, row, lateness = (re.split(r"\s{2,}", line) for line in shown.stdout.splitlines())
    assert dict(zip(header, row, strict=True)) == {
        "QUEUE": "default",
        "PENDING": "4",
        "RUNNING": "1",
        "RESOLVED": "10",
        "STALE": "2",
        "CANCELLED": "0",
        "DUE": "3",
        "OLDEST DUE": "1.5 s",
    }
    [lateness] = lateness
    assert lateness == "lateness over the last 300 s: p50 2.5 ms, p99 20.0 ms"
    assert json.loads(scheduler(fake.url, "stats", "--json").stdout) == STATS


# -- what the server sends cannot drive the terminal -------------------------------------------


def test_stored_values_are_shown_escaped_and_json_stays_exact(base_url: str, api: Client) -> None:
    task = api.enqueue(
        NOWHERE,
        execute_at=LATER,
        idempotency_key=HOSTILE,
        payload={"note": HOSTILE, "name": "Zoë 東京"},
    )
    assert api.get_task(task.id).idempotency_key == HOSTILE  # stored as given

    shown = scheduler(base_url, "tasks", "show", task.id)
    assert shown.returncode == 0, shown.stderr
    assert raw_controls(shown.stdout) == []
    lines = shown.stdout.splitlines()
    assert not any(line.startswith("FAKE") for line in lines)  # no forged line
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)
    assert fields["idempotency key"] == HOSTILE_SHOWN
    assert fields["payload"] == (
        r'{"note": "\u001b[31mevil\u001b[0m\r\nFAKE LINE\u202e\u2066gnp.exe\u2069\x7f\x9b[2J",'
        ' "name": "Zoë 東京"}'
    )

    as_json = scheduler(base_url, "tasks", "show", task.id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert raw_controls(as_json.stdout) == []
    assert json.loads(as_json.stdout) == dict(api.get_task(task.id).raw)  # the same value
    assert "Zoë 東京" in as_json.stdout  # UTF-8 letters are kept as they are
    assert r"\u202e" in as_json.stdout and r"\u009b" in as_json.stdout

    listed = scheduler(base_url, "tasks", "list", "--json")
    assert raw_controls(listed.stdout) == []
    assert json.loads(listed.stdout)["tasks"][0]["idempotencyKey"] == HOSTILE


def hostile_answers() -> dict[tuple[str, str], Any]:
    """What a server (another version, or not ours) could answer, every string hostile."""
    task = task_json(
        id=f"t1{HOSTILE}",
        status=f"stale{HOSTILE}",
        queue=f"q{HOSTILE}",
        lastError=f"HTTP 500: {HOSTILE}\ud800",  # a lone surrogate: not even printable
        lastStatusCode=500,
        schedule=HOSTILE,
    )
    attempt = {
        "attempt": 1,
        "startedAt": "2030-01-01T10:00:00Z",
        "outcome": f"failed{HOSTILE}",
        "error": f"HTTP 500: {HOSTILE}",
        "statusCode": 500,
    }
    queue = STATS["queues"][0]  # type: ignore[index]
    return {
        ("GET", "/api/v1/tasks"): {"tasks": [task], "nextCursor": HOSTILE},
        ("GET", "/api/v1/tasks/t1"): task,
        ("GET", "/api/v1/tasks/t1/attempts"): {"attempts": [attempt]},
        ("GET", "/api/v1/stats"): {**STATS, "queues": [{**queue, "queue": HOSTILE}, queue]},
        ("POST", "/api/v1/tasks/t1/retry"): {
            "error": {"code": f"conflict{HOSTILE}", "message": f"No.{HOSTILE}", "details": {}}
        },
        ("POST", "/api/v1/tasks"): {
            "error": {
                "code": "validation_error",
                "message": "Invalid.",
                "details": {f"field{HOSTILE}": [f"bad{HOSTILE}"], "nested": {"x": HOSTILE}},
            }
        },
    }


@pytest.fixture
def hostile_api() -> Iterator[FakeApi]:
    def route(body: Any) -> Route:
        status = 200 if "error" not in body else (409 if body["error"]["details"] == {} else 400)
        return lambda _: json_answer(status, body)

    server = FakeApi({key: route(body) for key, body in hostile_answers().items()})
    yield server
    server.close()


HOSTILE_COMMANDS = {
    "list": (("tasks", "list"), ("GET", "/api/v1/tasks")),
    "show": (("tasks", "show", "t1"), ("GET", "/api/v1/tasks/t1")),
    "attempts": (("tasks", "attempts", "t1"), ("GET", "/api/v1/tasks/t1/attempts")),
    "stats": (("stats",), ("GET", "/api/v1/stats")),
    "api-error": (("tasks", "retry", "t1"), None),
    "validation-error": (("enqueue", NOWHERE), None),
}


@pytest.mark.parametrize("name", HOSTILE_COMMANDS)
def test_no_server_string_reaches_the_terminal_raw(hostile_api: FakeApi, name: str) -> None:
    args, answered = HOSTILE_COMMANDS[name]
    result = scheduler(hostile_api.url, *args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert raw_controls(output) == []
    assert not any(line.startswith("FAKE") for line in output.splitlines())  # no forged line
    assert HOSTILE_SHOWN in output, output
    if answered is None:
        assert result.returncode == 1 and result.stderr.startswith("Error: "), output
        return
    assert result.returncode == 0, result.stderr

    as_json = scheduler(hostile_api.url, *args, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert raw_controls(as_json.stdout) == []
    assert json.loads(as_json.stdout) == hostile_answers()[answered]  # exact, all the same

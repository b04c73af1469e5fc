"""Async completion across processes: the URL a worker signs is accepted by any server on
the database, before and after a restart (the key lives in the database)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from tests.cli.conftest import Processes, api, enqueue, set_db_config
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

PUBLIC_URL = "https://scheduler.example.com/base"


def _path(url: str) -> str:
    """A completion URL as the path a server behind PUBLIC_URL's proxy would see."""
    assert url.startswith(f"{PUBLIC_URL}/callbacks/v1/"), url
    return urlsplit(url).path.removeprefix("/base")


def _attempts(server, task_id: str) -> list[dict]:
    rows: list[dict] = api(server, "GET", f"/api/v1/tasks/{task_id}/attempts").json()["attempts"]
    return rows


def test_a_worker_made_url_completes_on_a_server_restarted_after_the_202(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    set_db_config(clean_database, base_interval_ms=50)
    receiver.behave("/long", statuses=[202], headers={"Scheduler-Async": "600"})
    first = processes.serve(clean_database, "--no-dispatcher")
    processes.worker(clean_database, env={"SCHEDULER_PUBLIC_URL": PUBLIC_URL})
    [created] = enqueue(first, {"webhookUrl": receiver.url("/long")})
    [call] = receiver.wait_for(1, "/long", timeout=30)
    complete = _path(call.header("X-Scheduler-Complete-Url") or "")
    wait_until(
        lambda: _attempts(first, created["id"])[0]["statusCode"] == 202,
        timeout=30,
        message="for the 202 to be recorded",
    )
    assert api(first, "GET", f"/api/v1/tasks/{created['id']}").json()["status"] == "running"

    first.stop()
    second = processes.serve(clean_database, "--no-dispatcher")
    answer = api(second, "POST", complete)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "resolved"
    assert api(second, "GET", f"/api/v1/tasks/{created['id']}").json()["status"] == "resolved"
    assert api(second, "POST", complete).status_code == 409


def test_two_servers_share_the_urls_fail_on_one_complete_on_the_other(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    set_db_config(clean_database, base_interval_ms=50, retry_backoff_ms=0)
    receiver.behave("/long", statuses=[202], headers={"Scheduler-Async": "600"})
    one = processes.serve(clean_database, "--no-dispatcher")
    two = processes.serve(clean_database, "--no-dispatcher")
    processes.worker(clean_database, env={"SCHEDULER_PUBLIC_URL": PUBLIC_URL})
    [created] = enqueue(one, {"webhookUrl": receiver.url("/long"), "maxRetries": 1})
    [first_call] = receiver.wait_for(1, "/long", timeout=30)
    wait_until(
        lambda: _attempts(one, created["id"])[0]["statusCode"] == 202,
        timeout=30,
        message="for the first 202 to be recorded",
    )
    failed = api(
        one, "POST", _path(first_call.header("X-Scheduler-Fail-Url") or ""), json={"error": "busy"}
    )
    assert failed.status_code == 200, failed.text
    assert failed.json()["status"] == "pending"

    # The worker hears of the retry and delivers attempt 2, with URLs of its own.
    calls = receiver.wait_for(2, "/long", timeout=30)
    assert calls[1].header("X-Scheduler-Attempt") == "2"
    wait_until(
        lambda: (
            len(_attempts(two, created["id"])) == 2
            and _attempts(two, created["id"])[1]["statusCode"] == 202
        ),
        timeout=30,
        message="for the second 202 to be recorded",
    )
    old = api(two, "POST", _path(first_call.header("X-Scheduler-Complete-Url") or ""))
    assert old.status_code == 409
    done = api(two, "POST", _path(calls[1].header("X-Scheduler-Complete-Url") or ""))
    assert done.status_code == 200, done.text
    after = api(one, "GET", f"/api/v1/tasks/{created['id']}").json()
    assert after["status"] == "resolved"
    assert after["attempts"] == 2
    assert [a["outcome"] for a in _attempts(one, created["id"])] == ["failed", "resolved"]


def test_silence_past_the_async_timeout_fails_the_attempt_and_the_url_is_gone(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    set_db_config(clean_database, base_interval_ms=50, retry_backoff_ms=60_000)
    receiver.behave("/long", statuses=[202], headers={"Scheduler-Async": "1"})
    server = processes.serve(clean_database)
    [created] = enqueue(server, {"webhookUrl": receiver.url("/long"), "maxRetries": 1})
    [call] = receiver.wait_for(1, "/long", timeout=30)
    task_url = f"/api/v1/tasks/{created['id']}"
    wait_until(
        lambda: api(server, "GET", task_url).json()["status"] == "pending",
        timeout=30,
        message="for the reaper to fail the silent attempt",
    )
    after = api(server, "GET", task_url).json()
    assert after["lastError"] == "async: no completion within 1 s"
    assert [a["outcome"] for a in _attempts(server, created["id"])] == ["failed"]
    # Completing now is too late, even though the next attempt has not begun.
    complete = urlsplit(call.header("X-Scheduler-Complete-Url") or "").path
    late = api(server, "POST", complete)
    assert late.status_code == 410
    assert late.json()["error"]["code"] == "gone"


def test_serve_without_a_public_url_signs_urls_that_lead_back_to_where_it_listens(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    # `serve --port 0` (or any --port, --host) with SCHEDULER_PUBLIC_URL unset: the URLs
    # must name the port it really listens on, not the default 8080 (another server, or
    # nothing).
    receiver.behave("/long", statuses=[202], headers={"Scheduler-Async": "600"})
    server = processes.serve(clean_database, env={"SCHEDULER_PUBLIC_URL": ""})
    [created] = enqueue(server, {"webhookUrl": receiver.url("/long")})
    [call] = receiver.wait_for(1, "/long", timeout=30)
    complete = call.header("X-Scheduler-Complete-Url") or ""
    assert complete.startswith(f"{server.base_url}/callbacks/v1/complete/"), complete
    wait_until(
        lambda: _attempts(server, created["id"])[0]["statusCode"] == 202,
        timeout=30,
        message="for the 202 to be recorded",
    )
    answer = requests.post(complete, timeout=15)  # exactly as the receiver would
    assert answer.status_code == 200, answer.text
    assert api(server, "GET", f"/api/v1/tasks/{created['id']}").json()["status"] == "resolved"

"""`scheduler serve`: a real process, real HTTP, a real receiver, real signals."""

from __future__ import annotations

import re
import signal
import socket
import threading
import uuid

import pytest
import requests

from scheduler_core.runtime_config import RuntimeConfig
from tests.cli.conftest import (
    STARTUP_TIMEOUT,
    Processes,
    api,
    assert_stays,
    db_tasks,
    enqueue,
    set_db_config,
)
from tests.store.databases import query, table_names
from tests.support.processes import SchedulerProcess, run_cli
from tests.support.receiver import Received, Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

SCHEMA_TABLES = {
    "scheduler_tasks",
    "scheduler_attempts",
    "scheduler_config",
    "scheduler_schema_migrations",
}
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")


def test_serve_migrates_an_empty_database_and_serves(
    processes: Processes, empty_database_url: str
) -> None:
    assert table_names(empty_database_url) == set()

    server = processes.serve(empty_database_url)

    assert api(server, "GET", "/healthz").json() == {"status": "ok"}
    assert api(server, "GET", "/readyz").json() == {"status": "ready"}
    assert api(server, "GET", "/api/v1/config").json() == RuntimeConfig().as_camel()
    assert api(server, "GET", "/api/v1/tasks").json() == {"tasks": [], "nextCursor": None}
    assert table_names(empty_database_url) >= SCHEMA_TABLES
    assert "applied migration 0001_initial.sql" in server.output


def test_a_task_enqueued_over_http_is_delivered_to_the_receiver(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    server = processes.serve(clean_database)

    response = api(
        server,
        "POST",
        "/api/v1/tasks",
        json={"webhookUrl": receiver.url("/served"), "payload": {"order": 42}},
    )

    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["Location"].endswith(f"/api/v1/tasks/{task['id']}")
    [call] = receiver.wait_for(1, "/served", timeout=30)
    assert call.header("X-Scheduler-Task-Id") == task["id"]
    assert call.header("X-Scheduler-Attempt") == "1"
    assert call.json()["taskId"] == task["id"]
    assert call.json()["payload"] == {"order": 42}
    resolved = wait_until(
        lambda: (
            (t := api(server, "GET", f"/api/v1/tasks/{task['id']}").json())["status"] == "resolved"
            and t
        ),
        timeout=30,
        message="for the task to be resolved",
    )
    assert resolved["attempts"] == 1
    assert resolved["lastStatusCode"] == 200


def test_no_dispatcher_serves_the_api_but_delivers_nothing(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    # A dispatcher would call a due task within 10 ms.
    set_db_config(clean_database, base_interval_ms=10)
    server = processes.serve(clean_database, "--no-dispatcher")

    [task] = enqueue(server, {"webhookUrl": receiver.url("/never")})

    def still_waiting() -> bool:
        current = api(server, "GET", f"/api/v1/tasks/{task['id']}").json()
        return not receiver.calls() and current["status"] == "pending" and current["attempts"] == 0

    assert_stays(
        still_waiting, seconds=2.0, message="a server started with --no-dispatcher delivered a task"
    )
    assert "dispatcher started" not in server.output
    assert f"task={task['id']} attempt=" not in server.output


def test_a_port_already_in_use_is_a_one_line_error(clean_database: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_cli(clean_database, "serve", "--port", str(port))

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


@pytest.mark.parametrize(
    ("host", "api_keys", "warned"),
    [("0.0.0.0", None, True), ("0.0.0.0", "k1", False), ("127.0.0.1", None, False)],
    ids=["open-beyond-loopback", "keys-set", "loopback"],
)
def test_serve_warns_when_an_open_api_listens_beyond_loopback(
    processes: Processes, clean_database: str, host: str, api_keys: str | None, warned: bool
) -> None:
    env = {"SCHEDULER_API_KEYS": api_keys or ""}

    server = processes.serve(clean_database, "--host", host, env=env)

    assert ("SCHEDULER_API_KEYS is not set" in server.output) is warned
    assert api(server, "GET", "/healthz").status_code == 200


# -- shutdown -----------------------------------------------------------------------------


def _one_delivery_in_flight(
    processes: Processes, database_url: str, receiver: Receiver, **behaviour: object
) -> tuple[SchedulerProcess, list[str], Received]:
    """A server holding the first of three due tasks in flight, the other two waiting.

    select_size=1 makes every tick claim a single task, so exactly one is in flight.
    """
    set_db_config(
        database_url, select_size=1, base_interval_ms=100, http_callback_timeout_ms=30_000
    )
    receiver.behave("/slow", **behaviour)
    server = processes.serve(database_url)
    tasks = enqueue(
        server, *({"webhookUrl": receiver.url("/slow"), "payload": n} for n in range(3))
    )
    ids = [t["id"] for t in tasks]
    [first] = receiver.wait_for(1, "/slow", timeout=30)
    assert first.header("X-Scheduler-Task-Id") == ids[0]
    return server, ids, first


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_the_delivery_in_flight_finish_and_claims_nothing_more(
    processes: Processes, clean_database: str, receiver: Receiver, signum: int
) -> None:
    server, ids, _ = _one_delivery_in_flight(processes, clean_database, receiver, delay=2.0)

    server.signal(signum)

    assert server.wait_exit(timeout=60) == 0
    tasks = db_tasks(clean_database)
    assert tasks[ids[0]] == {"status": "resolved", "attempts": 1, "last_status_code": 200}
    for waiting in ids[1:]:
        assert tasks[waiting] == {"status": "pending", "attempts": 0, "last_status_code": None}
    assert len(receiver.calls("/slow")) == 1
    [(duration_ms, status_code)] = query(
        clean_database,
        "SELECT duration_ms, status_code FROM scheduler_attempts WHERE task_id = %s",
        (ids[0],),
    )
    assert status_code == 200
    assert duration_ms >= 1900  # the whole 2 s answer was waited for, not cut short
    name = signal.Signals(signum).name
    assert f"signal {name}: no new claims" in server.output
    assert server.output.rstrip().endswith("stopped")


def test_a_second_sigterm_during_the_wait_exits_at_once_with_an_error_code(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    # The receiver never answers: a graceful stop would wait the whole 30 s timeout.
    server, ids, _ = _one_delivery_in_flight(processes, clean_database, receiver, hang=True)

    server.signal(signal.SIGTERM)
    server.wait_for_log("no new claims", timeout=STARTUP_TIMEOUT)
    server.signal(signal.SIGTERM)

    exit_code = server.wait_exit(timeout=10)
    assert exit_code != 0
    assert "second signal: exiting at once" in server.output
    # The lease was left to expire: the task will be claimed again by someone else.
    tasks = db_tasks(clean_database)
    assert tasks[ids[0]]["status"] == "running"
    assert [tasks[i]["status"] for i in ids[1:]] == ["pending", "pending"]


def test_sigterm_stops_a_server_that_is_busy_reading_requests(
    processes: Processes, clean_database: str
) -> None:
    # The signal lands while the main thread is inside waitress's request handling
    # (reading large bodies keeps it there): it must still stop the server, not just
    # close one connection and serve on with the dispatcher stopped. Each round catches
    # the regression about half the time, so several rounds.
    body = b"x" * 200_000
    for _ in range(4):
        server = processes.serve(clean_database)
        assert server.base_url is not None
        url = server.base_url + "/api/v1/tasks"
        answered = [0]
        stop = threading.Event()

        def hammer(
            url: str = url, answered: list[int] = answered, stop: threading.Event = stop
        ) -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        session.post(url, data=body, timeout=5)
                        answered[0] += 1
                    except requests.RequestException:
                        pass  # the server is going away, as asked

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        try:
            wait_until(
                lambda answered=answered: answered[0] >= 100,
                timeout=60,
                message="for the server to be busy",
            )
            server.signal(signal.SIGTERM)
            assert server.wait_exit(timeout=30) == 0
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        assert "uncaptured python exception" not in server.output
        assert server.output.rstrip().endswith("stopped")


# -- logs ---------------------------------------------------------------------------------


def test_logs_go_to_stderr_name_the_task_and_never_show_the_webhook_auth_secret(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    secret = f"Bearer sk_live_{uuid.uuid4().hex}"
    set_db_config(clean_database, base_interval_ms=20, retry_backoff_ms=10)
    receiver.behave("/flaky", statuses=[500, 200], body=b"try again")
    server = processes.serve(clean_database, split_output=True)

    refused = api(
        server,
        "POST",
        "/api/v1/tasks",
        json={
            "webhookUrl": receiver.url("/flaky"),
            "webhookAuth": secret,
            "executeAt": "not a time",
        },
    )
    assert refused.status_code == 400
    [task] = enqueue(server, {"webhookUrl": receiver.url("/flaky"), "webhookAuth": secret})
    calls = receiver.wait_for(2, "/flaky", timeout=30)
    wait_until(
        lambda: db_tasks(clean_database)[task["id"]]["status"] == "resolved",
        30,
        message="for the retried task to resolve",
    )
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=60) == 0

    assert [c.header("Authorization") for c in calls] == [secret, secret]
    stderr, stdout = server.output, server.stdout  # type: ignore[attr-defined]
    task_lines = [line for line in stderr.splitlines() if f"task={task['id']}" in line]
    assert any("attempt=1 failed (HTTP 500" in line for line in task_lines), stderr
    assert any("attempt=2 resolved status=200" in line for line in task_lines), stderr
    assert all(LOG_LINE.match(line) for line in task_lines), task_lines
    assert "task=" not in stdout
    assert secret not in stderr
    assert secret not in stdout
    assert secret.split(" ", 1)[1] not in stderr + stdout


# -- a crash ------------------------------------------------------------------------------


def test_a_server_killed_mid_delivery_redelivers_after_the_lease_once_restarted(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    # A 1 s callback timeout makes the lease 6 s. The receiver takes 3 s over the first
    # call, so the server is surely killed with the delivery in flight.
    set_db_config(clean_database, http_callback_timeout_ms=1000, base_interval_ms=100)
    receiver.behave("/crash", delay=3.0)
    server = processes.serve(clean_database)
    [task] = enqueue(server, {"webhookUrl": receiver.url("/crash"), "payload": "again"})
    [first] = receiver.wait_for(1, "/crash", timeout=30)

    server.proc.kill()
    assert server.wait_exit(timeout=10) == -signal.SIGKILL
    # The claim counted the attempt that the crash lost; the lease still holds the task.
    assert db_tasks(clean_database)[task["id"]] == {
        "status": "running",
        "attempts": 1,
        "last_status_code": None,
    }
    receiver.behave("/crash")  # from now on it answers 200 at once

    restarted = processes.serve(clean_database)
    [_, second] = receiver.wait_for(2, "/crash", timeout=30)

    assert second.header("X-Scheduler-Task-Id") == task["id"]
    assert (first.header("X-Scheduler-Attempt"), second.header("X-Scheduler-Attempt")) == (
        "1",
        "2",
    )
    assert second.json() == {**first.json(), "attempt": 2}
    assert second.at - first.at >= 5.0, "delivered again before the 6 s lease ran out"
    resolved = wait_until(
        lambda: (
            (t := api(restarted, "GET", f"/api/v1/tasks/{task['id']}").json())["status"]
            == "resolved"
            and t
        ),
        timeout=30,
        message="for the redelivered task to be resolved",
    )
    assert (resolved["attempts"], resolved["lastStatusCode"]) == (2, 200)
    history = api(restarted, "GET", f"/api/v1/tasks/{task['id']}/attempts").json()["attempts"]
    assert [(a["attempt"], a["statusCode"]) for a in history] == [(1, None), (2, 200)]
    assert "lease expired" in history[0]["error"]
    assert f"task={task['id']} lease expired" in restarted.output
    assert len(receiver.calls("/crash")) == 2

"""`scheduler worker`: delivery scaled out over processes sharing one database."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from scheduler_core.migrations import load as load_migrations
from tests.cli.conftest import STARTUP_TIMEOUT, Processes, api, db_tasks, enqueue, set_db_config
from tests.store.databases import dialect_of, query
from tests.support.processes import SchedulerProcess
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def test_a_worker_delivers_what_an_api_only_server_enqueued_and_stops_on_sigterm(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    set_db_config(clean_database, base_interval_ms=50)
    server = processes.serve(clean_database, "--no-dispatcher")
    ids = [
        t["id"]
        for t in enqueue(
            server, *({"webhookUrl": receiver.url("/work"), "payload": n} for n in range(5))
        )
    ]

    worker = processes.worker(clean_database)

    calls = receiver.wait_for(5, "/work", timeout=30)
    assert sorted(c.header("X-Scheduler-Task-Id") for c in calls) == sorted(ids)
    wait_until(
        lambda: all(t["status"] == "resolved" for t in db_tasks(clean_database).values()),
        timeout=30,
        message="for every task to be resolved",
    )
    for task_id in ids:
        assert f"task={task_id} attempt=1 resolved" in worker.output
        assert f"task={task_id} attempt=" not in server.output
    assert api(server, "GET", f"/api/v1/tasks/{ids[0]}").json()["status"] == "resolved"

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=30) == 0
    assert worker.output.rstrip().endswith("stopped")


def test_two_workers_and_a_server_deliver_each_of_300_tasks_exactly_once(
    processes: Processes, empty_database_url: str, receiver: Receiver
) -> None:
    # All three start at once on a database that has no schema yet: each migrates at start.
    server = processes.serve(empty_database_url, wait=False)
    workers = [processes.worker(empty_database_url, wait=False) for _ in range(2)]
    server.wait_listening(STARTUP_TIMEOUT)
    for worker in workers:
        worker.wait_for_log("worker running", STARTUP_TIMEOUT)
    response = api(server, "PATCH", "/api/v1/config", json={"baseIntervalMs": 10, "selectSize": 25})
    assert response.status_code == 200, response.text
    # A slow-ish receiver keeps each tick busy, so the other dispatchers get their turn.
    receiver.behave("/once", delay=0.02)

    ids = [
        t["id"]
        for t in enqueue(
            server, *({"webhookUrl": receiver.url("/once"), "payload": n} for n in range(300))
        )
    ]

    receiver.wait_for(300, "/once", timeout=180)
    wait_until(
        lambda: (
            sum(t["status"] == "resolved" for t in db_tasks(empty_database_url).values()) == 300
        ),
        timeout=60,
        message="for all 300 tasks to be resolved",
    )
    everyone = [server, *workers]
    assert [p.proc.poll() for p in everyone] == [None, None, None], "a process died"
    for process in everyone:  # graceful: deliveries in flight finish before exit
        process.signal(signal.SIGTERM)
    assert [p.wait_exit(timeout=60) for p in everyone] == [0, 0, 0]

    delivered = Counter(c.header("X-Scheduler-Task-Id") for c in receiver.calls("/once"))
    assert set(delivered) == set(ids)
    assert [task_id for task_id, n in delivered.items() if n > 1] == []
    assert {t["attempts"] for t in db_tasks(empty_database_url).values()} == {1}
    assert query(empty_database_url, "SELECT count(*) FROM scheduler_attempts") == [(300,)]
    assert query(
        empty_database_url, "SELECT version FROM scheduler_schema_migrations ORDER BY version"
    ) == [(m.version,) for m in load_migrations(dialect_of(empty_database_url))]
    for process in everyone:
        assert "Traceback" not in process.output
        assert "tick failed" not in process.output
        assert "database is locked" not in process.output
        assert " ERROR " not in process.output


def _worker_with_one_delivery_in_flight(
    processes: Processes, database_url: str, receiver: Receiver, **behaviour: object
) -> tuple[SchedulerProcess, list[str]]:
    """A worker holding the first of three due tasks in flight (select_size=1)."""
    set_db_config(
        database_url, select_size=1, base_interval_ms=100, http_callback_timeout_ms=30_000
    )
    receiver.behave("/slow", **behaviour)
    api_only = processes.serve(database_url, "--no-dispatcher")
    ids = [
        t["id"]
        for t in enqueue(
            api_only, *({"webhookUrl": receiver.url("/slow"), "payload": n} for n in range(3))
        )
    ]
    worker = processes.worker(database_url)
    [first] = receiver.wait_for(1, "/slow", timeout=30)
    assert first.header("X-Scheduler-Task-Id") == ids[0]
    return worker, ids


def test_sigterm_lets_the_workers_delivery_in_flight_finish_then_exits_0(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    worker, ids = _worker_with_one_delivery_in_flight(
        processes, clean_database, receiver, delay=2.0
    )

    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(timeout=60) == 0
    tasks = db_tasks(clean_database)
    assert tasks[ids[0]]["status"] == "resolved"
    assert [tasks[i]["status"] for i in ids[1:]] == ["pending", "pending"]
    assert [tasks[i]["attempts"] for i in ids[1:]] == [0, 0]
    assert len(receiver.calls("/slow")) == 1


def test_a_second_sigterm_makes_the_worker_exit_at_once_with_an_error_code(
    processes: Processes, clean_database: str, receiver: Receiver
) -> None:
    worker, ids = _worker_with_one_delivery_in_flight(
        processes, clean_database, receiver, hang=True
    )

    worker.signal(signal.SIGTERM)
    worker.wait_for_log("no new claims", timeout=STARTUP_TIMEOUT)
    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(timeout=10) != 0
    assert db_tasks(clean_database)[ids[0]]["status"] == "running"  # its lease will expire

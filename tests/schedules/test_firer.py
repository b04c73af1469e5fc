"""The ScheduleFirer thread of every dispatcher: a due schedule is fired and its task
delivered for real (in-process dispatcher, and a `scheduler worker` subprocess with a
server), and errors never kill the thread."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from scheduler_core.dispatcher import Dispatcher
from scheduler_core.dispatcher.schedules import ScheduleFirer
from scheduler_core.models import Task
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.store import Store
from scheduler_core.store.base import StoreUnavailable
from scheduler_core.testing.waiting import wait_until
from tests.cli.conftest import Processes, api
from tests.schedules.conftest import fired_tasks, new_schedule, place
from tests.support.database import TestDatabase
from tests.support.receiver import Receiver


def test_a_started_dispatcher_fires_a_due_schedule_and_delivers_it_at_once(
    store: Store, plugins: PluginManager, db: TestDatabase, receiver: Receiver
) -> None:
    store.create_schedule(new_schedule("job", "* * * * *", webhook_url=receiver.url("/cron")))
    dispatcher = Dispatcher(store, plugins)
    dispatcher.start()
    try:
        # Its fire time a moment from now: the firer re-reads at least every second.
        fire_at = db.now() + timedelta(milliseconds=700)
        place(db, "job", fire_at)
        [call] = receiver.wait_for(1, "/cron", timeout=10)
    finally:
        dispatcher.stop()
    [task] = fired_tasks(db)
    assert task["execute_at"] == fire_at
    assert task["key"] == f"schedule:job:{fire_at.isoformat().replace('+00:00', '')}Z"
    stored = store.get(call.header("X-Scheduler-Task-Id") or "")
    assert stored is not None and stored.schedule == "job"
    assert store.get_schedule("job").last_fire_at == fire_at


class FlakyStore:
    """A store whose firing fails a few times (the database down), then works."""

    def __init__(self, store: Store, failures: int):
        self.store = store
        self.failures = failures
        self.calls = 0
        self.fired = threading.Event()

    def watch(self, listener):  # type: ignore[no-untyped-def]
        return self.store.watch(listener)

    def fire_due_schedules(self, now: datetime | None = None) -> list[Task]:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable("connection refused")
        fired = self.store.fire_due_schedules(now)
        if fired:
            self.fired.set()
        return fired

    def schedule_due_in_s(self) -> float | None:
        return self.store.schedule_due_in_s()


def test_the_firer_survives_a_database_that_is_down_and_fires_when_it_is_back(
    store: Store, db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    store.create_schedule(new_schedule("job", "* * * * *"))
    place(db, "job", db.now() - timedelta(seconds=1))
    flaky = FlakyStore(store, failures=3)
    firer = ScheduleFirer(flaky)  # type: ignore[arg-type]
    firer.first_backoff_s = 0.02
    firer.start()
    try:
        assert flaky.fired.wait(10), "the firer never fired after the database came back"
    finally:
        firer.close()
    assert flaky.calls >= 4
    assert caplog.text.count("database unavailable") == 3
    assert len(fired_tasks(db)) == 1


@pytest.mark.slow
def test_a_worker_process_fires_a_schedule_and_a_server_triggers_one(
    processes: Processes, clean_database: str, db: TestDatabase, receiver: Receiver
) -> None:
    server = processes.serve(clean_database, "--no-dispatcher")
    response = api(
        server,
        "POST",
        "/api/v1/schedules",
        json={"name": "job", "cron": "* * * * *", "webhookUrl": receiver.url("/cron")},
    )
    assert response.status_code == 201, response.text
    worker = processes.worker(clean_database)
    fire_at = db.now() + timedelta(seconds=1)
    place(db, "job", fire_at)
    [fired] = receiver.wait_for(1, "/cron", timeout=20)
    task = api(server, "GET", f"/api/v1/tasks/{fired.header('X-Scheduler-Task-Id')}").json()
    assert task["schedule"] == "job"
    assert task["idempotencyKey"].startswith("schedule:job:")
    triggered = api(server, "POST", "/api/v1/schedules/job/trigger")
    assert triggered.status_code == 201, triggered.text
    calls = receiver.wait_for(2, "/cron", timeout=20)
    assert calls[-1].header("X-Scheduler-Task-Id") == triggered.json()["id"]
    assert triggered.json()["schedule"] == "job"
    wait_until(
        lambda: f"task={triggered.json()['id']} attempt=1 resolved" in worker.output,
        timeout=20,
        message="for the worker to resolve the triggered task",
    )
    assert "schedule=job" in worker.output


def test_a_dispatcher_watches_the_store_once_and_its_firer_hears_the_notices(
    store, plugins, monkeypatch
) -> None:
    # One watch per dispatcher: on PostgreSQL each is a LISTEN connection of its own.
    from scheduler_core.dispatcher import Dispatcher

    watches = []
    real_watch = store.watch

    def counting_watch(listener):
        watches.append(listener)
        return real_watch(listener)

    monkeypatch.setattr(store, "watch", counting_watch)
    dispatcher = Dispatcher(store, plugins)
    heard: list[str] = []
    monkeypatch.setattr(dispatcher._schedules, "notice", heard.append)
    dispatcher.start()
    try:
        assert len(watches) == 1
        watches[0]("schedule")  # as a schedule written here or elsewhere would
        assert "schedule" in heard
    finally:
        dispatcher.stop(wait=True)

"""Migrations keep data: a database made at the first schema (0001), full of tasks in every
state and their attempts, migrated to the latest schema step by step and in one go, on
each backend. Every stored value that existed before is compared, exactly; the new
columns hold what the migrations say; then the real store and a real worker use it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scheduler_core.migrations import load as load_migrations
from scheduler_core.models import (
    AttemptOutcome,
    DeliveryOutcome,
    RecordedOutcome,
    RetryDecision,
    TaskFilter,
    TaskStatus,
)
from scheduler_core.store import Store, StoreError, open_store
from tests.cli.conftest import Processes
from tests.store.databases import dialect_of, query
from tests.store.old_schema import (
    AUTH,
    CONFIG_COLUMNS_0001,
    LEASE_UNTIL,
    OLD_CONFIG,
    OldData,
    attempt_rows,
    config_rows,
    fill_first_schema,
    migrate_to,
    task_rows,
    versions,
)
from tests.store.schema import describe_schema, expected_schema
from tests.support.receiver import Receiver

LATEST = len(load_migrations("sqlite"))
NEW_CONFIG_COLUMNS = ("max_dispatches_per_second", "max_concurrent_dispatches", "paused")


@pytest.fixture
def old_database(empty_database_url: str, receiver: Receiver) -> tuple[str, OldData]:
    """A database at schema 0001 holding the first release's kind of data."""
    assert migrate_to(empty_database_url, 1) == ["0001_initial.sql"]
    assert versions(empty_database_url) == [1]
    return empty_database_url, fill_first_schema(empty_database_url, receiver.url())


@pytest.fixture
def processes() -> Iterator[Processes]:
    manager = Processes()
    try:
        yield manager
    finally:
        manager.stop_all()


@pytest.fixture
def migrated(old_database: tuple[str, OldData]) -> Iterator[tuple[Store, OldData]]:
    url, data = old_database
    migrate_to(url)
    store = open_store(url, pool_size=2)
    yield store, data
    store.close()


@pytest.mark.parametrize("steps", ["one-by-one", "at-once"])
def test_migrating_from_the_first_schema_keeps_every_task_attempt_and_the_config(
    old_database: tuple[str, OldData], steps: str
) -> None:
    url, data = old_database
    dialect = dialect_of(url)
    names = [m.name for m in load_migrations(dialect)]
    tasks, attempts, [config] = task_rows(url), attempt_rows(url), config_rows(url)
    assert (len(tasks), len(attempts)) == (10, 14)

    if steps == "one-by-one":
        for version in range(2, LATEST + 1):
            assert migrate_to(url, version) == [names[version - 1]]
            assert versions(url) == list(range(1, version + 1))
            assert task_rows(url) == tasks, f"after {names[version - 1]}"
            assert attempt_rows(url) == attempts, f"after {names[version - 1]}"
    else:
        assert migrate_to(url) == names[1:]
    assert migrate_to(url) == []  # and again: nothing to do

    # Every value stored before, exactly as it was, and no row more or less.
    assert task_rows(url) == tasks
    assert attempt_rows(url) == attempts
    # The new columns: each task in `default`, made by no schedule; each finished attempt's
    # outcome backfilled by 0002 from its status code and error, in-flight ones left NULL;
    # no lateness was measured then.
    assert task_rows(url, ("id", "queue", "schedule")) == [
        (task_id, "default", None) for (task_id, *_rest) in tasks
    ]
    backfilled = {
        (str(task_id), attempt): (outcome, lateness)
        for task_id, attempt, outcome, lateness in attempt_rows(
            url, ("task_id", "attempt", "outcome", "lateness_ms")
        )
    }
    assert backfilled == {key: (outcome, None) for key, outcome in data.outcomes.items()}
    assert set(data.outcomes.values()) == {"failed", "lost", "resolved", None}
    # The old single config row is the `default` queue's, its values and updated_at kept,
    # the new keys at their defaults, not paused.
    assert config_rows(url, ("queue", *CONFIG_COLUMNS_0001, *NEW_CONFIG_COLUMNS)) == [
        ("default", *config, 0, 0, False)
    ]
    assert config[: len(OLD_CONFIG)] == tuple(OLD_CONFIG.values())
    assert _count(url, "scheduler_schedules") == 0
    # The schema is the one a new database gets.
    assert describe_schema(url) == expected_schema(dialect)
    assert versions(url) == list(range(1, LATEST + 1))


def _count(url: str, table: str) -> int:
    [(count,)] = query(url, f"SELECT count(*) FROM {table}")
    return int(count)


def test_the_store_reads_lists_claims_and_records_on_the_migrated_database(
    migrated: tuple[Store, OldData],
) -> None:
    store, data = migrated
    assert store.get_config().as_dict() == {
        **OLD_CONFIG,
        "max_dispatches_per_second": 0,
        "max_concurrent_dispatches": 0,
    }
    for name, task_id in data.ids.items():
        task = store.get(task_id)
        assert task is not None, name
        assert (task.queue, task.schedule) == ("default", None), name
        assert task.payload == json.loads(data.payloads[task_id]), name
    stale = store.get(data.ids["stale"])
    assert stale is not None and (stale.status, stale.attempts, stale.last_status_code) == (
        TaskStatus.STALE,
        1,
        500,
    )
    history = store.attempts(data.ids["running"])
    assert history is not None
    assert [(a.attempt, a.outcome) for a in history] == [
        (1, AttemptOutcome.LOST),
        (2, AttemptOutcome.FAILED),
        (3, None),
    ]

    # Listed newest first, by queue too.
    listed, after = store.list_tasks(TaskFilter(), 100, None)
    assert [t.id for t in listed] == list(reversed(data.ids.values())) and after is None
    in_default, _ = store.list_tasks(TaskFilter(queue="default"), 100, None)
    assert len(in_default) == len(data.ids)
    pending, _ = store.list_tasks(TaskFilter(statuses=frozenset({TaskStatus.PENDING})), 100, None)
    assert {t.id for t in pending} == {*data.due(), data.ids["future"], data.ids["future_null"]}

    # The due ones are claimed (nothing else: the running one's lease holds), each counting
    # one more attempt, with its webhookAuth as stored.
    claimed = {c.id: c for c in store.claim_due(50, lease_ms=60_000)}
    assert set(claimed) == set(data.due())
    assert {task_id: c.attempt for task_id, c in claimed.items()} == {
        data.ids["due"]: 1,
        data.ids["retry_due"]: 3,
        data.ids["retried_after_stale"]: 3,
    }
    assert claimed[data.ids["retried_after_stale"]].attempts_in_budget == 1
    assert claimed[data.ids["due"]].webhook_auth == AUTH["due"]
    assert claimed[data.ids["retry_due"]].webhook_auth == AUTH["retry"]
    assert claimed[data.ids["due"]].payload_json == data.payloads[data.ids["due"]]

    ok = DeliveryOutcome(ok=True, status_code=200, duration_ms=12)
    bad = DeliveryOutcome(ok=False, status_code=500, error="HTTP 500", duration_ms=7)
    store.record_outcomes(
        [
            RecordedOutcome(data.ids["due"], 1, ok, None, lateness_ms=3),
            RecordedOutcome(data.ids["retry_due"], 3, bad, RetryDecision.stale()),
        ]
    )
    due = store.get(data.ids["due"])
    retry = store.get(data.ids["retry_due"])
    assert due is not None and due.status is TaskStatus.RESOLVED
    assert retry is not None and (retry.status, retry.attempts) == (TaskStatus.STALE, 3)
    history = store.attempts(data.ids["retry_due"])
    assert history is not None
    assert [(a.attempt, a.outcome, a.status_code) for a in history] == [
        (1, AttemptOutcome.FAILED, 502),
        (2, AttemptOutcome.FAILED, None),
        (3, AttemptOutcome.FAILED, 500),
    ]
    running = store.get(data.ids["running"])
    assert running is not None and running.status is TaskStatus.RUNNING


def test_a_database_migrated_by_a_newer_release_is_refused_and_left_alone(
    migrated: tuple[Store, OldData],
) -> None:
    store, _ = migrated
    known = load_migrations(store.dialect)
    # A prefix of the migrations stands for an older release meeting this database.
    with pytest.raises(StoreError) as raised:
        store.migrate(known[:2])
    message = str(raised.value)
    assert f"schema is at version {LATEST}" in message and "newer" in message
    assert "nothing was changed" in message
    assert store.migrate() == []  # the release that knows it goes on


def test_migrate_refuses_a_list_with_a_gap(empty_database_url: str) -> None:
    known = load_migrations(dialect_of(empty_database_url))
    store = open_store(empty_database_url, pool_size=1)
    try:
        with pytest.raises(StoreError, match="numbered 1..n"):
            store.migrate([known[0], known[2]])
    finally:
        store.close()


def test_a_worker_started_on_the_old_database_migrates_it_and_delivers_the_due_tasks(
    old_database: tuple[str, OldData], receiver: Receiver, processes: Processes
) -> None:
    """The upgrade as an operator does it: the new release's worker on the old database."""
    url, data = old_database
    tasks_before = task_rows(url)

    worker = processes.worker(url)
    calls = receiver.wait_for(len(data.due()), "/hook", timeout=60)

    by_task = {str(c.header("X-Scheduler-Task-Id")): c for c in calls}
    assert set(by_task) == set(data.due())  # nothing else: future, running, finished stay
    for task_id, call in by_task.items():
        assert call.header("Authorization") == data.auth[task_id]
        assert call.json()["payload"] == json.loads(data.payloads[task_id])
    assert by_task[data.ids["due"]].header("X-Scheduler-Attempt") == "1"
    assert by_task[data.ids["retry_due"]].header("X-Scheduler-Attempt") == "3"
    worker.stop()
    assert worker.proc.returncode == 0, worker.output
    assert "applied migration 0004_queues_and_schedules.sql" in worker.output

    assert versions(url) == list(range(1, LATEST + 1))
    # The live tasks not due are as they were; the finished ones, two years past the
    # 48 hours of retention the old config row keeps, were deleted by the worker.
    after = {row[0]: row for row in task_rows(url)}
    finished = {data.ids[n] for n in ("resolved", "resolved_odd_answers", "cancelled")}
    assert set(after) == {row[0] for row in tasks_before} - finished
    for row in tasks_before:
        if row[0] not in by_task and row[0] not in finished:
            assert after[row[0]] == row
    statuses = dict(task_rows(url, ("id", "status")))
    assert {statuses[i] for i in data.due()} == {"resolved"}
    assert statuses[data.ids["running"]] == "running"  # its lease runs to LEASE_UNTIL
    assert LEASE_UNTIL.year == 2100

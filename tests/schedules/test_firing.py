"""The store's schedule verbs on both backends, with simulated time: fire_due_schedules
stepping across daylight-saving changes enqueues exactly one task per fire time, catchUp
after downtime, pause/resume/change, a queue that vanished, webhookAuth kept sealed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler_core.encryption import AuthCipher, generate_key
from scheduler_core.schedules import CatchUp, CronError, CronSchedule
from scheduler_core.store import Store
from scheduler_core.store.base import QueueNotFound, ScheduleConflict, ScheduleNotFound
from tests.schedules.conftest import fired_tasks, new_schedule, place, step_through
from tests.support.database import TestDatabase


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def minutes(start: datetime, end: datetime, step_s: int = 60) -> list[datetime]:
    """Simulated clock readings from `start` to `end`, `step_s` apart, a few seconds
    after each whole minute (as a firer a little behind the clock reads it)."""
    count = int((end - start).total_seconds() // step_s) + 1
    return [start + timedelta(seconds=step_s * i + 7) for i in range(count)]


DST_CASES = [
    # zone, cron, window start, window end, the fire times expected in it
    (
        "Europe/Berlin",
        "30 2 * * *",
        utc(2026, 3, 28, 0),
        utc(2026, 3, 30, 2),
        [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        utc(2026, 10, 24, 0),
        utc(2026, 10, 26, 2),
        [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
    ),
    (
        "America/New_York",
        "30 2 * * *",
        utc(2026, 3, 7, 6),
        utc(2026, 3, 9, 8),
        [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
    ),
    (
        "America/New_York",
        "30 1 * * *",
        utc(2026, 10, 31, 5),
        utc(2026, 11, 2, 7),
        [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
    ),
]


@pytest.mark.parametrize(("zone", "cron", "start", "end", "expected"), DST_CASES)
def test_a_daily_job_fires_once_per_day_across_a_dst_change_at_the_exact_instant(
    store: Store,
    db: TestDatabase,
    zone: str,
    cron: str,
    start: datetime,
    end: datetime,
    expected: list[datetime],
) -> None:
    store.create_schedule(new_schedule("daily", cron, timezone=zone))
    place(db, "daily", CronSchedule(cron, zone).next_after(start))  # type: ignore[arg-type]
    # Every 10 minutes, plus a reading a few seconds after each expected fire time.
    readings = sorted({*minutes(start, end, 600), *(t + timedelta(seconds=5) for t in expected)})
    assert step_through(store, readings) == expected
    tasks = fired_tasks(db)
    assert [t["execute_at"] for t in tasks] == expected
    assert [t["key"] for t in tasks] == [
        f"schedule:daily:{t.strftime('%Y-%m-%dT%H:%M:%SZ')}" for t in expected
    ]
    assert {t["schedule"] for t in tasks} == {"daily"}
    schedule = store.get_schedule("daily")
    assert schedule.last_fire_at == expected[-1]
    assert schedule.next_fire_at is not None and schedule.next_fire_at > end


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", (2026, 3, 29)),
        ("Europe/Berlin", (2026, 10, 25)),
        ("America/New_York", (2026, 3, 8)),
        ("America/New_York", (2026, 11, 1)),
    ],
)
def test_hourly_and_quarter_hourly_jobs_step_minute_by_minute_through_a_dst_day(
    store: Store, db: TestDatabase, zone: str, day: tuple[int, int, int]
) -> None:
    local_midnight = datetime(*day, tzinfo=CronSchedule("0 * * * *", zone).zone)
    start = local_midnight.astimezone(UTC)
    end = (local_midnight + timedelta(days=1)).astimezone(UTC) - timedelta(seconds=1)
    for name, cron in (("hourly", "0 * * * *"), ("quarterly", "*/15 * * * *")):
        store.create_schedule(new_schedule(name, cron, timezone=zone))
        place(db, name, start)
    made = step_through(store, minutes(start, end))
    tasks = fired_tasks(db)
    assert len(made) == len(tasks)
    hourly = [t["execute_at"] for t in tasks if t["schedule"] == "hourly"]
    quarterly = [t["execute_at"] for t in tasks if t["schedule"] == "quarterly"]
    hours = round((end - start).total_seconds() / 3600)  # 23 or 25 on these days
    assert hours in (23, 25)
    assert hourly == [start + timedelta(hours=h) for h in range(hours)]
    assert quarterly == [start + timedelta(minutes=15 * q) for q in range(hours * 4)]
    assert len({t["key"] for t in tasks}) == len(tasks)


def test_firing_again_at_the_same_moment_enqueues_nothing_more(
    store: Store, db: TestDatabase
) -> None:
    store.create_schedule(new_schedule("every", "* * * * *"))
    place(db, "every", utc(2026, 5, 1, 12, 0))
    now = utc(2026, 5, 1, 12, 0, 10)
    assert len(store.fire_due_schedules(now=now)) == 1
    assert store.fire_due_schedules(now=now) == []
    assert len(fired_tasks(db)) == 1


@pytest.mark.parametrize("catch_up", list(CatchUp))
def test_catch_up_after_a_simulated_downtime(
    store: Store, db: TestDatabase, catch_up: CatchUp
) -> None:
    store.create_schedule(new_schedule("hourly", "0 * * * *", catch_up=catch_up))
    place(db, "hourly", utc(2026, 5, 1, 3))
    # Down from 02:59 to 05:30: 03:00, 04:00 and 05:00 were missed.
    made = store.fire_due_schedules(now=utc(2026, 5, 1, 5, 30))
    expected = [utc(2026, 5, 1, 5)] if catch_up is CatchUp.LATEST else []
    assert [t.execute_at for t in made] == expected
    schedule = store.get_schedule("hourly")
    assert schedule.next_fire_at == utc(2026, 5, 1, 6)
    assert schedule.last_fire_at == (expected[-1] if expected else None)
    # Back in business: the next fire time is fired on time, whatever catchUp says.
    made = store.fire_due_schedules(now=utc(2026, 5, 1, 6, 0, 2))
    assert [t.execute_at for t in made] == [utc(2026, 5, 1, 6)]
    assert len(fired_tasks(db)) == len(expected) + 1


def test_create_computes_the_first_fire_time_from_the_database_clock(
    store: Store, db: TestDatabase
) -> None:
    schedule = store.create_schedule(new_schedule("soon", "*/5 * * * *", payload={"n": 1}))
    now = db.now()
    assert schedule.next_fire_at is not None
    assert now < schedule.next_fire_at <= now + timedelta(minutes=5)
    assert schedule.next_fire_at.minute % 5 == 0 and schedule.next_fire_at.second == 0
    assert (schedule.last_fire_at, schedule.paused, schedule.payload) == (None, False, {"n": 1})
    assert store.next_schedule_fire() == schedule.next_fire_at
    due_in = store.schedule_due_in_s()
    assert due_in is not None and 0 < due_in <= 300
    with pytest.raises(ScheduleConflict):
        store.create_schedule(new_schedule("soon", "0 * * * *"))
    with pytest.raises(CronError):
        store.create_schedule(new_schedule("bad", "61 * * * *"))
    with pytest.raises(CronError):
        store.create_schedule(new_schedule("bad", "0 * * * *", timezone="Nowhere/City"))
    with pytest.raises(QueueNotFound):
        store.create_schedule(new_schedule("bad", "0 * * * *", queue="missing"))
    assert [s.name for s in store.list_schedules()] == ["soon"]


def test_pause_resume_and_changes(store: Store, db: TestDatabase) -> None:
    store.create_schedule(new_schedule("job", "0 * * * *"))
    place(db, "job", utc(2026, 5, 1, 3))
    paused = store.set_schedule_paused("job", True)
    assert (paused.paused, paused.next_fire_at) == (True, None)
    assert store.set_schedule_paused("job", True) == paused  # idempotent
    assert store.fire_due_schedules(now=utc(2026, 5, 1, 3, 0, 5)) == []
    assert store.next_schedule_fire() is None
    # Resumed: from the next fire time after now (the database clock), nothing caught up.
    resumed = store.set_schedule_paused("job", False)
    now = db.now()
    assert resumed.next_fire_at is not None
    assert now < resumed.next_fire_at <= now + timedelta(hours=1)
    assert store.set_schedule_paused("job", False) == resumed
    # A change of catchUp or template keeps the fire time; a new cron moves it.
    changed = store.update_schedule("job", {"catch_up": CatchUp.NONE, "payload": [1]})
    assert (changed.catch_up, changed.payload, changed.next_fire_at) == (
        CatchUp.NONE,
        [1],
        resumed.next_fire_at,
    )
    moved = store.update_schedule("job", {"cron": "*/5 * * * *", "timezone": "Asia/Tokyo"})
    assert moved.next_fire_at is not None and moved.next_fire_at <= now + timedelta(minutes=6)
    assert moved.updated_at >= changed.updated_at
    with pytest.raises(CronError):
        store.update_schedule("job", {"cron": "* * *"})
    with pytest.raises(QueueNotFound):
        store.update_schedule("job", {"queue": "missing"})
    assert store.get_schedule("job") == moved  # a refused change changed nothing
    with pytest.raises(ScheduleNotFound):
        store.update_schedule("nope", {"payload": 1})
    deleted = store.delete_schedule("job")
    assert deleted.name == "job"
    with pytest.raises(ScheduleNotFound):
        store.get_schedule("job")
    with pytest.raises(ScheduleNotFound):
        store.delete_schedule("job")


def test_trigger_enqueues_one_run_now_naming_the_schedule(store: Store, db: TestDatabase) -> None:
    store.create_schedule(
        new_schedule("job", "0 0 1 1 *", paused=True, payload={"k": "v"}, max_retries=2)
    )
    task = store.trigger_schedule("job")
    assert (task.schedule, task.payload, task.max_retries, task.idempotency_key) == (
        "job",
        {"k": "v"},
        2,
        None,
    )
    assert abs((task.execute_at - db.now()).total_seconds()) < 5
    assert store.get(task.id) == task
    assert store.get_schedule("job").last_fire_at is None
    assert store.trigger_schedule("job").id != task.id  # every trigger is a run
    with pytest.raises(ScheduleNotFound):
        store.trigger_schedule("nope")


def test_a_schedule_whose_queue_is_gone_fires_nothing_and_moves_on(
    store: Store, db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    db.execute(
        "INSERT INTO scheduler_config (queue, created_at, updated_at) VALUES ('gone', 0, 0)"
        if db.dialect == "sqlite"
        else "INSERT INTO scheduler_config (queue) VALUES ('gone')"
    )
    store.create_schedule(new_schedule("job", "* * * * *", queue="gone", webhook_auth="s3cret"))
    db.execute("DELETE FROM scheduler_config WHERE queue = 'gone'")
    place(db, "job", utc(2026, 5, 1, 12))
    assert store.fire_due_schedules(now=utc(2026, 5, 1, 12, 0, 3)) == []
    assert fired_tasks(db) == []
    assert store.get_schedule("job").next_fire_at == utc(2026, 5, 1, 12, 1)
    assert "queue 'gone' does not exist" in caplog.text
    assert "s3cret" not in caplog.text
    with pytest.raises(QueueNotFound):
        store.trigger_schedule("job")


def test_webhook_auth_is_sealed_on_write_and_copied_sealed_into_each_task(
    settings_url: str, db: TestDatabase
) -> None:
    from scheduler_core.store import open_store

    key = generate_key()
    store = open_store(settings_url, encryption_keys=[key])
    try:
        store.create_schedule(new_schedule("job", "* * * * *", webhook_auth="Bearer one"))
        [(name, stored)] = store.schedule_auth_page("", 10)
        assert name == "job" and stored.startswith("fernet:") and "one" not in stored
        assert AuthCipher([key]).open(stored) == "Bearer one"
        place(db, "job", utc(2026, 5, 1, 12))
        [task] = store.fire_due_schedules(now=utc(2026, 5, 1, 12, 0, 1))
        [row] = fired_tasks(db)
        assert row["webhook_auth"] == stored
        [claimed] = store.claim_due(10, 60_000)
        assert (claimed.id, claimed.webhook_auth) == (task.id, "Bearer one")
        store.update_schedule("job", {"webhook_auth": "Bearer two"})
        [(_, second)] = store.schedule_auth_page("", 10)
        assert AuthCipher([key]).open(second) == "Bearer two"
        assert store.replace_schedule_auth([("job", "stale", "x"), ("job", second, "y")]) == ["job"]
        store.update_schedule("job", {"webhook_auth": None})
        assert store.schedule_auth_page("", 10) == []
    finally:
        store.close()


@pytest.fixture
def settings_url(settings) -> str:  # type: ignore[no-untyped-def]
    return str(settings.database_url)

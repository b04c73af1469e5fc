"""The operators' read verbs (queue_counts, lateness_percentiles, activity) on known data,
on every backend, by the database clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from scheduler_core.models import (
    DeliveryOutcome,
    NewTask,
    RecordedOutcome,
    RetryDecision,
    TaskStatus,
)
from scheduler_core.store import Store
from scheduler_core.store.sqlite import to_micros
from tests.support.database import TestDatabase

URL = "http://127.0.0.1:9/hook"


def enqueue(store: Store, count: int, execute_at: datetime | None = None) -> list[str]:
    created = store.enqueue([NewTask(webhook_url=URL, execute_at=execute_at)] * count)
    return [task.id for task, _ in created]


def outcome(task_id: str, kind: str, lateness_ms: int | None = None) -> RecordedOutcome:
    """What the engine records for one first attempt ending as `kind`."""
    if kind == "resolved":
        return RecordedOutcome(
            task_id, 1, DeliveryOutcome(ok=True, status_code=200), None, lateness_ms
        )
    if kind == "failed":  # tried again in an hour: pending, not due
        failed = DeliveryOutcome(ok=False, status_code=500, error="HTTP 500")
        return RecordedOutcome(task_id, 1, failed, RetryDecision(3_600_000), lateness_ms)
    if kind == "stale":
        failed = DeliveryOutcome(ok=False, status_code=500, error="HTTP 500")
        return RecordedOutcome(task_id, 1, failed, RetryDecision.stale(), lateness_ms)
    assert kind == "lost"
    lost = DeliveryOutcome(ok=False, error="lease expired")
    return RecordedOutcome(task_id, 1, lost, RetryDecision.stale(), lost=True)


def deliver(store: Store, kinds: list[tuple[str, int | None]]) -> list[str]:
    """Enqueue, claim and record one attempt per (kind, lateness); kind "running" leaves
    the attempt in flight. Returns the task ids in order."""
    ids = enqueue(store, len(kinds))
    claimed = [task.id for task in store.claim_due(len(kinds), 600_000)]
    assert sorted(claimed) == sorted(ids)
    store.record_outcomes(
        [
            outcome(task_id, kind, late)
            for task_id, (kind, late) in zip(ids, kinds, strict=True)
            if kind != "running"
        ]
    )
    return ids


def move_attempts(db: TestDatabase, task_ids: list[str], started_at: datetime) -> None:
    """Pretend these tasks' attempts started at `started_at`."""
    for task_id in task_ids:
        db.sql(
            postgresql="UPDATE scheduler_attempts SET started_at = %s WHERE task_id = %s",
            sqlite="UPDATE scheduler_attempts SET started_at = %s WHERE task_id = %s",
            params=(started_at if db.dialect == "postgresql" else to_micros(started_at), task_id),
        )


# -- queue_counts ------------------------------------------------------------------------


def test_an_empty_database_counts_zero_of_every_status_in_the_default_queue(store: Store) -> None:
    [default] = store.queue_counts()
    assert default.queue == "default"
    assert dict(default.counts) == {status: 0 for status in TaskStatus}
    assert (default.due_backlog, default.oldest_due_age_s) == (0, 0.0)


def test_counts_by_status_and_the_due_backlog_by_the_database_clock(
    store: Store, db: TestDatabase
) -> None:
    deliver(store, [("running", None), ("resolved", 5), ("resolved", 6), ("stale", 7)])
    [cancelled] = enqueue(store, 1, db.now() + timedelta(hours=1))
    store.cancel(cancelled)
    # Three due (the oldest for 30 s), two not yet due.
    now = db.now()
    for seconds in (30, 20, 10):
        enqueue(store, 1, now - timedelta(seconds=seconds))
    enqueue(store, 2, now + timedelta(hours=1))

    [default] = store.queue_counts()
    assert dict(default.counts) == {
        TaskStatus.PENDING: 5,
        TaskStatus.RUNNING: 1,
        TaskStatus.RESOLVED: 2,
        TaskStatus.STALE: 1,
        TaskStatus.CANCELLED: 1,
    }
    assert default.due_backlog == 3
    assert 30.0 <= default.oldest_due_age_s < 40.0


def test_a_task_failed_and_waiting_for_its_retry_is_pending_but_not_due(store: Store) -> None:
    deliver(store, [("failed", 3)])
    [default] = store.queue_counts()
    assert default.counts[TaskStatus.PENDING] == 1
    assert (default.due_backlog, default.oldest_due_age_s) == (0, 0.0)


# -- lateness_percentiles ----------------------------------------------------------------


def test_no_attempt_in_the_window_means_no_percentiles(store: Store) -> None:
    assert store.lateness_percentiles() == (None, None)
    deliver(store, [("lost", None), ("running", None)])  # neither measured a lateness
    assert store.lateness_percentiles() == (None, None)


def test_lateness_percentiles_are_nearest_rank_over_the_window(
    store: Store, db: TestDatabase
) -> None:
    ids = deliver(store, [("resolved", ms) for ms in range(1, 101)])
    assert store.lateness_percentiles(300) == (50.0, 99.0)

    [old] = deliver(store, [("failed", 100_000)])
    move_attempts(db, [old], db.now() - timedelta(minutes=10))
    assert store.lateness_percentiles(300) == (50.0, 99.0)  # ten minutes ago: outside
    # Inside an hour's window: 101 values, p50 at rank 51, p99 at rank 100.
    assert store.lateness_percentiles(3600) == (51.0, 100.0)

    move_attempts(db, ids, db.now() - timedelta(minutes=20))
    assert store.lateness_percentiles(300) == (None, None)


def test_a_single_attempt_is_every_percentile(store: Store) -> None:
    deliver(store, [("stale", 42)])
    assert store.lateness_percentiles() == (42.0, 42.0)


def test_a_window_that_is_not_positive_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="window_s"):
        store.lateness_percentiles(0)


# -- activity ----------------------------------------------------------------------------


def test_an_empty_hour_is_sixty_empty_minutes_ending_now(store: Store, db: TestDatabase) -> None:
    before = db.now()
    buckets = store.activity()
    after = db.now()
    assert len(buckets) == 60
    starts = [b.start for b in buckets]
    assert starts == sorted(starts)
    assert all(b.start.tzinfo == UTC and b.start.timestamp() % 60 == 0 for b in buckets)
    gaps = {later - earlier for earlier, later in zip(starts, starts[1:], strict=False)}
    assert gaps == {timedelta(minutes=1)}
    # The last bucket holds the database's now.
    assert starts[-1] <= after and before < starts[-1] + timedelta(minutes=1)
    assert all(
        (b.attempts, b.resolved, b.failed, b.lateness_p50_ms, b.lateness_p99_ms)
        == (0, 0, 0, None, None)
        for b in buckets
    )


def test_attempts_fall_in_the_bucket_they_started_in(store: Store, db: TestDatabase) -> None:
    last = store.activity(600, 60)[-1].start
    two_ago = last - timedelta(minutes=2) + timedelta(seconds=1)
    five_ago = last - timedelta(minutes=5) + timedelta(seconds=59)
    older = last - timedelta(minutes=30)  # outside a ten-minute window

    a = deliver(store, [("resolved", 10), ("resolved", 20), ("failed", 30), ("lost", None)])
    move_attempts(db, a, two_ago)
    b = deliver(store, [("resolved", ms) for ms in range(1, 101)] + [("running", None)])
    move_attempts(db, b, five_ago)
    move_attempts(db, deliver(store, [("resolved", 1)] * 3), older)

    buckets = store.activity(600, 60)
    assert len(buckets) == 10
    by_start = {bucket.start: bucket for bucket in buckets}
    # (A minute may have turned since `last` was read: find the buckets by their start.)
    bucket_a = by_start[last - timedelta(minutes=2)]
    assert (bucket_a.attempts, bucket_a.resolved, bucket_a.failed) == (4, 2, 2)
    assert (bucket_a.lateness_p50_ms, bucket_a.lateness_p99_ms) == (20.0, 30.0)
    bucket_b = by_start[last - timedelta(minutes=5)]
    assert (bucket_b.attempts, bucket_b.resolved, bucket_b.failed) == (101, 100, 0)
    assert (bucket_b.lateness_p50_ms, bucket_b.lateness_p99_ms) == (50.0, 99.0)
    others = [bk for bk in buckets if bk is not bucket_a and bk is not bucket_b]
    assert all(bk.attempts == 0 and bk.lateness_p50_ms is None for bk in others)


def test_buckets_need_not_divide_the_window(store: Store) -> None:
    buckets = store.activity(window_s=100, bucket_s=30)
    assert len(buckets) == math.ceil(100 / 30)
    assert all(b.start.timestamp() % 30 == 0 for b in buckets)


@pytest.mark.parametrize(("window_s", "bucket_s"), [(0, 60), (3600, 0), (-1, 60), (86_400 * 2, 60)])
def test_an_impossible_activity_window_is_refused(
    store: Store, window_s: int, bucket_s: int
) -> None:
    with pytest.raises(ValueError):
        store.activity(window_s, bucket_s)

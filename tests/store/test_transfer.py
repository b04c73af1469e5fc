"""The store verbs behind `scheduler export` / `scheduler import`, on each backend: a
database's tasks copied into an empty one of the same backend, as they were."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from scheduler_core.models import (
    DeliveryOutcome,
    NewTask,
    RecordedOutcome,
    RetryDecision,
    TaskStatus,
)
from scheduler_core.store import Store, open_store
from scheduler_core.transfer import LIVE_STATUSES, MOVED_WHILE_RUNNING
from tests.store.databases import query

EVERY_STATUS = frozenset(TaskStatus)
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def target(empty_database_url: str) -> Iterator[Store]:
    store = open_store(empty_database_url, pool_size=2)
    store.migrate()
    yield store
    store.close()


def _one_claimed(store: Store) -> tuple[str, int]:
    [claimed] = store.claim_due(10, lease_ms=60_000)
    return claimed.id, claimed.attempt


def _fill(store: Store) -> dict[str, str]:
    """A task in every status; returns status -> id."""
    ids: dict[str, str] = {}

    def add(**fields: Any) -> str:
        [(task, _)] = store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/hook", **fields)])
        return task.id

    add(payload={"n": 1})
    ids["resolved"], attempt = _one_claimed(store)
    ok = DeliveryOutcome(ok=True, status_code=200)
    store.record_outcomes([RecordedOutcome(ids["resolved"], attempt, ok, None)])
    add(payload={"n": 2}, max_retries=0, webhook_auth="Bearer stale")
    ids["stale"], attempt = _one_claimed(store)
    bad = DeliveryOutcome(ok=False, status_code=503, error="HTTP 503")
    store.record_outcomes([RecordedOutcome(ids["stale"], attempt, bad, RetryDecision.stale())])
    add(payload={"n": 3}, webhook_auth="Bearer running")
    ids["running"], _ = _one_claimed(store)
    ids["cancelled"] = add(payload={"n": 4}, execute_at=None, max_retries=1)
    store.cancel(ids["cancelled"])
    ids["pending"] = add(payload={"n": 5}, idempotency_key="key-5", execute_at=FUTURE)
    return ids


def test_export_then_import_recreates_the_tasks(store: Store, target: Store) -> None:
    ids = _fill(store)
    counts = store.export_counts()
    assert dict(counts.by_status) == {s: 1 for s in TaskStatus}
    assert counts.expired_leases == 0

    live = list(store.export_tasks(LIVE_STATUSES))
    assert {t.status.value for t in live} == {"pending", "running", "stale"}
    everything = list(store.export_tasks(EVERY_STATUS, batch_size=2))  # paged
    assert [t.id for t in everything] == [
        ids[s] for s in ("resolved", "stale", "running", "cancelled", "pending")
    ]  # creation order
    by_id = {t.id: t for t in everything}
    assert [a.status_code for a in by_id[ids["stale"]].history] == [503]
    assert by_id[ids["running"]].history[0].finished_at is None  # in flight

    result = target.import_tasks(everything)
    assert result.created == [t.id for t in everything]
    assert (result.present, result.key_taken) == ([], [])

    for name in ("resolved", "stale", "cancelled", "pending"):
        before, after = store.get(ids[name]), target.get(ids[name])
        assert after == before, name
    moved = target.get(ids["running"])
    assert moved is not None
    assert (moved.status, moved.attempts, moved.last_error) == (
        TaskStatus.PENDING,
        1,
        MOVED_WHILE_RUNNING,
    )
    [attempt] = target.attempts(ids["running"]) or []
    assert attempt.finished_at is not None and attempt.outcome is not None
    assert attempt.outcome.value == "lost"
    assert target.attempts(ids["stale"]) == store.attempts(ids["stale"])
    # The imported running task is due: a dispatcher on the target claims it.
    claimed = target.claim_due(10, lease_ms=60_000)
    assert [(c.id, c.attempt, c.webhook_auth) for c in claimed] == [
        (ids["running"], 2, "Bearer running")
    ]


def test_import_skips_tasks_present_and_keys_taken(store: Store, target: Store) -> None:
    ids = _fill(store)
    tasks = list(store.export_tasks(LIVE_STATUSES))
    first = target.import_tasks(tasks[:1])
    assert first.created == [tasks[0].id]
    # Another task already holds the pending task's idempotency key on the target.
    [(holder, _)] = target.enqueue(
        [NewTask(webhook_url="http://127.0.0.1:9/other", idempotency_key="key-5")]
    )
    again = target.import_tasks(tasks)
    assert again.present == [tasks[0].id]
    assert again.key_taken == [ids["pending"]]
    assert sorted(again.created) == sorted(t.id for t in tasks[1:] if t.id != ids["pending"])
    [(task, created)] = target.enqueue(
        [NewTask(webhook_url="http://127.0.0.1:9/x", idempotency_key="key-5")]
    )
    assert not created and task.id == holder.id


def test_an_export_reads_one_snapshot(store: Store, database_url: str) -> None:
    """A task enqueued while an export is half way is not in it (pages agree)."""
    for n in range(4):
        store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/hook", payload=n)])
    pages = store.export_tasks(LIVE_STATUSES, batch_size=1)
    first = next(pages)
    writer = open_store(database_url, pool_size=1)
    try:
        writer.enqueue([NewTask(webhook_url="http://127.0.0.1:9/hook", payload="late")])
        writer.cancel(first.id)
    finally:
        writer.close()
    rest = list(pages)
    assert [t.payload_json for t in [first, *rest]] == ["0", "1", "2", "3"]
    assert query(database_url, "SELECT count(*) FROM scheduler_tasks") == [(5,)]

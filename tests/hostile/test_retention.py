"""Retention: resolved and cancelled tasks older than retention_hours go, with their
attempts, in small batches, while deliveries go on. Nothing else is ever deleted.

Rows are aged with direct SQL (SQLite times are integer microseconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from scheduler_core.dispatcher import PURGE_BATCH, Dispatcher
from tests.conftest import set_config
from tests.dispatch.helpers import enqueue, enqueue_many, task
from tests.support.database import SQLITE_NOW_US, TestDatabase

RETENTION_HOURS = 24
NOWHERE = "http://127.0.0.1:9"
_SQLITE_UUID = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-8' || substr(lower(hex(randomblob(2))), 2) "
    "|| '-' || lower(hex(randomblob(6)))"
)


def seed(db: TestDatabase, marker: str, count: int, status: str, hours_ago: float) -> str:
    """`count` tasks in `status`, created and last changed `hours_ago`, each with one
    finished attempt. Pending ones are due; running ones hold a lease for another hour.
    Returns their webhook URL, which tells them apart."""
    url = f"{NOWHERE}/{marker}"
    if db.dialect == "postgresql":
        ago, hour = "a.ago", "interval '1 hour'"
        lease = f"now() + {hour}" if status == "running" else "NULL"
        db.execute(
            "INSERT INTO scheduler_tasks (webhook_url, payload, execute_at, next_attempt_at,"
            " status, attempts, lease_expires_at, created_at, updated_at, resolved_at)"
            f" SELECT %s, 'null', {ago}, {ago}, %s, 1, {lease}, {ago}, {ago},"
            f" {ago if status == 'resolved' else 'NULL'}"
            f" FROM (SELECT now() - %s * {hour} AS ago) AS a, generate_series(1, %s)",
            (url, status, hours_ago, count),
        )
    else:
        ago = "a.ago"
        lease = f"{SQLITE_NOW_US} + 3600000000" if status == "running" else "NULL"
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)"
            " INSERT INTO scheduler_tasks (id, webhook_url, payload, execute_at,"
            " next_attempt_at, status, attempts, lease_expires_at, created_at, updated_at,"
            " resolved_at)"
            f" SELECT {_SQLITE_UUID}, %s, 'null', {ago}, {ago}, %s, 1, {lease}, {ago}, {ago},"
            f" {ago if status == 'resolved' else 'NULL'}"
            f" FROM n, (SELECT {SQLITE_NOW_US} - CAST(%s * 3600000000 AS INTEGER) AS ago) AS a",
            (count, url, status, hours_ago),
        )
    db.execute(
        "INSERT INTO scheduler_attempts (task_id, attempt, started_at, finished_at,"
        " duration_ms, status_code) SELECT id, 1, updated_at, updated_at, 5, 200"
        " FROM scheduler_tasks WHERE webhook_url = %s",
        (url,),
    )
    return url


def count(db: TestDatabase, url: str) -> int:
    [(n,)] = db.execute("SELECT count(*) FROM scheduler_tasks WHERE webhook_url = %s", (url,))
    return int(n)


def attempt_count(db: TestDatabase) -> int:
    [(n,)] = db.execute("SELECT count(*) FROM scheduler_attempts")
    return int(n)


def orphan_attempts(db: TestDatabase) -> int:
    [(n,)] = db.execute(
        "SELECT count(*) FROM scheduler_attempts a"
        " WHERE NOT EXISTS (SELECT 1 FROM scheduler_tasks t WHERE t.id = a.task_id)"
    )
    return int(n)


def backdate(db: TestDatabase, task_id: str, hours: float) -> None:
    db.sql(
        postgresql="UPDATE scheduler_tasks SET updated_at = now() - %s * interval '1 hour'"
        " WHERE id = %s",
        sqlite=f"UPDATE scheduler_tasks SET updated_at = {SQLITE_NOW_US}"
        " - CAST(%s * 3600000000 AS INTEGER) WHERE id = %s",
        params=(hours, task_id),
    )


@pytest.fixture
def retention(store):
    return set_config(store, retention_hours=RETENTION_HOURS)


@pytest.fixture
def eager_dispatcher(store, plugins) -> Iterator[Dispatcher]:
    """A dispatcher that purges on every tick, not at most once a minute."""
    dispatcher = Dispatcher(store, plugins, purge_every_s=0.0)
    yield dispatcher
    dispatcher.stop(wait=True)


# -- what goes and what stays ---------------------------------------------------------


def test_a_tick_deletes_expired_resolved_and_cancelled_tasks_with_their_attempts(
    client, db, dispatcher, retention
):
    gone = {
        "resolved": seed(db, "old-resolved", 5, "resolved", RETENTION_HOURS + 1),
        "cancelled": seed(db, "old-cancelled", 5, "cancelled", RETENTION_HOURS + 1),
    }
    kept = {
        # resolved just inside retention, and finished-but-recent ones
        "recent resolved": seed(db, "recent-resolved", 4, "resolved", RETENTION_HOURS - 1),
        "recent cancelled": seed(db, "recent-cancelled", 2, "cancelled", 0.1),
        # never deleted, however old (an old pending one would be claimed: see below)
        "old stale": seed(db, "old-stale", 3, "stale", 80_000),
        "old running": seed(db, "old-running", 3, "running", 80_000),
    }
    [(gone_id,)] = db.execute(
        "SELECT id FROM scheduler_tasks WHERE webhook_url = %s LIMIT 1", (gone["resolved"],)
    )
    [(kept_id,)] = db.execute(
        "SELECT id FROM scheduler_tasks WHERE webhook_url = %s LIMIT 1", (kept["old stale"],)
    )

    dispatcher.tick()

    assert {name: count(db, url) for name, url in gone.items()} == {"resolved": 0, "cancelled": 0}
    assert {name: count(db, url) for name, url in kept.items()} == {
        "recent resolved": 4,
        "recent cancelled": 2,
        "old stale": 3,
        "old running": 3,
    }
    assert orphan_attempts(db) == 0
    assert attempt_count(db) == 4 + 2 + 3 + 3
    assert client.get(f"/api/v1/tasks/{gone_id}").status_code == 404
    assert client.get(f"/api/v1/tasks/{gone_id}/attempts").status_code == 404
    assert task(client, str(kept_id))["status"] == "stale"


def test_pending_stale_and_running_tasks_are_never_purged_whatever_their_age(store, db):
    keep = [seed(db, f"ancient-{s}", 3, s, 87_000) for s in ("pending", "stale", "running")]
    doomed = seed(db, "ancient-resolved", 3, "resolved", 87_000)

    # The shortest retention the configuration allows, and a batch big enough for all.
    assert store.purge_expired(1, 10_000) == 3
    assert store.purge_expired(1, 10_000) == 0

    assert [count(db, url) for url in keep] == [3, 3, 3]
    assert count(db, doomed) == 0
    assert attempt_count(db) == 9
    assert orphan_attempts(db) == 0


def test_a_retried_cancelled_task_is_not_purged_by_its_old_age(client, db, eager_dispatcher):
    set_config(eager_dispatcher.store, retention_hours=RETENTION_HOURS)
    created = enqueue(client, f"{NOWHERE}/later", executeAt="2099-01-01T00:00:00Z")
    assert client.delete(f"/api/v1/tasks/{created['id']}").status_code == 200
    backdate(db, created["id"], RETENTION_HOURS * 10)
    assert client.post(f"/api/v1/tasks/{created['id']}/retry").status_code == 200

    eager_dispatcher.tick()

    assert task(client, created["id"])["status"] == "pending"


# -- small batches --------------------------------------------------------------------


def test_one_purge_call_deletes_at_most_its_batch(store, db, retention):
    url = seed(db, "expired", 250, "resolved", RETENTION_HOURS + 1)
    left = []
    for _ in range(4):
        deleted = store.purge_expired(RETENTION_HOURS, 100)
        left.append((deleted, count(db, url)))
        assert orphan_attempts(db) == 0
    assert left == [(100, 150), (100, 50), (50, 0), (0, 0)]


def test_ticks_purge_one_full_batch_each_until_none_is_left(db, dispatcher, retention):
    """The default dispatcher: PURGE_BATCH per tick; a full batch means another on the
    next tick; a partial one means all is done, and the next purge waits its minute."""
    total = 2 * PURGE_BATCH + 200
    url = seed(db, "expired", total, "resolved", RETENTION_HOURS + 1)

    left = []
    for _ in range(3):
        dispatcher.tick()
        left.append(count(db, url))
    assert left == [total - PURGE_BATCH, total - 2 * PURGE_BATCH, 0]
    assert orphan_attempts(db) == 0

    more = seed(db, "expired-later", 10, "resolved", RETENTION_HOURS + 1)
    dispatcher.tick()
    assert count(db, more) == 10  # not before the purge interval has passed

    dispatcher.purge_every_s = 0.0  # the interval, passed without waiting a minute
    dispatcher.tick()
    assert count(db, more) == 0


def test_the_purge_batch_and_interval_are_dispatcher_settings(store, plugins, db, retention):
    dispatcher = Dispatcher(store, plugins, purge_batch=7, purge_every_s=3600)
    try:
        url = seed(db, "expired", 20, "resolved", RETENTION_HOURS + 1)
        left = []
        for _ in range(4):
            dispatcher.tick()
            left.append(count(db, url))
        assert left == [13, 6, 0, 0]
        seed(db, "expired-later", 1, "resolved", RETENTION_HOURS + 1)
        dispatcher.tick()
        assert count(db, f"{NOWHERE}/expired-later") == 1  # an hour has not passed
    finally:
        dispatcher.stop(wait=True)


# -- idempotency keys --------------------------------------------------------------------


def test_an_idempotency_key_is_free_again_once_its_task_is_purged(
    client, db, receiver, eager_dispatcher
):
    set_config(eager_dispatcher.store, retention_hours=RETENTION_HOURS)
    body = {"webhookUrl": receiver.url("/idem"), "idempotencyKey": "order-42"}
    first = client.post("/api/v1/tasks", json=body)
    assert first.status_code == 201
    first_id = first.get_json()["id"]
    eager_dispatcher.tick()
    assert task(client, first_id)["status"] == "resolved"

    repeat = client.post("/api/v1/tasks", json=body)
    assert (repeat.status_code, repeat.get_json()["id"]) == (200, first_id)

    backdate(db, first_id, RETENTION_HOURS + 1)
    eager_dispatcher.tick()
    assert client.get(f"/api/v1/tasks/{first_id}").status_code == 404

    again = client.post("/api/v1/tasks", json=body)
    assert again.status_code == 201
    assert again.get_json()["id"] != first_id
    eager_dispatcher.tick()
    assert len(receiver.wait_for(2, "/idem")) == 2


def test_an_idempotency_key_of_a_task_within_retention_still_holds(
    client, db, receiver, eager_dispatcher
):
    set_config(eager_dispatcher.store, retention_hours=RETENTION_HOURS)
    body = {"webhookUrl": receiver.url("/idem"), "idempotencyKey": "order-43"}
    first_id = client.post("/api/v1/tasks", json=body).get_json()["id"]
    eager_dispatcher.tick()
    backdate(db, first_id, RETENTION_HOURS - 1)
    eager_dispatcher.tick()
    repeat = client.post("/api/v1/tasks", json=body)
    assert (repeat.status_code, repeat.get_json()["id"]) == (200, first_id)


# -- no long locks: deliveries go on ------------------------------------------------------


@pytest.mark.slow
def test_deliveries_go_on_while_5000_expired_tasks_are_purged(
    client, store, plugins, db, receiver, measure, monkeypatch
):
    set_config(
        store,
        retention_hours=RETENTION_HOURS,
        base_interval_ms=10,
        select_size=10,
        http_callback_timeout_ms=2000,
    )
    expired = seed(db, "expired", 5000, "resolved", RETENTION_HOURS + 1)
    purges: list[tuple[float, float, int]] = []
    purge = store.purge_expired

    def recorded_purge(retention_hours: int, batch_size: int) -> int:
        started = time.monotonic()
        deleted = purge(retention_hours, batch_size)
        purges.append((started, time.monotonic(), deleted))
        return deleted

    monkeypatch.setattr(store, "purge_expired", recorded_purge)
    live = enqueue_many(client, [{"webhookUrl": receiver.url("/live")} for _ in range(100)])

    dispatcher = Dispatcher(store, plugins)
    api_latencies: list[float] = []
    purged = threading.Event()
    try:
        dispatcher.start()
        # The API keeps taking tasks while the purge runs.
        while not purged.is_set():
            started = time.monotonic()
            live.append(enqueue(client, receiver.url("/live")))
            api_latencies.append(time.monotonic() - started)
            if count(db, expired) == 0:
                purged.set()
            assert len(api_latencies) < 2000, "the purge did not finish"
        calls = receiver.wait_for(len(live), "/live", timeout=60)
    finally:
        dispatcher.stop(wait=True)

    assert orphan_attempts(db) == 0
    busy = [p for p in purges if p[2]]
    assert sum(p[2] for p in busy) == 5000
    assert all(p[2] <= PURGE_BATCH for p in purges)
    assert len(busy) >= 5000 // PURGE_BATCH
    first_start, last_end = busy[0][0], busy[-1][1]
    during = [c for c in calls if first_start <= c.at <= last_end]
    longest = max(end - start for start, end, _ in purges)
    measure("purge_batches", len(busy))
    measure("purge_period_s", round(last_end - first_start, 3))
    measure("longest_purge_s", round(longest, 3))
    measure("deliveries_during_purge", len(during))
    measure("max_api_latency_s", round(max(api_latencies), 3))
    assert during, "no delivery happened while the purge was going on"
    assert longest < 2.0, f"one purge batch held its transaction {longest:.2f}s"
    assert max(api_latencies) < 2.0
    # Every live task was delivered exactly once and resolved.
    assert sorted(c.json()["taskId"] for c in calls) == sorted(t["id"] for t in live)
    assert {task(client, t["id"])["status"] for t in live} == {"resolved"}


def test_an_open_purge_transaction_blocks_no_claim_enqueue_or_other_purge(
    client, store, db, dispatcher, receiver, retention
):
    """PostgreSQL: a purge in flight (here held open) locks only the rows it deletes;
    claims, deliveries, outcomes, enqueues and a second dispatcher's purge go on."""
    if db.dialect != "postgresql":
        pytest.skip(
            "SQLite has one writer at a time: its bound is the small batch, measured by "
            "test_deliveries_go_on_while_5000_expired_tasks_are_purged"
        )
    import psycopg2

    expired = seed(db, "expired", 3000, "resolved", RETENTION_HOURS + 1)
    conn = psycopg2.connect(db.url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                store.q["purge_expired"],  # type: ignore[attr-defined]
                {"retention_hours": RETENTION_HOURS, "batch_size": 5000},
            )
            assert cur.rowcount == 3000
        # The purge is uncommitted, its row locks held. Everything else goes on:
        live = enqueue(client, receiver.url("/during"))
        # claims, delivers, records, and tries its own purge
        worker = threading.Thread(target=dispatcher.tick, daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(5.0)
        elapsed = time.monotonic() - started
        blocked = worker.is_alive()
        assert count(db, expired) == 3000  # not yet committed, not purged twice
        conn.commit()
        worker.join(10.0)  # a blocked tick is released by the commit, not left hanging
    finally:
        conn.close()
    assert not blocked, f"the tick waited {elapsed:.2f}s behind the open purge"
    assert task(client, live["id"])["status"] == "resolved"
    assert count(db, expired) == 0
    assert orphan_attempts(db) == 0

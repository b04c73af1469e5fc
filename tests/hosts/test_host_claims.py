"""Per-host backpressure in the store (both backends): a throttled host's tasks are not
claimed while it is blocked, nor beyond its limits, and do not make their queue due;
hosts never throttled cost nothing and change nothing."""

from __future__ import annotations

import threading

import pytest

from scheduler_core.models import NewTask
from scheduler_core.store import open_store
from scheduler_core.store.base import Store
from scheduler_core.store.host_limits import FORGET_AT
from tests.support.database import TestDatabase

A = "http://127.0.0.1:8001/hook"  # host key 127.0.0.1:8001
B = "http://127.0.0.1:8002/hook"
LEASE_MS = 60_000


def enqueue(store: Store, url: str, count: int) -> list[str]:
    return [t.id for t, _ in store.enqueue([NewTask(webhook_url=url) for _ in range(count)])]


def set_host(
    db: TestDatabase,
    host: str,
    *,
    blocked: bool,
    concurrency: int | None,
    rate: float | None,
    tokens: float = 1.0,
) -> None:
    conc = "NULL" if concurrency is None else str(concurrency)
    per_s = "NULL" if rate is None else str(rate)
    db.sql(
        postgresql=(
            "INSERT INTO scheduler_hosts (host, blocked_until, max_concurrent, max_per_second,"
            " bucket_tokens, bucket_at) VALUES (%s, now() + interval "
            f"'{'60' if blocked else '-60'} seconds', {conc}, {per_s}, {tokens}, now())"
        ),
        sqlite=(
            "INSERT INTO scheduler_hosts (host, blocked_until, max_concurrent, max_per_second,"
            " bucket_tokens, bucket_at) VALUES (?, (CAST(round(julianday('now') * 86400000.0)"
            f" AS INTEGER) - 210866760000000) * 1000 + {60 if blocked else -60} * 1000000,"
            f" {conc}, {per_s}, {tokens}, (CAST(round(julianday('now') * 86400000.0)"
            " AS INTEGER) - 210866760000000) * 1000)"
        ),
        params=(host,),
    )


def test_no_throttled_host_changes_nothing(store: Store, db: TestDatabase) -> None:
    enqueue(store, A, 2)
    state = store.dispatch_state()
    assert state.hosts_reopen_at is None
    assert state.due_in_s_of(state.queues[0]) <= 0
    assert len(store.claim_due(10, LEASE_MS)) == 2
    assert store.list_hosts() == []


def test_a_blocked_host_is_not_claimed_and_does_not_make_its_queue_due(
    store: Store, db: TestDatabase
) -> None:
    a_ids = enqueue(store, A, 3)
    b_ids = enqueue(store, B, 2)
    store.record_host_feedback({"127.0.0.1:8001": (2000, 1)}, ())

    state = store.dispatch_state()
    assert state.hosts_reopen_in_s is not None and 1.5 < state.hosts_reopen_in_s <= 2.0
    assert state.due_in_s_of(state.queues[0]) <= 0  # B's tasks are due
    claimed = store.claim_due(10, LEASE_MS)
    assert {t.id for t in claimed} == set(b_ids)
    assert [store.get(i).status.value for i in a_ids] == ["pending"] * 3

    state = store.dispatch_state()  # only A's tasks left: nothing is due until it reopens
    assert state.queues[0].next_due is None
    assert store.claim_due(10, LEASE_MS) == []
    [info] = store.list_hosts()
    assert info.host == "127.0.0.1:8001"
    assert 1.5 < info.blocked_s <= 2.0
    assert info.throttled_total == 1
    assert info.max_concurrent == 1  # nothing ran: halved from 1, at least 1


def test_a_limited_host_gets_at_most_its_concurrency(store: Store, db: TestDatabase) -> None:
    enqueue(store, A, 5)
    enqueue(store, B, 3)
    set_host(db, "127.0.0.1:8001", blocked=False, concurrency=2, rate=1000.0, tokens=50)

    first = store.claim_due(10, LEASE_MS)
    hosts = sorted(t.target_host for t in first)
    assert hosts == ["127.0.0.1:8001"] * 2 + ["127.0.0.1:8002"] * 3
    assert store.claim_due(10, LEASE_MS) == []  # A at its limit: 2 running
    state = store.dispatch_state()
    assert state.queues[0].next_due is None  # and its tasks do not make the queue due
    assert state.hosts_reopen_in_s is not None and state.hosts_reopen_in_s < 0.2


def test_a_limited_host_gets_at_most_its_rate(store: Store, db: TestDatabase) -> None:
    enqueue(store, A, 5)
    set_host(db, "127.0.0.1:8001", blocked=False, concurrency=100, rate=1.0, tokens=1.0)

    assert len(store.claim_due(10, LEASE_MS)) == 1
    assert store.claim_due(10, LEASE_MS) == []  # the bucket is empty for about a second
    state = store.dispatch_state()
    assert state.hosts_reopen_in_s is not None and 0.5 < state.hosts_reopen_in_s <= 1.0


def test_throttling_halves_and_success_raises_then_forgets(store: Store, db: TestDatabase) -> None:
    enqueue(store, A, 6)
    set_host(db, "127.0.0.1:8001", blocked=False, concurrency=100, rate=1000.0, tokens=50)
    assert len(store.claim_due(10, LEASE_MS)) == 6  # six running to A
    db.execute("DELETE FROM scheduler_hosts")

    store.record_host_feedback({"127.0.0.1:8001": (0, 3)}, ())  # a first throttling
    [info] = store.list_hosts()
    assert (info.max_concurrent, info.throttled_total) == (3, 3)  # six running, halved
    store.record_host_feedback({"127.0.0.1:8001": (0, 1)}, ())
    [info] = store.list_hosts()
    assert info.max_concurrent == 1  # floor(3 / 2)
    rate = info.max_per_second

    # Recovery: one step per second of successes (pretend the last change is old).
    old = {
        "postgresql": "UPDATE scheduler_hosts SET updated_at = now() - interval '2 seconds'",
        "sqlite": "UPDATE scheduler_hosts SET updated_at = updated_at - 2000000",
    }[db.dialect]
    db.execute(old)
    store.record_host_feedback({}, {"127.0.0.1:8001"})
    [info] = store.list_hosts()
    assert (info.max_concurrent, info.max_per_second) == (2, rate + 1)
    store.record_host_feedback({}, {"127.0.0.1:8001"})  # within the second: no step
    assert store.list_hosts()[0].max_concurrent == 2

    big = FORGET_AT - 1
    db.execute(f"UPDATE scheduler_hosts SET max_concurrent = {big}, max_per_second = {big}")
    db.execute(old)
    store.record_host_feedback({}, {"127.0.0.1:8001"})
    assert store.list_hosts() == []  # back to unlimited


def test_claims_from_several_stores_keep_a_hosts_concurrency(
    store: Store, db: TestDatabase, database_url: str
) -> None:
    """Four dispatchers' stores claiming at once: the host's limit holds across them."""
    enqueue(store, A, 40)
    set_host(db, "127.0.0.1:8001", blocked=False, concurrency=3, rate=1000.0, tokens=50)
    stores = [open_store(database_url) for _ in range(4)]
    start = threading.Barrier(len(stores))
    taken: list[int] = []

    def claim(other: Store) -> None:
        start.wait()
        for _ in range(5):
            taken.append(len(other.claim_due(10, LEASE_MS)))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for other in stores:
            other.close()
    assert sum(taken) == 3
    running = db.execute("SELECT count(*) FROM scheduler_tasks WHERE status = 'running'")
    assert running[0][0] == 3


def test_a_throttled_host_with_several_queues_leaves_every_queue_served(
    store: Store, db: TestDatabase
) -> None:
    # A throttled host used to break every wake-up's read as soon as a second queue
    # existed (the flag was taken from the first queue's row only): no queue was served.
    store.put_queue("other", {})
    a_ids = enqueue(store, A, 1)
    [(other, _)] = store.enqueue([NewTask(webhook_url=B, queue="other")])
    [(default_b, _)] = store.enqueue([NewTask(webhook_url=B)])
    store.record_host_feedback({"127.0.0.1:8001": (60_000, 1)}, ())

    state = store.dispatch_state()
    assert sorted(q.name for q in state.queues) == ["default", "other"]
    assert all(state.due_in_s_of(q) <= 0 for q in state.queues)
    assert [t.id for t in store.claim_due(10, LEASE_MS)] == [default_b.id]
    assert [t.id for t in store.claim_due(10, LEASE_MS, queue="other")] == [other.id]
    assert store.get(a_ids[0]).status.value == "pending"


def test_a_claim_never_waits_for_another_claim_of_a_limited_host(
    store: Store, db: TestDatabase
) -> None:
    # Another dispatcher in the middle of claiming host A (its row locked) must not hold
    # up this claim: neither A's tasks (skipped this round) nor B's.
    if db.dialect != "postgresql":
        pytest.skip("SQLite claims hold the file's write lock: one at a time by design")
    import psycopg2

    set_host(db, "127.0.0.1:8001", blocked=False, concurrency=5, rate=None)
    enqueue(store, A, 2)
    b_ids = enqueue(store, B, 2)
    other = psycopg2.connect(db.url)
    claimed: list = []
    try:
        with other.cursor() as cur:
            cur.execute("SELECT 1 FROM scheduler_hosts WHERE host = '127.0.0.1:8001' FOR UPDATE")
            claim = threading.Thread(target=lambda: claimed.extend(store.claim_due(10, LEASE_MS)))
            claim.start()
            claim.join(timeout=5)  # a claim that waits for the lock is still alive here
            assert not claim.is_alive(), "the claim waited for the other claim's lock"
        assert {t.id for t in claimed} == set(b_ids)
    finally:
        other.rollback()  # lets a waiting claim go, whatever the assertions said
        other.close()
        claim.join(timeout=30)
    assert len(store.claim_due(10, LEASE_MS)) == 2  # A's turn once the lock is gone


def test_a_host_neither_blocked_nor_heard_from_is_forgotten(store: Store, db: TestDatabase) -> None:
    set_host(db, "127.0.0.1:8001", blocked=False, concurrency=1, rate=1.0)
    set_host(db, "127.0.0.1:8002", blocked=True, concurrency=1, rate=1.0)
    db.sql(  # just heard from
        postgresql="UPDATE scheduler_hosts SET updated_at = now()",
        sqlite="UPDATE scheduler_hosts SET updated_at = bucket_at",
    )
    assert store.forget_idle_hosts(idle_s=30) == 0
    db.sql(
        postgresql="UPDATE scheduler_hosts SET updated_at = now() - interval '1 hour'",
        sqlite="UPDATE scheduler_hosts SET updated_at = updated_at - 3600000000",
    )
    assert store.forget_idle_hosts(idle_s=30) == 1  # the blocked one stays
    assert [h.host for h in store.list_hosts()] == ["127.0.0.1:8002"]

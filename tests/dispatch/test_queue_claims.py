"""Claims queue by queue: a claim takes one queue's tasks, none of a paused queue, and no
more than the queue's limits across dispatchers allow (both backends)."""

from __future__ import annotations

import pytest

from scheduler_core.models import DeliveryOutcome, RecordedOutcome
from scheduler_core.settings import Settings
from scheduler_core.store import open_store
from scheduler_core.store.base import Store
from tests.dispatch.queues import add_queue, enqueue_in, set_paused
from tests.support.database import TestDatabase

URL = "http://127.0.0.1:9/hook"
LEASE_MS = 60_000


def test_a_claim_takes_only_its_own_queues_tasks(store: Store, db: TestDatabase) -> None:
    add_queue(db, store, "mail")
    mail = enqueue_in(store, "mail", URL, 3)
    default = enqueue_in(store, "default", URL, 2)

    claimed = store.claim_queue("mail", 10, LEASE_MS).tasks
    assert {t.id for t in claimed} == set(mail)
    assert {t.queue for t in claimed} == {"mail"}
    assert [store.get(i).status.value for i in default] == ["pending", "pending"]
    assert {t.id for t in store.claim_due(10, LEASE_MS)} == set(default)
    assert store.claim_due(10, LEASE_MS, queue="mail") == []


def test_a_paused_queue_gives_nothing_and_shows_no_due_time(store: Store, db: TestDatabase) -> None:
    add_queue(db, store, "held")
    enqueue_in(store, "held", URL, 2)
    set_paused(db, "held", True)

    assert store.claim_queue("held", 10, LEASE_MS).tasks == []
    assert store.claim_queue("held", 10, LEASE_MS, limited=False).tasks == []
    [held] = [q for q in store.dispatch_state().queues if q.name == "held"]
    assert (held.paused, held.next_due) == (True, None)

    set_paused(db, "held", False)
    assert len(store.claim_queue("held", 10, LEASE_MS).tasks) == 2


def test_dispatch_state_reads_every_queue_with_its_config_and_due_time(
    store: Store, db: TestDatabase
) -> None:
    add_queue(db, store, "b-slow", select_size=7, max_dispatches_per_second=3)
    add_queue(db, store, "a-idle")
    enqueue_in(store, "b-slow", URL, 1)

    state = store.dispatch_state()
    by_name = {q.name: q for q in state.queues}
    assert list(by_name) == ["a-idle", "b-slow", "default"]
    assert by_name["b-slow"].config.select_size == 7
    assert by_name["b-slow"].config.max_dispatches_per_second == 3
    assert by_name["a-idle"].next_due is None
    assert state.due_in_s_of(by_name["b-slow"]) <= 0
    assert state.config == store.get_config()


def test_max_concurrent_dispatches_counts_the_queues_running_tasks(
    store: Store, db: TestDatabase
) -> None:
    add_queue(db, store, "narrow", max_concurrent_dispatches=3)
    enqueue_in(store, "narrow", URL, 10)
    enqueue_in(store, "default", URL, 5)
    store.claim_due(5, LEASE_MS)  # running in another queue: not counted

    first = store.claim_queue("narrow", 10, LEASE_MS)
    assert (len(first.tasks), first.limited_by) == (3, "concurrency")
    again = store.claim_queue("narrow", 10, LEASE_MS)
    assert (again.tasks, again.limited_by) == ([], "concurrency")

    done = first.tasks[0]
    store.record_outcomes(
        [RecordedOutcome(done.id, done.attempt, DeliveryOutcome(ok=True, status_code=200), None)]
    )
    assert len(store.claim_queue("narrow", 10, LEASE_MS).tasks) == 1


def test_max_dispatches_per_second_takes_tokens_from_the_bucket_in_the_database(
    store: Store, db: TestDatabase, settings: Settings
) -> None:
    # 10 per second: the bucket holds 1 token, shared by every dispatcher's store.
    add_queue(db, store, "metered", max_dispatches_per_second=10)
    enqueue_in(store, "metered", URL, 20)
    other = open_store(settings.database_url, pool_size=1)
    try:
        first = store.claim_queue("metered", 20, LEASE_MS)
        assert len(first.tasks) == 1  # a full bucket: one token, never a burst of 20
        assert first.limited_by == "rate"
        again = other.claim_queue("metered", 20, LEASE_MS)
        assert len(again.tasks) <= 1  # at most the token grown since (100 ms for one)
        assert again.wait_s is not None and 0 < again.wait_s <= 0.1
    finally:
        other.close()


@pytest.mark.parametrize("limit", ["max_dispatches_per_second", "max_concurrent_dispatches"])
def test_a_limited_claim_of_a_paused_queue_gives_nothing(
    store: Store, db: TestDatabase, limit: str
) -> None:
    add_queue(db, store, "both", **{limit: 5})
    enqueue_in(store, "both", URL, 3)
    set_paused(db, "both", True)
    claim = store.claim_queue("both", 10, LEASE_MS)
    assert (claim.tasks, claim.limited_by) == ([], None)

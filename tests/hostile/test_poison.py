"""One task's outcome never disturbs another's (SPEC "The queue semantics"): whatever a
receiver answers, the tasks delivered beside it are recorded correctly, each called once.

Outcomes are written together, one statement per batch; a batch the database refuses for
one row's data is written again row by row, and a row refused on its own is stored without
the text the database would not take, so its task still moves on.
"""

from __future__ import annotations

import pytest

from scheduler_core.models import DeliveryOutcome, NewTask, RecordedOutcome, RetryDecision
from scheduler_core.store.sql_store import UNSTORABLE_ERROR
from tests.conftest import set_config
from tests.dispatch.helpers import attempts, enqueue, task


@pytest.mark.parametrize("body", [b"bad\x00byte", b"\xff\xfe\x00\x00", b"\x00" * 70_000])
def test_a_receiver_answering_nul_bytes_spoils_nothing_for_its_neighbours(
    client, dispatcher, receiver, store, body
):
    set_config(store, select_size=10)
    receiver.behave("/nul", statuses=[500], body=body)
    poisoned = enqueue(client, receiver.url("/nul"))
    fine = [enqueue(client, receiver.url(f"/ok{n}")) for n in range(5)]

    dispatcher.tick()
    dispatcher.tick()  # a second tick would call again anything left running or lost

    for n, created in enumerate(fine):
        after = task(client, created["id"])
        assert (after["status"], after["attempts"], after["lastStatusCode"]) == ("resolved", 1, 200)
        assert len(receiver.calls(f"/ok{n}")) == 1
    after = task(client, poisoned["id"])
    assert (after["status"], after["attempts"], after["lastStatusCode"]) == ("pending", 1, 500)
    assert after["lastError"].startswith("HTTP 500: ")
    assert "\x00" not in after["lastError"] and after["lastError"].isprintable()
    assert "lease expired" not in after["lastError"]
    [record] = attempts(client, poisoned["id"])
    assert (record["outcome"], record["error"]) == ("failed", after["lastError"])


def test_a_row_the_database_refuses_is_stored_without_its_text_and_the_rest_as_they_are(store, db):
    """Below the judgement, which never lets a NUL through: the store's own fallback."""
    created = [t for t, _ in store.enqueue([NewTask(webhook_url="http://127.0.0.1:9/x")] * 4)]
    claimed = {t.id: t for t in store.claim_due(10, 60_000)}
    assert set(claimed) == {t.id for t in created}
    bad, *good = created
    outcomes = [
        RecordedOutcome(
            bad.id,
            1,
            DeliveryOutcome(ok=False, status_code=500, error="bad\x00byte"),
            RetryDecision(0),
            lateness_ms=3,
        )
    ] + [
        RecordedOutcome(t.id, 1, DeliveryOutcome(ok=True, status_code=200), None, lateness_ms=2)
        for t in good
    ]
    store.record_outcomes(outcomes)

    for t in good:
        after = store.get(t.id)
        assert after is not None and after.status.value == "resolved"
        [attempt] = store.attempts(t.id) or []
        assert (attempt.outcome.value, attempt.lateness_ms) == ("resolved", 2)
    refused = store.get(bad.id)
    assert refused is not None and refused.status.value == "pending"
    if db.dialect == "postgresql":  # PostgreSQL text cannot hold NUL
        assert refused.last_error == UNSTORABLE_ERROR
    else:  # SQLite takes it (and reads it back cut at the NUL)
        assert (refused.last_error or "").startswith("bad")

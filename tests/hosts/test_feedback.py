"""What the dispatcher's host feedback (dispatcher/backpressure.py) hands to the store,
with a fake store: which answers throttle a host and which count as its successes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from scheduler_core.dispatcher.backpressure import HostFeedback
from scheduler_core.models import ClaimedTask, DeliveryOutcome, RecordedOutcome, RetryDecision
from scheduler_core.runtime_config import RuntimeConfig

HOST = "127.0.0.1:8001"


class FakeStore:
    def __init__(self) -> None:
        self.throttles: dict[str, tuple[int, int]] = {}
        self.successes: set[str] = set()
        self.holds: list[tuple[str, float]] = []

    def known_hosts(self) -> frozenset[str]:
        return frozenset({HOST})

    def hold_host_locally(self, host: str, seconds: float) -> None:
        self.holds.append((host, seconds))

    def record_host_feedback(
        self, throttles: Mapping[str, tuple[int, int]], successes: Collection[str]
    ) -> None:
        self.throttles.update(throttles)
        self.successes |= set(successes)


def _task() -> ClaimedTask:
    return ClaimedTask(
        id="t",
        webhook_url=f"http://{HOST}/x",
        webhook_auth=None,
        execute_at=datetime.now(UTC),
        payload_json="null",
        attempt=1,
        attempts_in_budget=1,
        max_retries=None,
        target_host=HOST,
    )


def _feed(outcome: DeliveryOutcome, decision: RetryDecision | None) -> FakeStore:
    store = FakeStore()
    feedback = HostFeedback(store)  # type: ignore[arg-type]
    feedback.note(_task(), RecordedOutcome("t", 1, outcome, decision), RuntimeConfig())
    assert feedback.flush(timeout=10)
    feedback.close(timeout=10)
    return store


def test_a_resolved_answer_is_a_success_of_a_throttled_host() -> None:
    store = _feed(DeliveryOutcome(ok=True, status_code=200), None)
    assert store.successes == {HOST} and store.throttles == {}


def test_a_202_waiting_for_its_completion_url_is_no_success_yet() -> None:
    # Accepted for later is not resolved: it must not raise a struggling host's limits.
    store = _feed(DeliveryOutcome(ok=True, status_code=202, async_timeout_s=600), None)
    assert store.successes == set() and store.throttles == {}


def test_a_429_blocks_the_host_for_its_retry_after() -> None:
    outcome: Any = DeliveryOutcome(ok=False, status_code=429, retry_after_ms=2000)
    store = _feed(outcome, RetryDecision(2000))
    assert store.throttles == {HOST: (2000, 1)}
    assert store.holds and store.holds[0][0] == HOST

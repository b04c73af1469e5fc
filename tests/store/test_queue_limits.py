"""The token bucket and the concurrency limit of a queue, as numbers (queue_limits.py)."""

from __future__ import annotations

import pytest

from scheduler_core.store.queue_limits import bucket_capacity, grant, tokens_now


@pytest.mark.parametrize(
    ("rate", "capacity"), [(1, 1.0), (19, 1.0), (20, 1.0), (50, 2.5), (100_000, 5_000.0)]
)
def test_the_bucket_holds_a_twentieth_of_a_second_of_the_rate_and_at_least_one(
    rate: int, capacity: float
) -> None:
    assert bucket_capacity(rate) == capacity


def test_tokens_refill_at_the_rate_up_to_the_capacity() -> None:
    assert tokens_now(0.0, 0.02, 50) == pytest.approx(1.0)
    assert tokens_now(0.5, 0.03, 50) == pytest.approx(2.0)
    assert tokens_now(0.0, 3600.0, 50) == 2.5
    assert tokens_now(2.0, -1.0, 50) == 2.0  # a clock read before the last holder's


def test_no_limit_grants_all_that_is_wanted() -> None:
    assert grant(100, rate=0, tokens=0.0, concurrency=0, running=500).count == 100


def test_the_rate_grants_whole_tokens_and_says_when_the_next_one_comes() -> None:
    allowed = grant(100, rate=50, tokens=2.5, concurrency=0, running=0)
    assert (allowed.count, allowed.limited_by) == (2, "rate")
    assert allowed.wait_s == pytest.approx(0.01)  # half a token at 50/s
    empty = grant(10, rate=4, tokens=0.0, concurrency=0, running=0)
    assert (empty.count, empty.wait_s) == (0, pytest.approx(0.25))


def test_concurrency_grants_the_room_left() -> None:
    allowed = grant(10, rate=0, tokens=0.0, concurrency=4, running=3)
    assert (allowed.count, allowed.limited_by, allowed.wait_s) == (1, "concurrency", None)
    assert grant(10, rate=0, tokens=0.0, concurrency=4, running=9).count == 0


def test_the_tighter_limit_wins() -> None:
    assert grant(10, rate=50, tokens=2.5, concurrency=1, running=0).count == 1
    assert grant(10, rate=50, tokens=1.2, concurrency=8, running=0).count == 1
    assert grant(2, rate=50, tokens=2.5, concurrency=8, running=0).limited_by is None

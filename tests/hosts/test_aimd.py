"""The AIMD arithmetic of per-host backpressure (store/host_limits.py)."""

from __future__ import annotations

from scheduler_core.store.host_limits import (
    DEFAULT_BLOCK_MS,
    FORGET_AT,
    MIN_RATE,
    HostLimits,
    block_ms,
    forgotten,
    halved,
    host_tokens,
    raised,
)


def test_a_first_throttling_halves_what_was_running_and_observed() -> None:
    assert halved(None, running=9, observed_per_second=40.0) == HostLimits(4, 20.0)
    assert halved(None, running=0, observed_per_second=0.0) == HostLimits(1, MIN_RATE)


def test_a_later_throttling_halves_the_limits_never_below_one() -> None:
    assert halved(HostLimits(8, 10.0), running=50, observed_per_second=99.0) == HostLimits(4, 5.0)
    assert halved(HostLimits(1, 1.0), running=0, observed_per_second=0.0) == HostLimits(1, MIN_RATE)
    assert halved(HostLimits(3, 1.5), running=0, observed_per_second=0.0) == HostLimits(1, 1.0)


def test_recovery_adds_one_and_forgets_high_limits() -> None:
    assert raised(HostLimits(1, 1.0)) == HostLimits(2, 2.0)
    assert not forgotten(HostLimits(FORGET_AT, FORGET_AT - 1))
    assert forgotten(raised(HostLimits(FORGET_AT - 1, FORGET_AT - 1)))


def test_the_block_is_retry_after_else_the_retry_delay_capped() -> None:
    assert block_ms(2000, 50, cap_ms=60_000) == 2000
    assert block_ms(None, 50, cap_ms=60_000) == 50  # the task's own retry delay
    assert block_ms(None, None, cap_ms=60_000) == DEFAULT_BLOCK_MS
    assert block_ms(3_600_000, None, cap_ms=60_000) == 60_000
    assert block_ms(-5, None, cap_ms=60_000) == 0


def test_the_host_bucket_refills_to_at_most_one_start_at_low_rates() -> None:
    assert host_tokens(0.0, 0.5, rate=1.0) == 0.5
    assert host_tokens(0.0, 10.0, rate=1.0) == 1.0
    assert host_tokens(1.0, -3.0, rate=2.0) == 1.0  # before the block ends: nothing added
    assert host_tokens(0.0, 1.0, rate=100.0) == 5.0  # a twentieth of a second of the rate

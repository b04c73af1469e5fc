"""Per-host backpressure arithmetic (AIMD), kept apart from SQL so it can be read and
tested alone.

SPEC.md, "Delivery rules": after a 429 or 503 from a host, its concurrency and start rate
are halved and its tasks wait for the answer's Retry-After; on success they recover step
by step. A host's state is one row of `scheduler_hosts`, shared by every dispatcher; a
host never throttled has no row.

- Decrease (each throttling answer): `max_concurrent = max(1, floor(current / 2))`, where
  current is the old limit, or, for a host with no limit yet, its running tasks at that
  moment (at least 1); `max_per_second = max(MIN_RATE, current_rate / 2)`, where
  current_rate is the old limit or, with none, the starts observed to the host over the
  last OBSERVED_RATE_WINDOW_S seconds (at least MIN_RATE).
- Increase (each RECOVERY_STEP_S second of the host's time in which it resolved at least
  one task): `max_concurrent + 1` and `max_per_second + 1`.
- Forget: once both limits reach FORGET_AT and the host is not blocked, the row is
  deleted: the host is unlimited again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

# A throttled host keeps at least this start rate (per second) after its block.
MIN_RATE = 1.0
# The starts observed over this window (seconds) are the first rate a host is halved from.
OBSERVED_RATE_WINDOW_S = 5.0
# At most one additive step per host per this many seconds.
RECOVERY_STEP_S = 1.0
# Limits at or above this are no use any more: the host's row goes.
FORGET_AT = 32
# The block after a 429/503 answer with no Retry-After and no retry delay (ms).
DEFAULT_BLOCK_MS = 1000


@dataclass(frozen=True)
class HostLimits:
    """A host's limits: at most `max_concurrent` tasks running, `max_per_second` starts."""

    max_concurrent: int
    max_per_second: float


def halved(old: HostLimits | None, running: int, observed_per_second: float) -> HostLimits:
    """The limits after a throttling answer: `old` halved, or, for a host without limits,
    its `running` tasks and `observed_per_second` start rate halved."""
    concurrency = old.max_concurrent if old is not None else max(1, running)
    rate = old.max_per_second if old is not None else max(MIN_RATE, observed_per_second)
    return HostLimits(max(1, math.floor(concurrency / 2)), max(MIN_RATE, rate / 2))


def raised(old: HostLimits) -> HostLimits:
    """The limits after one recovery step: one more of each."""
    return HostLimits(old.max_concurrent + 1, old.max_per_second + 1.0)


def forgotten(limits: HostLimits) -> bool:
    """Whether limits this high are no use any more (the row may go)."""
    return limits.max_concurrent >= FORGET_AT and limits.max_per_second >= FORGET_AT


def block_ms(retry_after_ms: int | None, fallback_ms: int | None, cap_ms: int) -> int:
    """How long a host is blocked after a throttling answer: its Retry-After (ms); without
    one, `fallback_ms` (the delay the retry policy gave the task, so the host waits as the
    task does), DEFAULT_BLOCK_MS when that is None too; at most `cap_ms` (the queue's
    retry_backoff_max_ms)."""
    wanted = retry_after_ms if retry_after_ms is not None else fallback_ms
    if wanted is None:
        wanted = DEFAULT_BLOCK_MS
    return min(max(0, wanted), max(0, cap_ms))


# The host's bucket holds at most this many seconds of its rate (at least one start), as
# a queue's does (queue_limits.py): no burst after a quiet spell.
BURST_S = 0.05


def host_tokens(stored: float, elapsed_s: float, rate: float) -> float:
    """The host bucket's tokens `elapsed_s` seconds after it held `stored`, refilled at
    `rate` per second up to max(1, rate * BURST_S). A negative elapsed time (the bucket
    starts when the block ends) adds nothing."""
    return min(max(1.0, rate * BURST_S), stored + max(0.0, elapsed_s) * rate)


@dataclass(frozen=True)
class HostInfo:
    """A throttled host as /metrics, `GET /api/v1/hosts` and the dashboard show it:
    seconds left blocked (0.0 when not blocked), its limits, how many 429/503 answers it
    gave in all, and when its row last changed (UTC)."""

    host: str
    blocked_s: float
    blocked_until: datetime
    max_concurrent: int | None
    max_per_second: float | None
    throttled_total: int
    updated_at: datetime

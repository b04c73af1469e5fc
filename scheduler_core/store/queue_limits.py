"""A queue's limits across every dispatcher, decided inside the claim's transaction.

SPEC.md, "Runtime configuration": `max_dispatches_per_second` is a token bucket kept in
the queue's config row (tokens left and when they were counted), and
`max_concurrent_dispatches` bounds the queue's tasks in flight (`running`). A claim in a
limited queue takes the row's lock first (PostgreSQL `FOR UPDATE`; SQLite's write
transaction holds the whole file), so the claims of all dispatchers in that queue run one
after another, each seeing the tokens and the running tasks the one before left.

The bucket holds at most a twentieth of a second of starts (at least one): after a quiet
spell a queue starts no burst bigger than that, so any one-second window sees at most
rate + rate/20 starts, and a busy queue sees the rate itself. (A bigger bucket lets the
first second after a quiet spell overshoot; a smaller one loses tokens whenever every
dispatcher comes back a few milliseconds late.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The bucket's capacity, in seconds of the rate.
BURST_S = 0.05


def bucket_capacity(rate: int) -> float:
    """Most tokens a bucket of `rate` per second holds: BURST_S of the rate, at least 1."""
    return max(1.0, rate * BURST_S)


@dataclass(frozen=True)
class Grant:
    """How many tasks a claim may take now, and, when a limit holds some back, how long
    until the next may start (seconds) and which limit it is."""

    count: int
    wait_s: float | None = None
    limited_by: str | None = None


def tokens_now(stored: float, elapsed_s: float, rate: int) -> float:
    """The bucket's tokens `elapsed_s` seconds after it held `stored`, refilled at
    `rate` per second up to its capacity. A negative elapsed time (a clock read before
    the last holder's) adds nothing."""
    return min(bucket_capacity(rate), stored + max(0.0, elapsed_s) * rate)


def grant(
    wanted: int,
    *,
    rate: int,
    tokens: float,
    concurrency: int,
    running: int,
) -> Grant:
    """How many of `wanted` tasks may start now under a rate of `rate` per second with
    `tokens` in the bucket (rate 0: no rate limit) and at most `concurrency` in flight
    with `running` in flight now (concurrency 0: no limit)."""
    count, wait_s, limited_by = wanted, None, None
    if concurrency:
        room = max(0, concurrency - running)
        if room < count:
            count, limited_by = room, "concurrency"
    if rate:
        whole = max(0, math.floor(tokens + 1e-9))
        if whole < count:
            count, limited_by = whole, "rate"
            wait_s = max(0.0, (1.0 - (tokens - whole)) / rate)
    return Grant(count, wait_s, limited_by)

"""Small statistics and pacing helpers shared by the benchmarks."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of values sorted ascending: a value that was measured."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


LATE_MS = 50.0


def summarize_ms(values_ms: Sequence[float]) -> dict[str, Any]:
    """n, min, p50, p99, max and how many exceed LATE_MS; None where there is no value."""
    ordered = sorted(values_ms)
    if not ordered:
        empty: dict[str, Any] = {"min_ms": None, "p50_ms": None, "p99_ms": None, "max_ms": None}
        return {"n": 0, **empty, "over_50ms": 0}
    return {
        "n": len(ordered),
        "min_ms": ordered[0],
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1],
        "over_50ms": sum(1 for v in ordered if v > LATE_MS),
    }


def paced(count: int, rate: float) -> Iterator[tuple[int, float]]:
    """Yield (i, lag_s) `count` times at `rate` per second on a monotonic schedule: the
    i-th yield is due at start + i / rate, however long the caller took in between; lag_s
    says how late it came (0 when the caller kept up)."""
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield i, max(0.0, time.monotonic() - due)

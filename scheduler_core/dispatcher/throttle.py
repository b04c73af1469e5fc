"""The throttle: how many callbacks may start now.

SPEC.md, "The queue semantics": per dispatcher (and queue), never more than `select_size`
callbacks started within any `base_interval_ms` window, and never more than `select_size`
in flight. Start times are kept in a sliding window on the monotonic clock, so stepping
the wall clock neither stalls nor hurries anything.

A callback is claimed first (`reserve`: it counts at once) and starts a moment later on its
delivery thread (`begin`: its start is stamped then). The window is measured between real
starts, so a thread that began late never lets the next window's starts come too close.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class Throttle:
    def __init__(
        self, limit: int = 1, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ):
        self._clock = clock
        self._lock = threading.Lock()
        self._starts: deque[float] = deque()
        self._reserved = 0  # claimed, not begun yet
        self._in_flight = 0
        self.limit = limit
        self.window_s = window_s

    def configure(self, limit: int, window_s: float) -> None:
        """Apply a new select_size and base_interval_ms (in seconds) from now on."""
        with self._lock:
            self.limit, self.window_s = limit, window_s

    def available(self) -> int:
        """How many callbacks may start right now."""
        with self._lock:
            self._forget_old(self._clock())
            started = len(self._starts) + self._reserved
            return max(0, min(self.limit - started, self.limit - self._in_flight))

    def reserve(self, count: int = 1) -> None:
        """`count` callbacks were claimed and are about to begin."""
        with self._lock:
            self._reserved += count
            self._in_flight += count

    def begin(self) -> None:
        """A reserved callback begins now."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
            self._starts.append(self._clock())

    def started(self, count: int = 1) -> None:
        """`count` callbacks are claimed and begin now."""
        for _ in range(count):
            self.reserve()
            self.begin()

    def finished(self, count: int = 1) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - count)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def next_opening(self) -> float | None:
        """When (clock time) the window next lets a start through, if the window is what
        holds starts back now; None if it is not (in-flight callbacks end on their own)."""
        with self._lock:
            self._forget_old(self._clock())
            if len(self._starts) + self._reserved < self.limit or self._reserved:
                return None  # not the window: reserved ones begin, or in-flight ones end
            # The start that must leave the window for one more to fit.
            return self._starts[len(self._starts) - self.limit] + self.window_s

    def _forget_old(self, now: float) -> None:
        horizon = now - self.window_s
        while self._starts and self._starts[0] <= horizon:
            self._starts.popleft()

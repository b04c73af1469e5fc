"""A test plugin that wraps every attempt, as metrics or tracing would: it records when each
attempt started and ended (time.monotonic()) and what it came to."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass

import scheduler_core
from scheduler_core.models import ClaimedTask, RecordedOutcome


@dataclass(frozen=True)
class Seen:
    task_id: str
    attempt: int
    claimed: float  # when the claim returned
    started: float
    ended: float
    recorded: RecordedOutcome


class AttemptRecorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[Seen] = []

    @scheduler_core.hookimpl(wrapper=True)
    def scheduler_run_attempt(
        self, task: ClaimedTask
    ) -> Generator[None, RecordedOutcome, RecordedOutcome]:
        started = time.monotonic()
        recorded = yield
        with self._lock:
            self.seen.append(
                Seen(
                    task.id,
                    task.attempt,
                    task.claimed_monotonic,
                    started,
                    time.monotonic(),
                    recorded,
                )
            )
        return recorded

    def starts(self) -> list[float]:
        with self._lock:
            return sorted(s.started for s in self.seen)

    def most_at_once(self) -> int:
        """The largest number of attempts in flight at one moment."""
        with self._lock:
            events = [(s.started, 1) for s in self.seen] + [(s.ended, -1) for s in self.seen]
        running = peak = 0
        for _, change in sorted(events, key=lambda e: (e[0], e[1])):
            running += change
            peak = max(peak, running)
        return peak

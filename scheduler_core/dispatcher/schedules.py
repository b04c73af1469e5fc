"""Schedules' fires, in every dispatcher: enqueue each schedule's due fire time once.

(Skeleton: filled in with schedules.)
"""

from __future__ import annotations

from scheduler_core.store.base import Store


class ScheduleFirer:
    """Fires due schedules on its own thread while started; `fire_once` for tick()."""

    def __init__(self, store: Store):
        self.store = store

    def start(self) -> None:
        pass

    def fire_once(self) -> int:
        """Enqueue every due fire now; return how many tasks were enqueued."""
        return 0

    def close(self) -> None:
        pass

"""Schedules' fires, in every dispatcher: enqueue each schedule's due fire time once.

A thread of its own fires what is due (`Store.fire_due_schedules`), then sleeps until
the earliest next fire time by the database clock, measured on the monotonic clock and
never longer than REFRESH_S, so a stepped wall clock, a schedule created elsewhere or a
notice that was lost is seen within a second. A schedule change in this process, a
PostgreSQL NOTIFY or a change to a SQLite file seen by another process wakes it at once.
Any number of dispatchers may fire at once: each fire is one transaction that locks the
schedule and enqueues with the fire's idempotency key, so a fire is enqueued once.
An error (the database down, say) is logged and the round is tried again after a
backoff; the thread never dies of it.
"""

from __future__ import annotations

import logging
import threading
import time

from scheduler_core.store.base import Store, StoreUnavailable
from scheduler_core.store.changes import Watch

log = logging.getLogger(__name__)

# The longest sleep: the earliest fire time is read again at least this often.
REFRESH_S = 1.0
# Notices come with every enqueue on a busy database: rounds are at least this far apart.
MIN_ROUND_GAP_S = 0.05
FIRST_ERROR_BACKOFF_S = 1.0  # doubling per failed round in a row, up to the maximum
MAX_ERROR_BACKOFF_S = 10.0
# The notices that may change what is due: a schedule written (here or, on PostgreSQL,
# elsewhere), and "something changed" (SQLite's other processes, a listener reconnected).
WAKING_NOTICES = frozenset({"schedule", "unknown"})


class ScheduleFirer:
    """Fires due schedules on its own thread while started; `fire_once` for tick()."""

    def __init__(self, store: Store, *, watch: bool = True):
        """With `watch`, it watches the store for notices itself; without, its owner (the
        Dispatcher, whose watch already hears every notice) passes them to `notice`, so a
        dispatcher holds one LISTEN connection, not two."""
        self.store = store
        self._own_watch = watch
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Watch | None = None
        self._error_streak = 0
        self.first_backoff_s = FIRST_ERROR_BACKOFF_S

    def start(self) -> None:
        self._stopping.clear()
        if self._own_watch:
            self._watch = self.store.watch(self.notice)
        self._thread = threading.Thread(target=self._loop, name="schedule-firer", daemon=True)
        self._thread.start()

    def fire_once(self) -> int:
        """Enqueue every due fire now; return how many tasks were enqueued."""
        return len(self.store.fire_due_schedules())

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def notice(self, kind: str) -> None:
        """A store notice of `kind`: wake at once when it may change what is due."""
        if kind in WAKING_NOTICES:
            self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            started = time.monotonic()
            try:
                sleep_s = self._round()
                self._error_streak = 0
            except Exception as exc:
                self._error_streak += 1
                backoff = min(
                    self.first_backoff_s * 2.0 ** (self._error_streak - 1), MAX_ERROR_BACKOFF_S
                )
                if isinstance(exc, StoreUnavailable):
                    log.error("schedules: database unavailable (%s); again in %.1fs", exc, backoff)
                else:
                    log.exception("schedules: firing failed; trying again in %.1fs", backoff)
                self._stopping.wait(backoff)
                continue
            self._wake.wait(sleep_s)
            # A burst of notices: wait out the rest of the minimum gap (monotonic).
            rest = MIN_ROUND_GAP_S - (time.monotonic() - started)
            if rest > 0 and not self._stopping.is_set():
                self._stopping.wait(rest)

    def _round(self) -> float:
        """Fire what is due; return how long to sleep until the next fire time."""
        self.fire_once()
        read_at = time.monotonic()
        due_in = self.store.schedule_due_in_s()
        wait = REFRESH_S if due_in is None else min(REFRESH_S, max(due_in, 0.0))
        return max(0.0, read_at + wait - time.monotonic())

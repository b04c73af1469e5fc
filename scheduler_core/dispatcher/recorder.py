"""The outcome recorder: outcomes written to the store together, on a thread of their own.

Outcomes queue up while a write is under way and go in the next one, so under load one
statement stores many. Through a database outage a batch is retried while the leases of
its tasks hold (the last try just before the first of them runs out); once a lease has run
out the task is someone else's and will be delivered again, which at-least-once allows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from scheduler_core.models import RecordedOutcome
from scheduler_core.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# The last write of an outcome starts at least this long before its lease runs out.
RECORD_MARGIN_S = 0.5
MAX_RETRY_PAUSE_S = 2.0


@dataclass(frozen=True)
class _Entry:
    recorded: RecordedOutcome
    lease_ends: float  # time.monotonic() when the task's lease runs out
    on_stored: Callable[[], None] | None


class OutcomeRecorder:
    def __init__(self, store: Store):
        self._store = store
        self._cond = threading.Condition()
        self._pending: list[_Entry] = []
        self._writing = False
        self._held = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(
        self,
        recorded: RecordedOutcome,
        lease_ends: float,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        """Queue an outcome; `lease_ends` is time.monotonic() when its lease runs out.
        `on_stored` is called once the outcome is written, or given up."""
        with self._cond:
            self._pending.append(_Entry(recorded, lease_ends, on_stored))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="record", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def hold(self) -> None:
        """Keep outcomes queued until `release()` (a synchronous tick's, so that a task
        that failed is not claimed again within the same tick)."""
        with self._cond:
            self._held += 1

    def release(self) -> None:
        with self._cond:
            self._held -= 1
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued outcome is written (or given up); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._writing, timeout)

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while (not self._pending or self._held) and not self._closed:
                    self._cond.wait()
                if self._closed and not self._pending:
                    self._thread = None
                    return
                batch = self._pending[:BATCH_SIZE]
                del self._pending[:BATCH_SIZE]
                self._writing = True
            try:
                self._write(batch)
            finally:
                for entry in batch:
                    if entry.on_stored is not None:
                        entry.on_stored()
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

    def _write(self, batch: list[_Entry]) -> None:
        pause = 0.1
        while batch:
            try:
                self._store.record_outcomes([entry.recorded for entry in batch])
                return
            except StoreUnavailable as exc:
                now = time.monotonic()
                live = [e for e in batch if e.lease_ends - RECORD_MARGIN_S > now]
                if len(live) < len(batch):
                    log.error(
                        "could not record %d outcomes before their leases ran out (%s); "
                        "those tasks will be delivered again",
                        len(batch) - len(live),
                        exc,
                    )
                batch = live
                if not batch:
                    return
                wait = min(pause, min(e.lease_ends for e in batch) - RECORD_MARGIN_S - now)
                log.warning("recording outcomes failed (%s); retrying in %.2fs", exc, wait)
                time.sleep(max(wait, 0.0))
                pause = min(pause * 2, MAX_RETRY_PAUSE_S)
            except Exception:  # a bug; the leases will expire and the tasks be redelivered
                log.exception("recording %d outcomes failed", len(batch))
                return

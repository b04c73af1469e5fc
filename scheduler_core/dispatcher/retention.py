"""Retention: resolved and cancelled tasks are deleted `retention_hours` after their last
change, in small batches, on a thread of its own so deliveries never wait for it.

A full batch means more is left: the next follows after a short pause (other writers get
the database in between). A partial one means all is done until the next round,
`every_s` later.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0
PURGE_BATCH = 500
PAUSE_BETWEEN_BATCHES_S = 0.05
RETRY_AFTER_ERROR_S = 5.0


class Retention:
    def __init__(self, store: Store, every_s: float = PURGE_EVERY_S, batch: int = PURGE_BATCH):
        self.store = store
        self.every_s = every_s
        self.batch = batch
        self._last_round = -math.inf  # the first purge comes at once, however young the clock
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def maybe_purge(self, config: RuntimeConfig) -> int:
        """One batch if a round is due (or the last batch was full); the count deleted."""
        now = time.monotonic()
        if now - self._last_round < self.every_s:
            return 0
        deleted = self.store.purge_expired(config.retention_hours, self.batch)
        if deleted < self.batch:  # all done: the next round waits its interval
            self._last_round = now
            forgotten = self.store.forget_idle_hosts()
            if forgotten:
                log.info("backpressure: forgot %d idle hosts (unlimited again)", forgotten)
        if deleted:
            log.info(
                "retention: deleted %d finished tasks older than %d h",
                deleted,
                config.retention_hours,
            )
        return deleted

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        delay = 0.0
        while not self._closed.wait(delay):
            try:
                deleted = self.maybe_purge(self.store.get_config())
            except StoreUnavailable as exc:
                log.warning("retention purge postponed: %s", exc)
                delay = RETRY_AFTER_ERROR_S
                continue
            except Exception:
                log.exception("retention purge failed; trying again later")
                delay = self.every_s
                continue
            if deleted >= self.batch:
                delay = PAUSE_BETWEEN_BATCHES_S
            else:
                next_round = self._last_round + self.every_s - time.monotonic()
                delay = max(next_round, PAUSE_BETWEEN_BATCHES_S)

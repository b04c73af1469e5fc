"""Per-host backpressure, the dispatcher's side: judged outcomes in, host feedback out.

The loop hands every finished attempt to `HostFeedback.note` (on the delivery thread: a
dict update, no I/O). A 429 or 503 holds the host in this process's claims at once and
wakes the feedback thread, which stores it straight away (other dispatchers see it at
their next claim); successes of throttled hosts are gathered and stored at most every
SUCCESS_FLUSH_S, in one transaction. Hosts never throttled cost nothing: their successes
are not even kept.
"""

from __future__ import annotations

import logging
import threading
import time

from scheduler_core.models import ClaimedTask, RecordedOutcome
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store.base import Store
from scheduler_core.store.host_limits import block_ms

log = logging.getLogger(__name__)

# Answers that throttle their host (SPEC.md, "Delivery rules").
THROTTLING_STATUSES = frozenset({429, 503})
# Successes of throttled hosts are stored at most this often (seconds).
SUCCESS_FLUSH_S = 0.5
# A local hold lasts at most this long when its feedback cannot be stored (seconds).
MAX_LOCAL_HOLD_S = 60.0


class HostFeedback:
    def __init__(self, store: Store):
        self._store = store
        self._cond = threading.Condition()
        self._throttles: dict[str, tuple[int, int]] = {}
        self._successes: set[str] = set()
        self._writing = False
        self._closed = False
        self._last_success_write = 0.0
        self._thread: threading.Thread | None = None

    def note(self, task: ClaimedTask, recorded: RecordedOutcome, config: RuntimeConfig) -> None:
        """One finished attempt of `task`, as judged and decided."""
        host = task.target_host
        if host is None or recorded.lost:
            return
        outcome = recorded.outcome
        if not outcome.ok and outcome.status_code in THROTTLING_STATUSES:
            retry_in = recorded.decision.retry_in_ms if recorded.decision is not None else None
            wait_ms = block_ms(outcome.retry_after_ms, retry_in, config.retry_backoff_max_ms)
            self._store.hold_host_locally(host, min(wait_ms / 1000, MAX_LOCAL_HOLD_S))
            with self._cond:
                old_ms, answers = self._throttles.get(host, (0, 0))
                self._throttles[host] = (max(old_ms, wait_ms), answers + 1)
                self._start()
                self._cond.notify_all()
        elif (
            recorded.decision is None
            and outcome.async_timeout_s is None  # accepted for later: not resolved yet
            and host in self._store.known_hosts()
        ):
            with self._cond:
                self._successes.add(host)
                self._start()
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Store everything noted so far now; False on timeout."""
        with self._cond:
            self._last_success_write = 0.0  # successes go now too
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: not self._throttles and not self._successes and not self._writing,
                timeout,
            )

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="host-feedback", daemon=True)
            self._thread.start()

    def _due(self) -> bool:
        if self._throttles:
            return True
        return bool(self._successes) and (
            time.monotonic() - self._last_success_write >= SUCCESS_FLUSH_S
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due() and not self._closed:
                    wait = None
                    if self._successes:
                        wait = SUCCESS_FLUSH_S - (time.monotonic() - self._last_success_write)
                    self._cond.wait(wait)
                if self._closed and not self._due():
                    self._thread = None
                    return
                throttles, self._throttles = self._throttles, {}
                successes, self._successes = self._successes, set()
                self._last_success_write = time.monotonic()
                self._writing = True
            try:
                self._store.record_host_feedback(throttles, successes - set(throttles))
                for host, (wait_ms, answers) in sorted(throttles.items()):
                    log.warning(
                        "host %s is throttled (%d 429/503 answers): its tasks wait %d ms, "
                        "its concurrency and start rate are halved",
                        host,
                        answers,
                        wait_ms,
                    )
            except Exception:  # feedback is best effort: the next answers bring more
                log.exception("storing host backpressure for %s failed", sorted(throttles))
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()

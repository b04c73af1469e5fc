"""The delivery runner: a bounded pool of threads, one attempt each, each with its own
deadline.

The dispatcher submits only what has a free thread, so a claimed task starts at once and
never waits for a slot while its lease runs. A plugin that overruns its deadline by
STRAGGLER_GRACE_S is left behind: its attempt is reported as timed out, its slot counts
as free, and a fresh thread takes the next job; the stuck thread ends when (if) the
plugin returns, and what it returns then is dropped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scheduler_core.dispatcher.throttle import Throttle
from scheduler_core.models import ClaimedTask, RecordedOutcome
from scheduler_core.runtime_config import RuntimeConfig

log = logging.getLogger(__name__)

# A plugin that ignores its deadline is given up on this long after it.
STRAGGLER_GRACE_S = 1.0

_ids = itertools.count()


@dataclass(eq=False)
class Job:
    """One attempt to run: the claimed task, its deadline (time.monotonic(); set again when
    the attempt begins on its thread, http_callback_timeout_ms from then), the config it
    was claimed under, and the throttle that counted its start."""

    task: ClaimedTask
    deadline: float
    config: RuntimeConfig
    throttle: Throttle
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def timeout_s(self) -> float:
        return self.config.http_callback_timeout_ms / 1000

    @property
    def lease_ends(self) -> float:
        """time.monotonic() when the task's lease runs out."""
        return self.task.claimed_monotonic + self.config.lease_ms / 1000


class DeliveryRunner:
    def __init__(
        self,
        threads: int,
        run: Callable[[Job], RecordedOutcome],
        abandon: Callable[[Job], RecordedOutcome],
        on_done: Callable[[Job, RecordedOutcome], None],
        grace_s: float = STRAGGLER_GRACE_S,
    ):
        self.threads = threads
        self._run = run
        self._abandon = abandon
        self._on_done = on_done
        self._grace_s = grace_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a job ended
        self._overdue = threading.Condition(self._lock)  # the supervisor's wake-up
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._in_flight: dict[int, Job] = {}
        # (deadline + grace, job id): ids only, so a finished job's payload is not kept
        # until its deadline comes round.
        self._deadlines: list[tuple[float, int]] = []
        self._workers = 0
        self._idle = 0
        self._supervisor: threading.Thread | None = None
        self._closed = False
        # Jobs taken out of _in_flight whose outcome is being handed to on_done: still in
        # flight for in_flight() and the waits, so a synchronous tick never stops before
        # every outcome it started is queued for recording.
        self._reporting = 0

    def free(self) -> int:
        """How many more jobs can start at once."""
        with self._lock:
            return max(0, self.threads - len(self._in_flight))

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight) + self._reporting

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the delivery runner is closed")
            self._in_flight[job.id] = job
            heapq.heappush(self._deadlines, (job.deadline + self._grace_s, job.id))
            if self._idle > 0:
                self._idle -= 1  # this job is that thread's
            else:
                self._workers += 1
                threading.Thread(target=self._work, name="deliver", daemon=True).start()
            if self._supervisor is None:
                self._supervisor = threading.Thread(
                    target=self._supervise, name="deliver-deadlines", daemon=True
                )
                self._supervisor.start()
            self._overdue.notify()
        self._jobs.put(job)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is in flight; False if `timeout` passed first."""
        with self._lock:
            return self._changed.wait_for(
                lambda: not self._in_flight and not self._reporting, timeout
            )

    def wait_change(self, timeout: float) -> None:
        """Wait until a job ends, at most `timeout` seconds."""
        with self._lock:
            if self._in_flight or self._reporting:
                self._changed.wait(timeout)

    def close(self) -> None:
        """Let idle threads end; jobs still in flight finish (or are left behind) first."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
            self._overdue.notify()
        for _ in range(idle):
            self._jobs.put(None)

    # -- threads -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:  # the attempt's own deadline runs from its start, here
                job.deadline = time.monotonic() + job.timeout_s
                heapq.heappush(self._deadlines, (job.deadline + self._grace_s, job.id))
                self._overdue.notify()
            recorded = self._run(job)
            with self._lock:
                # Reported and counted idle in one step: the outcome wakes the loop, whose
                # next job must find this thread idle rather than start one more thread.
                left_behind = self._in_flight.pop(job.id, None) is None
                leaving = left_behind or self._closed
                if leaving:
                    # A replacement took this thread's place when it was left behind.
                    self._workers -= 1
                else:
                    self._idle += 1
                if not left_behind:
                    self._reporting += 1
                    self._changed.notify_all()
            if not left_behind:
                self._report(job, recorded)
            if leaving:
                return

    def _finish(self, job: Job, recorded: RecordedOutcome) -> bool:
        """Report `job`'s outcome once; False if it was already reported (left behind)."""
        with self._lock:
            if self._in_flight.pop(job.id, None) is None:
                return False
            self._reporting += 1
            self._changed.notify_all()
        self._report(job, recorded)
        return True

    def _report(self, job: Job, recorded: RecordedOutcome) -> None:
        """Hand the outcome over, then count the job out of flight."""
        try:
            self._on_done(job, recorded)
        finally:
            with self._lock:
                self._reporting -= 1
                self._changed.notify_all()

    def _supervise(self) -> None:
        while True:
            with self._lock:
                while self._deadlines and self._deadlines[0][1] not in self._in_flight:
                    heapq.heappop(self._deadlines)
                if self._closed and not self._in_flight:
                    self._supervisor = None
                    return
                if not self._deadlines:
                    self._overdue.wait()
                    continue
                wait = self._deadlines[0][0] - time.monotonic()
                if wait > 0:
                    self._overdue.wait(wait)
                    continue
                _, job_id = heapq.heappop(self._deadlines)
                job = self._in_flight[job_id]
                if job.deadline + self._grace_s > time.monotonic():
                    continue  # it began later than it was handed over: a later entry watches
            if self._finish(job, self._abandon(job)):
                log.warning(
                    "task=%s attempt=%d: the delivery plugin overran its deadline by more "
                    "than %.1f s; recorded as timed out, its thread left behind",
                    job.task.id,
                    job.task.attempt,
                    self._grace_s,
                )

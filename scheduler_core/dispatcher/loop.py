"""The dispatcher's loop: wake up, read the state, claim what can start, sleep.

It sleeps on an event, set by whatever may make a task due or change the config: a notice
from the store (an enqueue in this process, PostgreSQL's NOTIFY, SQLite's data_version), a
delivery slot coming free, its own timer for the earliest nextAttemptAt (on the monotonic
clock), and APScheduler's fallback poll every base_interval_ms. At every wake-up it reads
the config and the earliest due time in one query, and it never sleeps longer than
STATE_REFRESH_S, so a config change applies within a second even without a notice.

What to do with a claimed task is the runner's (threads, deadlines), the attempt
pipeline's (build, deliver, judge, decide) and the recorder's (write outcomes together).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler

from scheduler_core.dispatcher.attempt import abandoned
from scheduler_core.dispatcher.backpressure import HostFeedback
from scheduler_core.dispatcher.decision import decide, decide_async_timeout, decide_lost
from scheduler_core.dispatcher.recorder import OutcomeRecorder
from scheduler_core.dispatcher.retention import PURGE_BATCH, PURGE_EVERY_S, Retention
from scheduler_core.dispatcher.runner import STRAGGLER_GRACE_S, DeliveryRunner, Job
from scheduler_core.dispatcher.schedules import ScheduleFirer
from scheduler_core.dispatcher.throttle import Throttle
from scheduler_core.judgement import clean_error
from scheduler_core.models import (
    DEFAULT_QUEUE,
    ClaimedTask,
    DeliveryOutcome,
    DispatchState,
    RecordedOutcome,
)
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.redaction import redact, secrets_of
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.settings import DEFAULT_DELIVERY_THREADS
from scheduler_core.store.base import Store, StoreUnavailable
from scheduler_core.store.changes import Watch

log = logging.getLogger(__name__)

POLL_JOB_ID = "scheduler-core-poll"
# The config and the earliest due time are read at least this often.
STATE_REFRESH_S = 0.5
# Expired leases are looked for at most this often (and at every synchronous tick).
REAP_EVERY_S = 1.0
REAP_BATCH = 1000
# The reaper holds the expired leases it took this long while it records them.
REAP_LEASE_MS = 30_000
# Due tasks that could not be claimed (another dispatcher holds them): look again soon.
CONTENDED_RETRY_S = 0.02
# A queue at its max_concurrent_dispatches: look again this soon (another dispatcher's
# callback ending sends no notice).
LIMIT_RECHECK_S = 0.05
# A dispatcher resumes at most this long after the database is back.
MAX_ERROR_BACKOFF_S = 10.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        plugins: PluginManager,
        *,
        delivery_threads: int = DEFAULT_DELIVERY_THREADS,
        purge_every_s: float = PURGE_EVERY_S,
        purge_batch: int = PURGE_BATCH,
    ):
        self.store = store
        self.plugins = plugins
        plugins.use_store(store)  # its callbacks carry completion URLs signed with its key
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._throttles: dict[str, Throttle] = {DEFAULT_QUEUE: Throttle()}
        self._turn = 0  # where the next round's fair share of queues begins
        self._runner = DeliveryRunner(
            delivery_threads, run=self._run_job, abandon=self._abandon_job, on_done=self._job_done
        )
        self._recorder = OutcomeRecorder(store)
        self._hosts = HostFeedback(store)  # per-host backpressure
        self._retention = Retention(store, purge_every_s, purge_batch)
        self._schedules = ScheduleFirer(store, watch=False)  # hears this loop's notices
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._poll_interval_ms: int | None = None
        self._thread: threading.Thread | None = None
        self._watch: Watch | None = None
        self._last_reap = -float("inf")
        self._error_streak = 0

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Run the loop, the fallback poll and retention in the background."""
        self._watch = self.store.watch(self._notice)
        self._scheduler.start()
        self._retention.start()
        self._schedules.start()
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)
        self._thread.start()
        log.info("dispatcher started")
        log.debug(
            "dispatcher: %d delivery threads, schemes %s",
            self._runner.threads,
            ", ".join(sorted(self.plugins.delivery_schemes())),
        )

    def request_stop(self) -> None:
        """Claim nothing more; safe to call from a signal handler."""
        self._stopping.set()
        self._wake.set()

    def stop(self, wait: bool = True) -> None:
        """Claim nothing more; with `wait`, let deliveries in flight finish (each within
        its callback timeout) and store their outcomes."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
        if wait:
            self._runner.wait_idle()
        self._runner.close()
        self._recorder.close(timeout=None if wait else 0)
        self._hosts.close(timeout=None if wait else 0)
        self._retention.close()
        self._schedules.close()
        if self._watch is not None:
            self._watch.close()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._thread is not None:
            log.info("dispatcher stopped")

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def purge_every_s(self) -> float:
        return self._retention.every_s

    @purge_every_s.setter
    def purge_every_s(self, value: float) -> None:
        self._retention.every_s = value

    @property
    def throttle(self) -> Throttle:
        """The `default` queue's throttle in this process."""
        return self._throttles[DEFAULT_QUEUE]

    def throttle_of(self, queue: str) -> Throttle | None:
        """`queue`'s throttle in this process, once a wake-up has read the queue."""
        return self._throttles.get(queue)

    # -- the loop ------------------------------------------------------------------

    def _notice(self, kind: str) -> None:
        self._wake.set()
        self._schedules.notice(kind)

    def _poll(self) -> None:
        """APScheduler's fallback poll: a wake-up every base_interval_ms."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                sleep_s = self._step()
                self._error_streak = 0
            except Exception as exc:
                self._error_streak += 1
                backoff = min(2.0 ** (self._error_streak - 1), MAX_ERROR_BACKOFF_S)
                if isinstance(exc, StoreUnavailable):
                    log.error("database unavailable (%s); trying again in %.1fs", exc, backoff)
                else:
                    log.exception("dispatcher step failed; trying again in %.1fs", backoff)
                self._stopping.wait(backoff)  # notices would only hammer a database that is down
                continue
            self._wake.wait(sleep_s)

    def _step(self) -> float:
        """Read the state, claim every due task that may start now, queue by queue; return
        how long to sleep. The config is read first at every wake-up, so a claim never
        uses an old one."""
        state = self.store.dispatch_state()
        read_at = time.monotonic()
        self._apply(state)
        if read_at - self._last_reap >= REAP_EVERY_S:
            self._last_reap = read_at
            self._reap(state)
        waits: list[float] = []
        claimed_any = self._claim_round(state, waits)
        if claimed_any:  # the due ones are out: when is the next?
            state = self.store.dispatch_state()
            read_at = time.monotonic()
        return self._sleep_s(state, read_at, waits)

    def _claim_round(self, state: DispatchState, waits: list[float]) -> bool:
        """Claim what may start now in every due queue, fairly: the free delivery threads
        are shared out between the due queues, a turn each, starting one queue further
        along at every round, so a busy queue never starves a quiet one. Whatever holds a
        queue back (its window, its limits across dispatchers) adds to `waits` how long
        until it lets a task through. Returns whether anything was claimed."""
        due = [q for q in state.queues if (d := state.due_in_s_of(q)) is not None and d <= 0]
        if not due:
            return False
        self._turn = (self._turn + 1) % len(due)
        wanting = due[self._turn :] + due[: self._turn]
        claimed_any = False
        while wanting and not self._stopping.is_set():
            free = self._runner.free()
            if free <= 0:
                return claimed_any  # a delivery thread coming free wakes the loop
            share = max(1, free // len(wanting))
            more = []
            for queue in wanting:
                throttle = self._throttles[queue.name]
                room = min(throttle.available(), share, self._runner.free())
                if room <= 0:
                    opening = throttle.next_opening()
                    if opening is not None:
                        waits.append(opening - time.monotonic())
                    continue
                claim = self.store.claim_queue(
                    queue.name, room, queue.config.lease_ms, limited=has_limits(queue.config)
                )
                self._start(claim.tasks, queue.config, throttle)
                claimed_any = claimed_any or bool(claim.tasks)
                if claim.limited_by is not None:
                    waits.append(claim.wait_s if claim.wait_s is not None else LIMIT_RECHECK_S)
                elif len(claim.tasks) == room:
                    more.append(queue)  # it may hold more
                elif not claim.tasks:
                    waits.append(CONTENDED_RETRY_S)  # due, yet another dispatcher holds them
            wanting = more
        return claimed_any

    def _sleep_s(self, state: DispatchState, read_at: float, waits: list[float]) -> float:
        wake_at = read_at + STATE_REFRESH_S
        due_in = [d for q in state.queues if (d := state.due_in_s_of(q)) is not None and d > 0]
        if due_in:
            wake_at = min(wake_at, read_at + min(due_in))
        if waits:
            wake_at = min(wake_at, time.monotonic() + max(0.0, min(waits)))
        reopen_in = state.hosts_reopen_in_s  # a held host's tasks may start then
        if reopen_in is not None:
            wake_at = min(wake_at, read_at + max(0.0, reopen_in))
        return max(0.0, wake_at - time.monotonic())

    def _apply(self, state: DispatchState) -> None:
        """Take every queue's config as read: its throttle, the config its attempts decide
        with, and the fallback poll at the shortest base_interval_ms."""
        for queue in state.queues:
            self.plugins.note_config(queue.config, queue.name)
            throttle = self._throttles.get(queue.name)
            if throttle is None:
                throttle = self._throttles[queue.name] = Throttle()
            throttle.configure(queue.config.select_size, queue.config.base_interval_ms / 1000)
        names = {q.name for q in state.queues} | {DEFAULT_QUEUE}
        for gone in set(self._throttles) - names:  # a removed queue's window
            if not self._throttles[gone].in_flight:
                del self._throttles[gone]
        poll_ms = min((q.config.base_interval_ms for q in state.queues), default=None)
        if poll_ms is None:
            poll_ms = state.config.base_interval_ms
        if self._scheduler.running and poll_ms != self._poll_interval_ms:
            self._scheduler.add_job(
                self._poll,
                trigger="interval",
                seconds=poll_ms / 1000,
                id=POLL_JOB_ID,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
            self._poll_interval_ms = poll_ms

    def _start(self, claimed: list[ClaimedTask], config: RuntimeConfig, throttle: Throttle) -> None:
        timeout_s = config.http_callback_timeout_ms / 1000
        for task in claimed:
            throttle.reserve()
            self._runner.submit(Job(task, time.monotonic() + timeout_s, config, throttle))

    def _reap(self, state: DispatchState) -> None:
        lost = self.store.claim_expired_leases(REAP_BATCH, REAP_LEASE_MS)
        if lost:
            configs = {q.name: q.config for q in state.queues}
            recorded = [
                decide_lost(attempt, configs.get(attempt.queue, state.config))
                if attempt.async_timeout_s is None
                else decide_async_timeout(
                    attempt,
                    configs.get(attempt.queue, state.config),
                    self.plugins.retry_decision,
                )
                for attempt in lost
            ]
            self.store.record_outcomes(recorded)
            # These attempts never end inside scheduler_run_attempt: observers hear here.
            self.plugins.attempts_lost([r for r in recorded if r.lost])
            for timed_out in (r for r in recorded if not r.lost):  # an async wait's end
                self.plugins.metrics.attempt_ended(timed_out, timed_out.queue)

    # -- one job: run on a delivery thread, reported here --------------------------

    def _run_job(self, job: Job) -> RecordedOutcome:
        job.throttle.begin()
        try:
            return self.plugins.run_attempt(job.task, job.deadline, job.config)
        except Exception as exc:  # a broken wrapper: the attempt counts as failed
            # The traceback, less the task's secrets a plugin's error may quote.
            log.error(
                "task=%s attempt=%d failed inside a plugin: %s",
                job.task.id,
                job.task.attempt,
                redact(traceback.format_exc(), secrets_of(job.task)),
            )
            outcome = DeliveryOutcome(
                ok=False, error=clean_error(f"plugin error: {exc!r}", job.task)
            )
            config = self.plugins.current_config(job.config, job.task.queue)
            decision = decide(job.task, outcome, config, self.plugins.retry_decision)
            return RecordedOutcome(job.task.id, job.task.attempt, outcome, decision)

    def _abandon_job(self, job: Job) -> RecordedOutcome:
        return abandoned(job.task, job.config, self.plugins)

    def _job_done(self, job: Job, recorded: RecordedOutcome) -> None:
        # The task stays in flight for the throttle until its outcome is stored: at no
        # moment does the database show more than select_size running.
        self._hosts.note(job.task, recorded, job.config)  # before the loop wakes
        self._recorder.add(recorded, job.lease_ends, lambda: self._stored(job))
        self._wake.set()  # a delivery thread is free

    def _stored(self, job: Job) -> None:
        job.throttle.finished()
        self._wake.set()

    # -- synchronous use -----------------------------------------------------------

    def tick(self) -> RuntimeConfig:
        """One synchronous round, for tests and tools: reap expired leases, fire due
        schedules, claim and deliver what is due in every queue, up to each queue's
        select_size (one window's worth, within its limits across dispatchers; as many at
        once as the delivery threads allow), wait for their outcomes and store them. A
        task that fails is not tried again within the same tick. Not for use while
        `start()`ed. Returns the `default` queue's config."""
        state = self.store.dispatch_state()
        self._apply(state)
        if self._stopping.is_set():
            return state.config
        self._reap(state)
        self._schedules.fire_once()
        state = self.store.dispatch_state()
        windows = {
            q.name: Throttle(q.config.select_size, q.config.base_interval_ms / 1000)
            for q in state.queues
        }
        timeout_s = max((q.config.http_callback_timeout_ms for q in state.queues), default=0)
        self._recorder.hold()
        try:
            while not self._stopping.is_set():
                claimed_any = False
                for queue in state.queues:
                    if queue.paused:
                        continue
                    window = windows[queue.name]
                    room = min(window.available(), self._runner.free())
                    if room <= 0:
                        continue
                    claim = self.store.claim_queue(
                        queue.name, room, queue.config.lease_ms, limited=has_limits(queue.config)
                    )
                    self._start(claim.tasks, queue.config, window)
                    claimed_any = claimed_any or bool(claim.tasks)
                if claimed_any:
                    continue
                if not self._runner.in_flight():
                    break
                self._runner.wait_change(timeout_s / 1000 + STRAGGLER_GRACE_S)
        finally:
            self._recorder.release()
        self._recorder.flush()
        self._hosts.flush()
        try:
            self._retention.maybe_purge(state.config)
        except Exception:  # retention can wait; it must not fail the round
            log.exception("retention purge failed; trying again next tick")
        return state.config


def has_limits(config: RuntimeConfig) -> bool:
    """Whether a queue's claims must go through its limits across dispatchers."""
    return bool(config.max_dispatches_per_second or config.max_concurrent_dispatches)

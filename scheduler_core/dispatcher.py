"""The dispatcher: an APScheduler job that claims due tasks, delivers them, records outcomes.

One tick claims at most `select_size` due tasks, delivers them concurrently, waits for
every outcome, records them, and only then schedules the next tick `base_interval_ms`
later. That pause after the slowest callback is the throttle.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from scheduler_core.logs import loggable_url
from scheduler_core.models import ClaimedTask, DeliveryOutcome, RecordedOutcome, RetryDecision
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

TICK_JOB_ID = "scheduler-core-tick"
# A dispatcher resumes at most this long after the database is back.
MAX_ERROR_BACKOFF_S = 10.0
# The last write of outcomes starts at least this long before their leases run out.
RECORD_MARGIN_S = 0.5
PURGE_EVERY_S = 60.0
PURGE_BATCH = 500
# A plugin that ignores its deadline still cannot hold the tick much longer than this.
STRAGGLER_GRACE_S = 1.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        plugins: PluginManager,
        *,
        purge_every_s: float = PURGE_EVERY_S,
        purge_batch: int = PURGE_BATCH,
    ):
        self.store = store
        self.plugins = plugins
        # Retention: at most one batch per tick; after a partial batch, pause this long.
        self.purge_every_s = purge_every_s
        self.purge_batch = purge_batch
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._stopping = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_size = 0
        self._error_streak = 0
        self._last_purge = -math.inf  # the first tick purges, however young the clock

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._scheduler.start()
        self._schedule_next(0.0)
        log.info("dispatcher started")

    def request_stop(self) -> None:
        """Claim nothing more; safe to call from a signal handler."""
        self._stopping.set()

    def stop(self, wait: bool = True) -> None:
        """Claim nothing more; with `wait`, let the tick in flight finish its deliveries."""
        self._stopping.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
        log.info("dispatcher stopped")

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _schedule_next(self, delay_s: float) -> None:
        if self._stopping.is_set():
            return
        run_at = datetime.now().astimezone() + timedelta(seconds=delay_s)
        self._scheduler.add_job(
            self._run_tick,
            trigger="date",
            run_date=run_at,
            id=TICK_JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
            max_instances=1,
        )

    def _run_tick(self) -> None:
        delay_s = 1.0
        try:
            config = self.tick()
            delay_s = config.base_interval_ms / 1000
            self._error_streak = 0
        except StoreUnavailable as exc:
            self._error_streak += 1
            delay_s = min(2.0 ** (self._error_streak - 1), MAX_ERROR_BACKOFF_S)
            log.error("database unavailable (%s); next tick in %.1fs", exc, delay_s)
        except Exception:
            self._error_streak += 1
            delay_s = min(2.0 ** (self._error_streak - 1), MAX_ERROR_BACKOFF_S)
            log.exception("tick failed; next tick in %.1fs", delay_s)
        finally:
            self._schedule_next(delay_s)

    # -- one tick ------------------------------------------------------------------

    def tick(self) -> RuntimeConfig:
        """Run one claim-deliver-record cycle now; return the config it used."""
        config = self.store.get_config()
        if self._stopping.is_set():
            return config
        self.store.reap_expired_leases(config)
        if self._stopping.is_set():
            return config
        tasks = self.store.claim_due(config.select_size, config.lease_ms)
        if tasks:
            lease_ends = time.monotonic() + config.lease_ms / 1000
            outcomes = self.deliver_all(tasks, config)
            self._record(outcomes, lease_ends)
        try:
            self._maybe_purge(config)
        except Exception:  # retention can wait; it must not delay the next claims
            log.exception("retention purge failed; trying again next tick")
        return config

    def deliver_all(self, tasks: list[ClaimedTask], config: RuntimeConfig) -> list[RecordedOutcome]:
        timeout_s = config.http_callback_timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        executor = self._executor_for(len(tasks), config.select_size)
        futures: dict[Future[DeliveryOutcome], ClaimedTask] = {}
        for task in tasks:
            log.info(
                "task=%s attempt=%d delivering to %s",
                task.id,
                task.attempt,
                loggable_url(task.webhook_url),
            )
            futures[executor.submit(self.plugins.deliver, task, deadline)] = task
        wait_futures(futures, timeout=timeout_s + STRAGGLER_GRACE_S)
        recorded = []
        for future, task in futures.items():
            if future.done():
                outcome = future.result()
            else:  # the plugin overran its deadline; its thread is abandoned
                future.cancel()  # one that never started must not deliver after the fact
                # The abandoned thread keeps its worker: the next tick gets a fresh pool,
                # or a plugin that hangs would starve every later delivery.
                self._executor_size = 0
                outcome = DeliveryOutcome(
                    ok=False,
                    error=f"timeout: no outcome within {config.http_callback_timeout_ms} ms",
                    duration_ms=int(config.http_callback_timeout_ms + STRAGGLER_GRACE_S * 1000),
                )
            recorded.append(self._decide(task, outcome, config))
        return recorded

    def _decide(
        self, task: ClaimedTask, outcome: DeliveryOutcome, config: RuntimeConfig
    ) -> RecordedOutcome:
        if outcome.ok:
            log.info(
                "task=%s attempt=%d resolved status=%s duration_ms=%d",
                task.id,
                task.attempt,
                outcome.status_code,
                outcome.duration_ms,
            )
            return RecordedOutcome(task.id, task.attempt, outcome, None)
        max_retries = task.max_retries if task.max_retries is not None else config.max_retries
        if task.attempts_in_budget >= max_retries + 1:
            decision = RetryDecision.stale()
        else:
            decision = self.plugins.retry_decision(task, outcome, config)
        if decision.is_stale:
            log.warning(
                "task=%s attempt=%d failed (%s); stale, no retries left",
                task.id,
                task.attempt,
                outcome.error,
            )
        else:
            log.info(
                "task=%s attempt=%d failed (%s); retry in %d ms",
                task.id,
                task.attempt,
                outcome.error,
                decision.retry_in_ms,
            )
        return RecordedOutcome(task.id, task.attempt, outcome, decision)

    def _record(self, outcomes: list[RecordedOutcome], lease_ends: float) -> None:
        """Store outcomes, retrying through a database outage while the lease holds.

        Once the lease has run out the task is someone else's: it will be reclaimed
        and delivered again, which at-least-once delivery allows.
        """
        pause = 0.25
        while True:
            try:
                self.store.record_outcomes(outcomes)
                return
            except StoreUnavailable as exc:
                # The last try goes just before the lease runs out, not a backoff early.
                pause = min(pause, lease_ends - RECORD_MARGIN_S - time.monotonic())
                if pause <= 0:
                    log.error(
                        "could not record %d outcomes before their leases ran out (%s);"
                        " the tasks will be delivered again",
                        len(outcomes),
                        exc,
                    )
                    raise
                log.warning("recording outcomes failed (%s); retrying in %.2fs", exc, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _executor_for(self, count: int, select_size: int) -> ThreadPoolExecutor:
        # Every claimed task must be in flight at once: all share one deadline.
        size = max(count, select_size)
        if self._executor is None or self._executor_size < size:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="deliver")
            self._executor_size = size
        return self._executor

    def _maybe_purge(self, config: RuntimeConfig) -> None:
        now = time.monotonic()
        if now - self._last_purge < self.purge_every_s:
            return
        deleted = self.store.purge_expired(config.retention_hours, self.purge_batch)
        if deleted < self.purge_batch:  # a full batch means more to do: go on next tick
            self._last_purge = now
        if deleted:
            log.info(
                "retention: deleted %d finished tasks older than %d h",
                deleted,
                config.retention_hours,
            )

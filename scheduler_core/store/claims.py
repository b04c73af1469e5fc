"""The store's claim verbs, written once over each backend's named queries: what a
dispatcher reads at every wake-up (every queue's state) and how it takes due tasks under
a lease, queue by queue, within each queue's limits across dispatchers (queue_limits.py).
Mixed into SqlStore.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from scheduler_core.encryption import AuthCipher, reveal
from scheduler_core.models import (
    DEFAULT_QUEUE,
    ClaimedTask,
    DispatchState,
    LostAttempt,
    QueueClaim,
    QueueState,
)
from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.status_codes import codes_of
from scheduler_core.store.hosts import HostVerbs
from scheduler_core.store.queue_limits import Grant, grant, tokens_now

if TYPE_CHECKING:
    from scheduler_core.store.sql_store import Cursor, Row

log = logging.getLogger(__name__)
# Claims run again in one call for the room tasks past their notAfter left.
DEADLINE_ROUNDS = 4


class ClaimVerbs(HostVerbs):
    q: dict[str, str]
    cipher: AuthCipher | None

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]: ...

    def _claim(self, cur: Cursor, limit: int, lease_ms: int, queue: str) -> list[Row]:
        """Up to `limit` due tasks of `queue` leased. A task the claim finds past its
        notAfter ends stale instead ("deadline passed", no attempt counted), and the claim
        runs again for the room it left, a few rounds at most (then the caller's next
        claim goes on)."""
        claimed: list[Row] = []
        for _ in range(DEADLINE_ROUNDS):
            rows = self._claim_round(cur, limit - len(claimed), lease_ms, queue)
            running = [r for r in rows if r["status"] == "running"]
            claimed += running
            for row in rows:
                if row["status"] != "running":
                    log.info("task=%s deadline passed before it was called: stale", row["id"])
            if len(running) == len(rows) or len(claimed) >= limit:
                break
        return claimed

    def _claim_round(self, cur: Cursor, limit: int, lease_ms: int, queue: str) -> list[Row]:
        if self._hosts_in_play():  # a throttled host: hosts.py
            return self._claim_by_host(cur, limit, lease_ms, queue)
        cur.execute(self.q["claim_due"], {"limit": limit, "lease_ms": lease_ms, "queue": queue})
        return list(cur.fetchall())

    def dispatch_state(self) -> DispatchState:
        with self._read() as cur:
            cur.execute(self.q["dispatch_state"])
            rows = [dict(row) for row in cur.fetchall()]
            # Every row carries the flag: each gives it up (any() would stop at the first).
            throttled = any([bool(row.pop("hosts_throttled")) for row in rows])
            self._note_hosts_exist(throttled)
            holds = self._host_holds(cur) if self._hosts_in_play() else None
            unheld = self._next_due_unheld(cur, holds.held) if holds and holds.held else None
        queues = []
        db_now = None
        for row in rows:
            db_now = row.pop("db_now")
            name, paused, next_due = row.pop("queue"), row.pop("paused"), row.pop("next_due")
            if unheld is not None:  # a held host's tasks do not make the queue due
                next_due = unheld.get(name)
            queues.append(
                QueueState(
                    name=name,
                    config=RuntimeConfig(**row),
                    paused=bool(paused),
                    next_due=self._time(next_due) if next_due is not None else None,
                )
            )
        if db_now is None:  # no queue at all: only a database the migrations never reached
            with self._read() as cur:
                cur.execute(self.q["clock"])
                db_now = cur.fetchone()["db_now"]
        reopen = holds.reopen_at if holds is not None else None
        return DispatchState(
            db_now=self._time(db_now), queues=tuple(queues), hosts_reopen_at=reopen
        )

    def claim_due(self, limit: int, lease_ms: int, queue: str = DEFAULT_QUEUE) -> list[ClaimedTask]:
        return self.claim_queue(queue, limit, lease_ms, limited=False).tasks

    def claim_queue(
        self, queue: str, limit: int, lease_ms: int, *, limited: bool = True
    ) -> QueueClaim:
        """Lease up to `limit` due tasks of `queue` in claim order (none while it is
        paused), each claim counting an attempt. With `limited`, within the queue's
        max_dispatches_per_second and max_concurrent_dispatches across every dispatcher
        (queue_limits.py); without, those limits are not read (the caller knows the
        queue has none)."""
        with self._tx() as cur:
            if limited:
                rows, allowed = self._claim_limited(cur, queue, limit, lease_ms)
            else:
                rows, allowed = self._claim(cur, limit, lease_ms, queue), None
        claimed_at = time.monotonic()
        rows.sort(key=lambda r: (bool(r["has_failed"]), r["next_attempt_at"], r["seq"]))
        auths = [reveal(r["webhook_auth"], self.cipher) for r in rows]
        tasks = [
            ClaimedTask(
                id=r["id"],
                webhook_url=r["webhook_url"],
                webhook_auth=auth,
                auth_error=auth_error,
                execute_at=self._time(r["execute_at"]),
                payload_json=r["payload_json"],
                attempt=r["attempts"],
                attempts_in_budget=r["attempts_in_budget"],
                max_retries=r["max_retries"],
                next_attempt_at=self._time(r["next_attempt_at"]),
                late_at_claim_ms=float(r["late_at_claim_ms"]),
                claimed_monotonic=claimed_at,
                queue=r["queue"],
                not_after=self._time(r["not_after"]) if r["not_after"] is not None else None,
                success_codes=codes_of(r["success_codes"]),
                stale_codes=codes_of(r["stale_codes"]),
                traceparent=r["traceparent"],
                snoozes_in_row=r["snoozes_in_row"],
                target_host=r["target_host"],
            )
            for r, (auth, auth_error) in zip(rows, auths, strict=True)
        ]
        if allowed is None:
            return QueueClaim(tasks)
        return QueueClaim(tasks, allowed.wait_s, allowed.limited_by)

    def _claim_limited(
        self, cur: Cursor, queue: str, limit: int, lease_ms: int
    ) -> tuple[list[Row], Grant | None]:
        cur.execute(self.q["lock_queue_for_claim"], {"queue": queue})
        row = cur.fetchone()
        if row is None or row["paused"]:
            return [], None
        rate, concurrency = row["max_dispatches_per_second"], row["max_concurrent_dispatches"]
        running = 0
        if concurrency:
            cur.execute(self.q["running_in_queue"], {"queue": queue})
            running = int(cur.fetchone()["running"])
        tokens, clock = 0.0, None
        if rate:
            cur.execute(self.q["precise_clock"])
            clock = cur.fetchone()["clock"]
            elapsed_s = (self._time(clock) - self._time(row["bucket_at"])).total_seconds()
            tokens = tokens_now(float(row["bucket_tokens"]), elapsed_s, rate)
        allowed = grant(limit, rate=rate, tokens=tokens, concurrency=concurrency, running=running)
        rows = self._claim(cur, allowed.count, lease_ms, queue) if allowed.count > 0 else []
        if rate:
            cur.execute(
                self.q["store_bucket"],
                {"queue": queue, "tokens": tokens - len(rows), "clock": clock},
            )
        return rows, allowed

    def claim_expired_leases(self, limit: int, lease_ms: int) -> list[LostAttempt]:
        with self._tx() as cur:
            cur.execute(self.q["claim_expired_leases"], {"limit": limit, "lease_ms": lease_ms})
            rows = cur.fetchall()
        for row in rows:
            if row["async_timeout_s"] is None:
                log.warning("task=%s lease expired; its attempt is lost", row["id"])
            else:
                log.info(
                    "task=%s no async completion within %s s", row["id"], row["async_timeout_s"]
                )
        return [
            LostAttempt(
                task_id=r["id"],
                attempt=r["attempts"],
                attempts_in_budget=r["attempts_in_budget"],
                max_retries=r["max_retries"],
                queue=r["queue"],
                async_timeout_s=r["async_timeout_s"],
            )
            for r in rows
        ]

"""The store's schedule verbs, written once over each backend's named queries
(`sql/<dialect>.schedules.sql`), mixed into SqlStore.

Firing: each due schedule in its own transaction, which locks the schedule's row (on
PostgreSQL `FOR UPDATE SKIP LOCKED`, so several dispatchers each take a different one;
on SQLite the write lock), enqueues the fire's task with the idempotency key
`schedule:<name>:<fire time>` (so a fire is enqueued once, whoever fires it) and moves
the schedule on to its next fire time. What a due schedule fires is `plan_fire`'s
decision (scheduler_core.schedules.model). Times are the database clock's unless a
caller simulating time passes `now`.

webhookAuth is sealed (SCHEDULER_ENCRYPTION_KEY) when a schedule is written and copied
into each task as stored: only a dispatcher opens it, at claim.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scheduler_core.encryption import AuthCipher
from scheduler_core.models import NewTask, Task
from scheduler_core.schedules import (
    CHANGEABLE,
    CatchUp,
    CronError,
    CronSchedule,
    NewSchedule,
    Schedule,
    fire_key,
    plan_fire,
)
from scheduler_core.status_codes import codes_of, codes_text
from scheduler_core.store.base import QueueNotFound, ScheduleConflict, ScheduleNotFound
from scheduler_core.store.changes import ChangeFeed

if TYPE_CHECKING:
    from scheduler_core.store.sql_store import Cursor, Row

log = logging.getLogger(__name__)

# One firing round takes at most this many due schedules (then the firer comes back).
FIRE_ROUND_LIMIT = 1000
# The in-process notice of a schedule change; PostgreSQL's NOTIFY carries the same word.
SCHEDULE_NOTICE = "schedule"


class ScheduleVerbs:
    """Mixed into SqlStore: create, read, change, pause, trigger and fire schedules."""

    q: dict[str, str]
    changes: ChangeFeed
    cipher: AuthCipher | None

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _time_param(self, moment: datetime) -> Any: ...

    @abstractmethod
    def _ids_param(self, ids: Sequence[str]) -> Any: ...

    @abstractmethod
    def _new_task_row(self, new: NewTask, row: Row) -> Task: ...

    @abstractmethod
    def _insert_row(
        self, task_id: str, new: NewTask, webhook_auth: str | None
    ) -> dict[str, Any]: ...

    def _sq(self, name: str) -> str:
        return self.q[name].replace("{schedule_columns}", self.q["schedule_columns"])

    # -- reading ------------------------------------------------------------------------

    def list_schedules(self) -> list[Schedule]:
        with self._read() as cur:
            cur.execute(self._sq("list_schedules"))
            return [self._schedule(row) for row in cur.fetchall()]

    def get_schedule(self, name: str) -> Schedule:
        with self._read() as cur:
            cur.execute(self._sq("get_schedule"), {"name": name})
            row = cur.fetchone()
        if row is None:
            raise ScheduleNotFound(name)
        return self._schedule(row)

    def next_schedule_fire(self) -> datetime | None:
        return self._next_fire()[1]

    def schedule_due_in_s(self) -> float | None:
        now, next_fire = self._next_fire()
        return None if next_fire is None else (next_fire - now).total_seconds()

    def _next_fire(self) -> tuple[datetime, datetime | None]:
        with self._read() as cur:
            cur.execute(self.q["next_schedule_fire"])
            row = cur.fetchone()
        next_fire = row["next_fire"]
        return self._time(row["db_now"]), (self._time(next_fire) if next_fire is not None else None)

    # -- writing ------------------------------------------------------------------------

    def create_schedule(self, new: NewSchedule) -> Schedule:
        rule = CronSchedule(new.cron, new.timezone)  # CronError before anything is written
        with self._tx() as cur:
            self._check_queue(cur, new.queue)
            now = self._clock(cur)
            next_fire = None if new.paused else rule.next_after(now)
            cur.execute(
                self._sq("insert_schedule"),
                {
                    "name": new.name,
                    "cron": new.cron,
                    "timezone": new.timezone,
                    "catch_up": CatchUp(new.catch_up).value,
                    "paused": new.paused,
                    "webhook_url": new.webhook_url,
                    "webhook_auth": self._sealed(new.webhook_auth),
                    "payload": json.dumps(new.payload, ensure_ascii=False),
                    "queue": new.queue,
                    "max_retries": new.max_retries,
                    "next_fire_at": self._opt_time(next_fire),
                    "not_after": self._opt_time(new.not_after),
                    "success_codes": codes_text(new.success_codes),
                    "stale_codes": codes_text(new.stale_codes),
                },
            )
            row = cur.fetchone()
            if row is None:
                raise ScheduleConflict(new.name)
            cur.execute(self.q["notify_schedules"])
        self.changes.publish(SCHEDULE_NOTICE)
        return self._schedule(row)

    def update_schedule(self, name: str, changes: Mapping[str, Any]) -> Schedule:
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise ValueError(f"not changeable: {', '.join(sorted(unknown))}")
        with self._tx() as cur:
            current, auth = self._lock_schedule(cur, name)
            values = self._values(current, auth)
            values.update(changes)
            if "webhook_auth" in changes:
                values["webhook_auth"] = self._sealed(changes["webhook_auth"])
            rule = CronSchedule(values["cron"], values["timezone"])
            if values["queue"] != current.queue:
                self._check_queue(cur, values["queue"])
            next_fire = current.next_fire_at
            moved = (values["cron"], values["timezone"]) != (current.cron, current.timezone)
            if moved and not current.paused:
                next_fire = rule.next_after(self._clock(cur))
            row = self._write(cur, name, values, next_fire)
        self.changes.publish(SCHEDULE_NOTICE)
        return self._schedule(row)

    def set_schedule_paused(self, name: str, paused: bool) -> Schedule:
        with self._tx() as cur:
            current, auth = self._lock_schedule(cur, name)
            if current.paused == paused:
                return current
            values = self._values(current, auth)
            values["paused"] = paused
            # Resumed: the next fire time from now on; the paused time is not caught up.
            next_fire = None if paused else current.rule.next_after(self._clock(cur))
            row = self._write(cur, name, values, next_fire)
        self.changes.publish(SCHEDULE_NOTICE)
        return self._schedule(row)

    def delete_schedule(self, name: str) -> Schedule:
        with self._tx() as cur:
            cur.execute(self._sq("delete_schedule"), {"name": name})
            row = cur.fetchone()
            if row is None:
                raise ScheduleNotFound(name)
            cur.execute(self.q["notify_schedules"])
        self.changes.publish(SCHEDULE_NOTICE)
        return self._schedule(row)

    def trigger_schedule(self, name: str) -> Task:
        with self._tx() as cur:
            current, auth = self._lock_schedule(cur, name)
            self._check_queue(cur, current.queue)
            task = self._enqueue_fire(cur, current, auth, execute_at=None, key=None)
        assert task is not None  # no idempotency key: always created
        self.changes.publish("due")
        log.info("task=%s enqueued by a trigger of schedule=%s", task.id, name)
        return task

    # -- firing -------------------------------------------------------------------------

    def fire_due_schedules(self, now: datetime | None = None) -> list[Task]:
        with self._read() as cur:
            cur.execute(self.q["any_due_schedule"], {"now": self._opt_time(now)})
            if not cur.fetchone()["due"]:
                return []
        fired: list[Task] = []
        for _ in range(FIRE_ROUND_LIMIT):
            found, task = self._fire_one(now)
            if not found:
                break
            if task is not None:
                fired.append(task)
        if fired:
            self.changes.publish("due")
        return fired

    def _fire_one(self, now: datetime | None) -> tuple[bool, Task | None]:
        """Fire the earliest due schedule nobody else holds, in one transaction; (False,
        None) when there is none."""
        with self._tx() as cur:
            cur.execute(self._sq("due_schedule"), {"now": self._opt_time(now)})
            row = cur.fetchone()
            if row is None:
                return False, None
            schedule = self._schedule(row)
            clock = now if now is not None else self._time(row["db_now"])
            due = schedule.next_fire_at
            assert due is not None  # the query takes only schedules with a fire time
            try:
                plan = plan_fire(schedule.rule, due, clock, schedule.catch_up)
            except CronError as exc:  # stored before its time zone left the tz database
                log.error("schedule=%s cannot fire: %s; it waits for a change", schedule.name, exc)
                self._record_fire(cur, schedule.name, None, None)
                return True, None
            if plan.skipped_missed:
                log.warning(
                    "schedule=%s missed fire times from %s (catchUp %s): %s",
                    schedule.name,
                    due.isoformat(),
                    schedule.catch_up.value,
                    f"firing {plan.fire.isoformat()}" if plan.fire else "firing none of them",
                )
            task = None
            if plan.fire is not None:
                if self._queue_exists(cur, schedule.queue):
                    key = fire_key(schedule.name, plan.fire)
                    task = self._enqueue_fire(cur, schedule, row["webhook_auth"], plan.fire, key)
                else:
                    log.error(
                        "schedule=%s: its queue %r does not exist; fire time %s not enqueued",
                        schedule.name,
                        schedule.queue,
                        plan.fire.isoformat(),
                    )
            self._record_fire(cur, schedule.name, plan.next_fire_at, plan.fire)
        if task is not None:
            log.info(
                "task=%s enqueued by schedule=%s for %s",
                task.id,
                schedule.name,
                task.execute_at.isoformat(),
            )
        return True, task

    def _record_fire(
        self, cur: Cursor, name: str, next_fire: datetime | None, fired: datetime | None
    ) -> None:
        cur.execute(
            self.q["record_fire"],
            {
                "name": name,
                "next_fire_at": self._opt_time(next_fire),
                "last_fire_at": self._opt_time(fired),
            },
        )

    def _enqueue_fire(
        self,
        cur: Cursor,
        schedule: Schedule,
        stored_auth: str | None,
        execute_at: datetime | None,
        key: str | None,
    ) -> Task | None:
        """Insert the schedule's task (its webhookAuth as stored: sealed or not, the task
        holds the same) in the caller's transaction; None when `key` was taken already."""
        from scheduler_core.store.sql_store import new_task_ids

        new = NewTask(
            webhook_url=schedule.webhook_url,
            execute_at=execute_at,
            payload=schedule.payload,
            idempotency_key=key,
            max_retries=schedule.max_retries,
            queue=schedule.queue,
            schedule=schedule.name,
            not_after=schedule.not_after,
            success_codes=schedule.success_codes,
            stale_codes=schedule.stale_codes,
        )
        [task_id] = new_task_ids(1)
        row = self._insert_row(task_id, new, stored_auth)
        cur.execute(self.q["insert_tasks"], {"tasks": json.dumps([row])})
        inserted = cur.fetchone()
        return self._new_task_row(new, inserted) if inserted is not None else None

    # -- key rotation (scheduler rotate-key) ----------------------------------------------

    def schedule_auth_page(self, after: str, limit: int) -> list[tuple[str, str]]:
        with self._read() as cur:
            cur.execute(self.q["schedule_auth_page"], {"after": after, "limit": limit})
            return [(r["name"], r["webhook_auth"]) for r in cur.fetchall()]

    def replace_schedule_auth(self, changes: Sequence[tuple[str, str, str]]) -> list[str]:
        rows = [{"name": name, "old": old, "new": new} for name, old, new in changes]
        with self._tx() as cur:
            cur.execute(self.q["replace_schedule_auth"], {"rows": json.dumps(rows)})
            return [r["name"] for r in cur.fetchall()]

    # -- helpers ------------------------------------------------------------------------

    def _clock(self, cur: Cursor) -> datetime:
        cur.execute(self.q["schedule_clock"])
        return self._time(cur.fetchone()["db_now"])

    def _queue_exists(self, cur: Cursor, queue: str) -> bool:
        # Held (PostgreSQL: FOR KEY SHARE) until the commit: a removal of the queue waits.
        cur.execute(self.q["lock_queues_for_enqueue"], {"names": self._ids_param([queue])})
        return cur.fetchone() is not None

    def _check_queue(self, cur: Cursor, queue: str) -> None:
        if not self._queue_exists(cur, queue):
            raise QueueNotFound(queue)

    def _lock_schedule(self, cur: Cursor, name: str) -> tuple[Schedule, str | None]:
        cur.execute(self._sq("lock_schedule"), {"name": name})
        row = cur.fetchone()
        if row is None:
            raise ScheduleNotFound(name)
        return self._schedule(row), row["webhook_auth"]

    def _sealed(self, auth: str | None) -> str | None:
        if auth is None or self.cipher is None:
            return auth
        return self.cipher.seal(auth)

    def _opt_read(self, value: Any) -> datetime | None:
        return self._time(value) if value is not None else None

    def _opt_time(self, moment: datetime | None) -> Any:
        return self._time_param(moment) if moment is not None else None

    @staticmethod
    def _values(schedule: Schedule, auth: str | None) -> dict[str, Any]:
        return {
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "catch_up": schedule.catch_up,
            "paused": schedule.paused,
            "webhook_url": schedule.webhook_url,
            "webhook_auth": auth,
            "payload": schedule.payload,
            "queue": schedule.queue,
            "max_retries": schedule.max_retries,
            "not_after": schedule.not_after,
            "success_codes": schedule.success_codes,
            "stale_codes": schedule.stale_codes,
        }

    def _write(
        self, cur: Cursor, name: str, values: dict[str, Any], next_fire: datetime | None
    ) -> Row:
        cur.execute(
            self._sq("update_schedule"),
            {
                **values,
                "name": name,
                "catch_up": CatchUp(values["catch_up"]).value,
                "payload": json.dumps(values["payload"], ensure_ascii=False),
                "next_fire_at": self._opt_time(next_fire),
                "not_after": self._opt_time(values["not_after"]),
                "success_codes": codes_text(values["success_codes"]),
                "stale_codes": codes_text(values["stale_codes"]),
            },
        )
        row = cur.fetchone()
        cur.execute(self.q["notify_schedules"])
        return row  # type: ignore[no-any-return]

    def _schedule(self, row: Row) -> Schedule:
        return Schedule(
            name=row["name"],
            cron=row["cron"],
            timezone=row["timezone"],
            catch_up=CatchUp(row["catch_up"]),
            paused=bool(row["paused"]),
            webhook_url=row["webhook_url"],
            payload=json.loads(row["payload_json"]) if row["payload_json"] is not None else None,
            queue=row["queue"],
            max_retries=row["max_retries"],
            next_fire_at=self._opt_read(row["next_fire_at"]),
            last_fire_at=self._opt_read(row["last_fire_at"]),
            created_at=self._time(row["created_at"]),
            updated_at=self._time(row["updated_at"]),
            not_after=self._opt_read(row["not_after"]),
            success_codes=codes_of(row["success_codes"]),
            stale_codes=codes_of(row["stale_codes"]),
        )

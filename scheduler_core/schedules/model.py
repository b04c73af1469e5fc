"""A schedule as stored, one to create, and what a due schedule fires."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler_core.models import DEFAULT_QUEUE, StatusRule
from scheduler_core.schedules.cron import CronSchedule

# A fire time more than this far behind the clock when a dispatcher gets to it was
# missed (the scheduler was down, or every dispatcher was stopped): catchUp decides. A
# fire time less late than this is simply fired, each one once, in order.
MISSED_AFTER = timedelta(seconds=60)

# What PATCH may change, by model attribute name.
CHANGEABLE = frozenset(
    (
        "cron",
        "timezone",
        "catch_up",
        "webhook_url",
        "webhook_auth",
        "payload",
        "queue",
        "max_retries",
        "not_after",
        "success_codes",
        "stale_codes",
    )
)


class CatchUp(enum.StrEnum):
    """What a schedule does with fire times it missed (see MISSED_AFTER)."""

    LATEST = "latest"  # fire the most recent missed time once, never older ones
    NONE = "none"  # fire nothing that was missed; go on with the next fire time


@dataclass(frozen=True)
class Schedule:
    """A schedule as the API shows it. Its webhookAuth never leaves the store."""

    name: str
    cron: str
    timezone: str
    catch_up: CatchUp
    paused: bool
    webhook_url: str
    payload: Any
    queue: str
    max_retries: int | None
    next_fire_at: datetime | None  # the next fire time not yet enqueued; None while paused
    last_fire_at: datetime | None  # the last fire time enqueued
    created_at: datetime
    updated_at: datetime
    # The delivery rules each fired task gets (None: the defaults).
    not_after: datetime | None = None
    success_codes: tuple[StatusRule, ...] | None = None
    stale_codes: tuple[StatusRule, ...] | None = None

    @property
    def rule(self) -> CronSchedule:
        return CronSchedule(self.cron, self.timezone)


@dataclass(frozen=True)
class NewSchedule:
    """A validated schedule to create."""

    name: str
    cron: str
    webhook_url: str
    timezone: str = "UTC"
    catch_up: CatchUp = CatchUp.LATEST
    paused: bool = False
    webhook_auth: str | None = field(default=None, repr=False)
    payload: Any = None
    queue: str = DEFAULT_QUEUE
    max_retries: int | None = None
    not_after: datetime | None = None
    success_codes: tuple[StatusRule, ...] | None = None
    stale_codes: tuple[StatusRule, ...] | None = None


@dataclass(frozen=True)
class FirePlan:
    """What one due schedule does now: enqueue `fire` (None: nothing) and wait for
    `next_fire_at` (None: the expression never fires again)."""

    fire: datetime | None
    next_fire_at: datetime | None
    skipped_missed: bool = False  # missed fire times were passed over


def plan_fire(rule: CronSchedule, due: datetime, now: datetime, catch_up: CatchUp) -> FirePlan:
    """The decision for a schedule whose next fire time `due` is at or before `now`.

    - `due` is at most MISSED_AFTER late: it is fired; the next is the one after it (a
      later one already due is fired by the next call, each in its own transaction).
    - `due` was missed: the fire times up to `now` are skipped but for the latest one.
      That one is fired if it is itself recent (not missed), or if `catch_up` is
      `latest`; with `none` a missed time is never fired.
    """
    if now - due <= MISSED_AFTER:
        return FirePlan(fire=due, next_fire_at=rule.next_after(due))
    latest = rule.latest_at_or_before(now) or due
    latest = max(latest, due)
    recent = now - latest <= MISSED_AFTER
    fire = latest if recent or catch_up is CatchUp.LATEST else None
    return FirePlan(fire=fire, next_fire_at=rule.next_after(latest), skipped_missed=True)


def fire_key(name: str, fire: datetime) -> str:
    """The idempotency key of a schedule's fire: `schedule:<name>:<UTC ISO-8601>`, e.g.
    `schedule:nightly:2026-03-29T01:00:00Z`. Every dispatcher computes the same key for
    the same fire, so a fire is enqueued once however many fire it."""
    text = fire.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    if fire.microsecond:  # cron times are whole seconds; keep anything else exact
        text = fire.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"schedule:{name}:{text}Z"

"""Typed results of the client: frozen dataclasses read from the API's JSON.

Times are timezone-aware `datetime`s in UTC. Each result keeps the JSON object it was
read from as `raw` (what `scheduler ... --json` prints), so a field a newer server adds
is not lost; keys this version does not know are otherwise ignored, and fields an older
server does not send take their documented default (`queue` is ``"default"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STATUSES = ("pending", "running", "resolved", "stale", "cancelled")


class BadResponse(ValueError):
    """A 2xx answer that is not what the API sends (HTML from the wrong server, say)."""


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339, ``Z`` or an offset) as an aware UTC datetime."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadResponse(f"expected a timestamp, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadResponse(f"not an RFC 3339 timestamp: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise BadResponse(f"timestamp without a UTC offset: {value[:40]!r}")
    return moment.astimezone(UTC)


def format_time(value: datetime | str) -> str:
    """A time as the API reads it. A string is sent as it is (the server validates it); a
    datetime must be timezone-aware (a naive one would be a guess) and is sent in UTC."""
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or an RFC 3339 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "a naive datetime has no time zone: pass an aware one, e.g. "
            "datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadResponse(f"expected {what} as a JSON object, got {type(value).__name__}")
    return value


def _required_time(data: Mapping[str, Any], key: str) -> datetime:
    moment = parse_time(data.get(key))
    if moment is None:
        raise BadResponse(f"the answer has no {key}")
    return moment


_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def snake_case(name: str) -> str:
    """``baseIntervalMs`` -> ``base_interval_ms``."""
    return _CAMEL_HUMP.sub("_", name).lower()


def camel_case(name: str) -> str:
    """``base_interval_ms`` -> ``baseIntervalMs``; a camelCase name stays as it is."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class Task:
    """A task as the API returns it (SPEC.md, "A task as returned"). `webhook_auth` is
    write-only on the server, so it is never here. `status` is one of `STATUSES`."""

    id: str
    webhook_url: str
    execute_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    queue: str = "default"
    max_retries: int | None = None
    payload: Any = None
    idempotency_key: str | None = None
    not_after: datetime | None = None
    success_codes: tuple[int | str, ...] | None = None
    stale_codes: tuple[int | str, ...] | None = None
    last_error: str | None = None
    last_status_code: int | None = None
    resolved_at: datetime | None = None
    schedule: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> Task:
        data = _object(value, "a task")
        try:
            return cls(
                id=str(data["id"]),
                webhook_url=data["webhookUrl"],
                execute_at=_required_time(data, "executeAt"),
                status=data["status"],
                attempts=int(data.get("attempts") or 0),
                next_attempt_at=_required_time(data, "nextAttemptAt"),
                created_at=_required_time(data, "createdAt"),
                updated_at=_required_time(data, "updatedAt"),
                queue=data.get("queue") or "default",
                max_retries=data.get("maxRetries"),
                payload=data.get("payload"),
                idempotency_key=data.get("idempotencyKey"),
                not_after=parse_time(data.get("notAfter")),
                success_codes=_codes(data.get("successCodes")),
                stale_codes=_codes(data.get("staleCodes")),
                last_error=data.get("lastError"),
                last_status_code=data.get("lastStatusCode"),
                resolved_at=parse_time(data.get("resolvedAt")),
                schedule=data.get("schedule"),
                raw=data,
            )
        except KeyError as exc:
            raise BadResponse(f"the task has no {exc.args[0]}") from None


def _codes(value: Any) -> tuple[int | str, ...] | None:
    return None if value is None else tuple(value)


@dataclass(frozen=True)
class TaskPage:
    """One page of `list_tasks`, newest first; `next_cursor` fetches the next (None:
    this was the last page)."""

    tasks: tuple[Task, ...]
    next_cursor: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> TaskPage:
        data = _object(value, "a page of tasks")
        return cls(
            tasks=tuple(Task.from_json(t) for t in data.get("tasks") or ()),
            next_cursor=data.get("nextCursor"),
            raw=data,
        )


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt. `outcome`: ``resolved``, ``failed``, ``snoozed``, ``lost``,
    or None while it is in flight; `lateness_ms`: first byte sent minus the due time."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: int | None = None
    status_code: int | None = None
    error: str | None = None
    outcome: str | None = None
    lateness_ms: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> Attempt:
        data = _object(value, "an attempt")
        return cls(
            attempt=int(data.get("attempt") or 0),
            started_at=_required_time(data, "startedAt"),
            finished_at=parse_time(data.get("finishedAt")),
            duration_ms=data.get("durationMs"),
            status_code=data.get("statusCode"),
            error=data.get("error"),
            outcome=data.get("outcome"),
            lateness_ms=data.get("latenessMs"),
            raw=data,
        )


def _counts(value: Any) -> Mapping[str, int]:
    given = _object(value or {}, "counts")
    counts = {status: 0 for status in STATUSES}
    counts.update({str(k): int(v) for k, v in given.items()})
    return counts


@dataclass(frozen=True)
class QueueStats:
    """One queue's numbers: tasks by status, pending tasks already due, and how long the
    oldest of those has been due (seconds, 0.0 when none)."""

    queue: str
    counts: Mapping[str, int]
    due_backlog: int
    oldest_due_age_seconds: float

    @classmethod
    def from_json(cls, value: Any) -> QueueStats:
        data = _object(value, "a queue's stats")
        return cls(
            queue=data.get("queue") or "default",
            counts=_counts(data.get("counts")),
            due_backlog=int(data.get("dueBacklog") or 0),
            oldest_due_age_seconds=float(data.get("oldestDueAgeSeconds") or 0.0),
        )


@dataclass(frozen=True)
class Lateness:
    """Lateness percentiles (ms) of the attempts started in the last `window_seconds`;
    None when there were none."""

    window_seconds: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Stats:
    """`GET /api/v1/stats`: the whole scheduler's numbers, and each queue's."""

    counts: Mapping[str, int]
    due_backlog: int
    oldest_due_age_seconds: float
    lateness: Lateness
    queues: tuple[QueueStats, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> Stats:
        data = _object(value, "stats")
        lateness = _object(data.get("lateness") or {}, "lateness")
        return cls(
            counts=_counts(data.get("counts")),
            due_backlog=int(data.get("dueBacklog") or 0),
            oldest_due_age_seconds=float(data.get("oldestDueAgeSeconds") or 0.0),
            lateness=Lateness(
                window_seconds=int(lateness.get("windowSeconds") or 0),
                p50_ms=lateness.get("p50Ms"),
                p99_ms=lateness.get("p99Ms"),
            ),
            queues=tuple(QueueStats.from_json(q) for q in data.get("queues") or ()),
            raw=data,
        )

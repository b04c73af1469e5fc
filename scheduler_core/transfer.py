"""The file `scheduler export` writes and `scheduler import` reads: tasks moved between
databases (SQLite to PostgreSQL, or to a database with another encryption key).

JSON Lines, UTF-8, one object a line:

- first, the header: ``{"format": "scheduler-core-export", "version": 1, "dialect": ...,
  "exportedAt": ..., "statuses": [...], "config": {camelCase runtime config}}``;
- then one task a line, in creation order (see `TaskLineSchema`): every column a task
  needs to go on where it stopped in the other database, its attempt history, its
  ``webhookAuth`` in clear (the two databases may seal it with different keys) and its
  payload's stored JSON text, verbatim, as the string ``payloadJson``;
- last, the trailer: ``{"end": true, "tasks": N}``. A file without it was cut short (a
  full disk, an interrupted copy) and is refused before anything is imported.

Times are UTC ISO-8601 with microseconds and a Z, exactly as stored on either backend.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from scheduler_core.marshmallow_base import StrictInteger
from scheduler_core.models import AttemptOutcome, TaskStatus
from scheduler_core.runtime_config import ConfigError, RuntimeConfig, validate_changes

FORMAT = "scheduler-core-export"
VERSION = 1
# Every task is in queue "default" until named queues exist; a line naming another is refused.
DEFAULT_QUEUE = "default"
LIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.STALE})
FINISHED_STATUSES = frozenset({TaskStatus.RESOLVED, TaskStatus.CANCELLED})
# lastError of the attempt a task was in when it was exported `running`: its lease belonged
# to the old database, so the attempt is recorded lost and the task comes in pending.
MOVED_WHILE_RUNNING = "lost: the task was exported while this attempt was in flight"


@dataclass(frozen=True)
class ExportedAttempt:
    """One row of a task's attempt history, as stored."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None  # None: in flight when exported
    duration_ms: int | None
    status_code: int | None
    error: str | None
    outcome: str | None
    lateness_ms: int | None


@dataclass(frozen=True)
class ExportedTask:
    """A task with everything needed to recreate it in another database.

    `webhook_auth` is as the store holds it when read by `Store.export_tasks` (sealed
    `fernet:...` under SCHEDULER_ENCRYPTION_KEY), and in clear in the file and when given
    to `Store.import_tasks`, which seals it with the target's key. `payload_json` is the
    payload's JSON text as stored, byte for byte."""

    id: str
    webhook_url: str
    webhook_auth: str | None = field(repr=False)
    payload_json: str
    execute_at: datetime
    next_attempt_at: datetime
    status: TaskStatus
    attempts: int
    budget_start: int  # attempts already made when the current retry budget began
    max_retries: int | None
    has_failed: bool
    idempotency_key: str | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    history: tuple[ExportedAttempt, ...] = ()


@dataclass(frozen=True)
class ExportCounts:
    """Tasks by status in a database (every status present), and how many of the running
    ones hold a lease that has expired (their dispatcher is gone)."""

    by_status: Mapping[TaskStatus, int]
    expired_leases: int = 0


@dataclass
class ImportResult:
    """What `Store.import_tasks` did with each task given, by id."""

    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # a task with this id was there already
    key_taken: list[str] = field(default_factory=list)  # another task holds its idempotency key


class ExportFileError(ValueError):
    """The file is not a complete export this version reads; the message says where and why,
    and never quotes a webhookAuth."""


# -- writing ---------------------------------------------------------------------------------


def time_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def header_line(dialect: str, statuses: Iterable[TaskStatus], config: RuntimeConfig) -> str:
    header = {
        "format": FORMAT,
        "version": VERSION,
        "dialect": dialect,
        "exportedAt": time_text(datetime.now(UTC)),  # informative only
        "statuses": sorted(s.value for s in statuses),
        "config": config.as_camel(),
    }
    return json.dumps(header) + "\n"


def task_line(task: ExportedTask, webhook_auth: str | None) -> str:
    """One task as a line, with `webhook_auth` (in clear) in place of the stored value."""
    line = {
        "id": task.id,
        "queue": DEFAULT_QUEUE,
        "webhookUrl": task.webhook_url,
        "webhookAuth": webhook_auth,
        "payloadJson": task.payload_json,
        "executeAt": time_text(task.execute_at),
        "nextAttemptAt": time_text(task.next_attempt_at),
        "status": task.status.value,
        "attempts": task.attempts,
        "budgetStart": task.budget_start,
        "maxRetries": task.max_retries,
        "hasFailed": task.has_failed,
        "idempotencyKey": task.idempotency_key,
        "lastError": task.last_error,
        "lastStatusCode": task.last_status_code,
        "createdAt": time_text(task.created_at),
        "updatedAt": time_text(task.updated_at),
        "resolvedAt": time_text(task.resolved_at) if task.resolved_at else None,
        "attemptHistory": [
            {
                "attempt": a.attempt,
                "startedAt": time_text(a.started_at),
                "finishedAt": time_text(a.finished_at) if a.finished_at else None,
                "durationMs": a.duration_ms,
                "statusCode": a.status_code,
                "error": a.error,
                "outcome": a.outcome,
                "latenessMs": a.lateness_ms,
            }
            for a in task.history
        ],
    }
    # ensure_ascii: the file is plain ASCII whatever the payload holds; payloadJson keeps
    # the stored text exactly all the same (json.loads gives back the same string).
    return json.dumps(line, ensure_ascii=True) + "\n"


def trailer_line(count: int) -> str:
    return json.dumps({"end": True, "tasks": count}) + "\n"


# -- reading ---------------------------------------------------------------------------------


def _time(**kwargs: Any) -> fields.AwareDateTime:
    return fields.AwareDateTime(format="iso", **kwargs)


class AttemptLineSchema(Schema):
    """One entry of a task line's attemptHistory."""

    attempt = StrictInteger(required=True, validate=validate.Range(min=1))
    startedAt = _time(required=True)
    finishedAt = _time(allow_none=True, load_default=None)
    durationMs = StrictInteger(allow_none=True, load_default=None)
    statusCode = StrictInteger(allow_none=True, load_default=None)
    error = fields.String(allow_none=True, load_default=None)
    outcome = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.OneOf([*(o.value for o in AttemptOutcome), "snoozed"]),
    )
    latenessMs = StrictInteger(allow_none=True, load_default=None)


class TaskLineSchema(Schema):
    """One task line of an export file. Unknown fields are refused."""

    id = fields.String(required=True)
    queue = fields.String(load_default=DEFAULT_QUEUE)
    webhookUrl = fields.String(required=True, validate=validate.Length(min=1))
    webhookAuth = fields.String(allow_none=True, load_default=None)
    payloadJson = fields.String(required=True)
    executeAt = _time(required=True)
    nextAttemptAt = _time(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in TaskStatus]))
    attempts = StrictInteger(required=True, validate=validate.Range(min=0))
    budgetStart = StrictInteger(load_default=0, validate=validate.Range(min=0))
    maxRetries = StrictInteger(
        allow_none=True, load_default=None, validate=validate.Range(min=0, max=1000)
    )
    hasFailed = fields.Boolean(load_default=False)
    idempotencyKey = fields.String(allow_none=True, load_default=None)
    lastError = fields.String(allow_none=True, load_default=None)
    lastStatusCode = StrictInteger(allow_none=True, load_default=None)
    createdAt = _time(required=True)
    updatedAt = _time(required=True)
    resolvedAt = _time(allow_none=True, load_default=None)
    attemptHistory = fields.List(fields.Nested(AttemptLineSchema), load_default=list)

    @validates("id")
    def _check_id(self, value: str, **_: Any) -> None:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValidationError("Not a task id (a UUID).") from None

    @validates("queue")
    def _check_queue(self, value: str, **_: Any) -> None:
        if value != DEFAULT_QUEUE:
            raise ValidationError(f"No queue named {value!r}.")

    @validates("payloadJson")
    def _check_payload(self, value: str, **_: Any) -> None:
        try:
            json.loads(value)
        except ValueError:
            raise ValidationError("Not JSON text.") from None


_TASK_SCHEMA = TaskLineSchema()


def _task(data: dict[str, Any]) -> ExportedTask:
    return ExportedTask(
        id=str(uuid.UUID(data["id"])),
        webhook_url=data["webhookUrl"],
        webhook_auth=data["webhookAuth"],
        payload_json=data["payloadJson"],
        execute_at=data["executeAt"],
        next_attempt_at=data["nextAttemptAt"],
        status=TaskStatus(data["status"]),
        attempts=data["attempts"],
        budget_start=data["budgetStart"],
        max_retries=data["maxRetries"],
        has_failed=data["hasFailed"],
        idempotency_key=data["idempotencyKey"],
        last_error=data["lastError"],
        last_status_code=data["lastStatusCode"],
        created_at=data["createdAt"],
        updated_at=data["updatedAt"],
        resolved_at=data["resolvedAt"],
        history=tuple(
            ExportedAttempt(
                attempt=a["attempt"],
                started_at=a["startedAt"],
                finished_at=a["finishedAt"],
                duration_ms=a["durationMs"],
                status_code=a["statusCode"],
                error=a["error"],
                outcome=a["outcome"],
                lateness_ms=a["latenessMs"],
            )
            for a in data["attemptHistory"]
        ),
    )


def _details(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error messages as `field: reason` lines (values never quoted)."""
    if isinstance(messages, dict):
        return [
            line
            for key, value in messages.items()
            for line in _details(value, f"{prefix}{key}." if prefix or key else "")
        ]
    reasons = messages if isinstance(messages, list) else [messages]
    return [f"{prefix.rstrip('.')}: {' '.join(str(r) for r in reasons)}"]


@dataclass(frozen=True)
class ExportHeader:
    dialect: str
    statuses: tuple[str, ...]
    config: dict[str, Any]


def read_header(line: str) -> ExportHeader:
    """The header line; ExportFileError unless it is one this version reads."""
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ExportFileError(f"line 1: not a {FORMAT} file (made by `scheduler export`)")
    if header.get("version") != VERSION:
        raise ExportFileError(
            f"line 1: export format version {header.get('version')!r}; this scheduler-core "
            f"reads version {VERSION}"
        )
    config = header.get("config")
    if not isinstance(config, dict):
        raise ExportFileError("line 1: the header holds no config object")
    return ExportHeader(
        dialect=str(header.get("dialect")),
        statuses=tuple(header.get("statuses") or ()),
        config=config,
    )


def config_columns(header: ExportHeader, current: RuntimeConfig) -> dict[str, int]:
    """The header's config as columns for Store.update_config, every key checked against
    the bounds; ExportFileError naming each bad key."""
    try:
        return validate_changes(current, dict(header.config), camel=True)
    except ConfigError as exc:
        raise ExportFileError(f"line 1: config: {exc}") from None


def read_tasks(lines: IO[str]) -> Iterator[tuple[int, ExportedTask]]:
    """(line number, task) for every task line after the header, checked line by line;
    ExportFileError at the first bad line, or at the end when the trailer is missing or
    counts other than the lines read. `lines` must be positioned after the header."""
    count = 0
    number = 1
    ended = False
    for number, raw in enumerate(lines, start=2):
        if ended:
            if raw.strip():
                raise ExportFileError(f"line {number}: text after the end line")
            continue
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ExportFileError(
                f"line {number}: not JSON ({exc.args[0].split(':')[0]})"
            ) from None
        if not isinstance(data, dict):
            raise ExportFileError(f"line {number}: not a JSON object")
        if data.get("end") is True:
            if data.get("tasks") != count:
                raise ExportFileError(
                    f"line {number}: the end line counts {data.get('tasks')!r} tasks, the file "
                    f"holds {count}"
                )
            ended = True
            continue
        try:
            loaded = _TASK_SCHEMA.load(data)
        except ValidationError as exc:
            reasons = "; ".join(_details(exc.messages))
            raise ExportFileError(f"line {number}: {reasons}") from None
        count += 1
        yield number, _task(loaded)
    if not ended:
        raise ExportFileError(
            f"the file ends at line {number} without its end line: it was cut short "
            "(export again, or copy it whole)"
        )

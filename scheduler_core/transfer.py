"""The file `scheduler export` writes and `scheduler import` reads: tasks, queues and
schedules moved between databases (SQLite to PostgreSQL, or to a database with another
encryption key).

JSON Lines, UTF-8, one object a line:

- first, the header: ``{"format": "scheduler-core-export", "version": 2, "dialect": ...,
  "exportedAt": ..., "statuses": [...], "queues": [...], "schedules": [...]}``: every
  queue (``{"name", "paused", "config": {camelCase runtime config}}``, see
  `QueueEntrySchema`) and every schedule (its columns, its ``webhookAuth`` in clear, see
  `ScheduleEntrySchema`), by name;
- then one task a line, in creation order (see `TaskLineSchema`): every column a task
  needs to go on where it stopped in the other database (its ``queue`` and ``schedule``
  included), its attempt history, its ``webhookAuth`` in clear (the two databases may seal
  it with different keys) and its payload's stored JSON text, verbatim, as the string
  ``payloadJson``;
- last, the trailer: ``{"end": true, "tasks": N}``. A file without it was cut short (a
  full disk, an interrupted copy) and is refused before anything is imported.

Times are UTC ISO-8601 with microseconds and a Z, exactly as stored on either backend.

Version 1 (before named queues) is still read: its header holds ``"config"``, the one
queue's, instead of ``queues`` and ``schedules``; its tasks are all in ``default``.
"""

from __future__ import annotations

import json
import uuid
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from scheduler_core.marshmallow_base import StrictInteger
from scheduler_core.models import AttemptOutcome, StatusRule, TaskStatus
from scheduler_core.names import name_problem
from scheduler_core.runtime_config import ConfigError, RuntimeConfig, validate_changes
from scheduler_core.status_codes import StatusRuleError, parse_rules

FORMAT = "scheduler-core-export"
VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_QUEUE = "default"
# Queue and schedule names (SPEC.md): as the API and the tables' CHECKs have them.
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
    queue: str = DEFAULT_QUEUE
    schedule: str | None = None  # the schedule whose fire made the task
    # The delivery rules and trace context (None: the defaults, none).
    not_after: datetime | None = None
    success_codes: tuple[StatusRule, ...] | None = None
    stale_codes: tuple[StatusRule, ...] | None = None
    traceparent: str | None = None


@dataclass(frozen=True)
class ExportedQueue:
    """A queue's config row. `columns` are the config keys the file gave (every one, from
    this version's export; a version 1 file may lack the newer keys), checked against the
    bounds; `paused` is None when the file does not say (version 1)."""

    name: str
    columns: Mapping[str, int]
    paused: bool | None = False

    @property
    def config(self) -> RuntimeConfig:
        """The config a queue created from this entry gets: the defaults, then `columns`."""
        return RuntimeConfig(**{**RuntimeConfig().as_dict(), **self.columns})


@dataclass(frozen=True)
class ExportedSchedule:
    """A schedule with every column. `webhook_auth` as stored when read by
    `Store.export_schedules`, in clear in the file and when given to
    `Store.import_schedules`, which seals it with the target's key, as tasks'."""

    name: str
    cron: str
    timezone: str
    catch_up: str
    paused: bool
    webhook_url: str
    webhook_auth: str | None = field(repr=False)
    payload_json: str
    queue: str
    max_retries: int | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    not_after: datetime | None = None
    success_codes: tuple[StatusRule, ...] | None = None
    stale_codes: tuple[StatusRule, ...] | None = None


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


def _time_or_none(value: datetime | None) -> str | None:
    return None if value is None else time_text(value)


def _codes_or_none(codes: tuple[StatusRule, ...] | None) -> list[StatusRule] | None:
    return None if codes is None else list(codes)


def header_line(
    dialect: str,
    statuses: Iterable[TaskStatus],
    queues: Sequence[ExportedQueue],
    schedules: Sequence[tuple[ExportedSchedule, str | None]],
) -> str:
    """The header: every queue, and every schedule with its webhookAuth (in clear) given
    beside it in place of the stored value."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "dialect": dialect,
        "exportedAt": time_text(datetime.now(UTC)),  # informative only
        "statuses": sorted(s.value for s in statuses),
        "queues": [
            {"name": q.name, "paused": q.paused, "config": q.config.as_camel()} for q in queues
        ],
        "schedules": [
            {
                "name": s.name,
                "cron": s.cron,
                "timezone": s.timezone,
                "catchUp": s.catch_up,
                "paused": s.paused,
                "webhookUrl": s.webhook_url,
                "webhookAuth": auth,
                "payloadJson": s.payload_json,
                "queue": s.queue,
                "maxRetries": s.max_retries,
                "nextFireAt": _time_or_none(s.next_fire_at),
                "lastFireAt": _time_or_none(s.last_fire_at),
                "createdAt": time_text(s.created_at),
                "updatedAt": time_text(s.updated_at),
                "notAfter": _time_or_none(s.not_after),
                "successCodes": _codes_or_none(s.success_codes),
                "staleCodes": _codes_or_none(s.stale_codes),
            }
            for s, auth in schedules
        ],
    }
    return json.dumps(header, ensure_ascii=True) + "\n"


def task_line(task: ExportedTask, webhook_auth: str | None) -> str:
    """One task as a line, with `webhook_auth` (in clear) in place of the stored value."""
    line = {
        "id": task.id,
        "queue": task.queue,
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
        "schedule": task.schedule,
        "notAfter": _time_or_none(task.not_after),
        "successCodes": _codes_or_none(task.success_codes),
        "staleCodes": _codes_or_none(task.stale_codes),
        "traceparent": task.traceparent,
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


def _check_name(value: str) -> None:
    problem = name_problem(value)
    if problem:
        raise ValidationError(problem)


def _check_json_text(value: str) -> None:
    try:
        json.loads(value)
    except ValueError:
        raise ValidationError("Not JSON text.") from None


class _RulesField(fields.Field[tuple[StatusRule, ...]]):
    """successCodes / staleCodes: a list of status rules, read by parse_rules."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[StatusRule, ...]:
        if not isinstance(value, list):
            raise ValidationError("Not a list of status codes.")
        try:
            return parse_rules(value)
        except StatusRuleError as exc:
            raise ValidationError(str(exc)) from None


class TaskLineSchema(Schema):
    """One task line of an export file. Unknown fields are refused."""

    id = fields.String(required=True)
    queue = fields.String(load_default=DEFAULT_QUEUE, validate=_check_name)
    schedule = fields.String(allow_none=True, load_default=None, validate=_check_name)
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
    # Delivery rules and trace context (absent from files of earlier versions: none).
    notAfter = _time(allow_none=True, load_default=None)
    successCodes = _RulesField(allow_none=True, load_default=None)
    staleCodes = _RulesField(allow_none=True, load_default=None)
    traceparent = fields.String(allow_none=True, load_default=None)

    @validates("id")
    def _check_id(self, value: str, **_: Any) -> None:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValidationError("Not a task id (a UUID).") from None

    @validates("payloadJson")
    def _check_payload(self, value: str, **_: Any) -> None:
        _check_json_text(value)


class QueueEntrySchema(Schema):
    """One entry of the header's `queues`: the config is checked apart (config_columns)."""

    name = fields.String(required=True, validate=_check_name)
    paused = fields.Boolean(required=True)
    config = fields.Dict(keys=fields.String(), required=True)


class ScheduleEntrySchema(Schema):
    """One entry of the header's `schedules`. Unknown fields are refused."""

    name = fields.String(required=True, validate=_check_name)
    cron = fields.String(required=True, validate=validate.Length(min=1, max=200))
    timezone = fields.String(required=True)
    catchUp = fields.String(required=True, validate=validate.OneOf(["latest", "none"]))
    paused = fields.Boolean(required=True)
    webhookUrl = fields.String(required=True, validate=validate.Length(min=1))
    webhookAuth = fields.String(allow_none=True, load_default=None)
    payloadJson = fields.String(required=True, validate=_check_json_text)
    queue = fields.String(required=True, validate=_check_name)
    maxRetries = StrictInteger(
        allow_none=True, load_default=None, validate=validate.Range(min=0, max=1000)
    )
    nextFireAt = _time(allow_none=True, load_default=None)
    lastFireAt = _time(allow_none=True, load_default=None)
    createdAt = _time(required=True)
    updatedAt = _time(required=True)
    notAfter = _time(allow_none=True, load_default=None)
    successCodes = _RulesField(allow_none=True, load_default=None)
    staleCodes = _RulesField(allow_none=True, load_default=None)

    @validates("timezone")
    def _check_timezone(self, value: str, **_: Any) -> None:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError("Not an IANA time zone.") from None


class _HeaderV2Schema(Schema):
    queues = fields.List(fields.Nested(QueueEntrySchema), required=True)
    schedules = fields.List(fields.Nested(ScheduleEntrySchema), required=True)


_TASK_SCHEMA = TaskLineSchema()
_HEADER_V2_SCHEMA = _HeaderV2Schema()


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
        queue=data["queue"],
        schedule=data["schedule"],
        not_after=data["notAfter"],
        success_codes=data["successCodes"],
        stale_codes=data["staleCodes"],
        traceparent=data["traceparent"],
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
    version: int
    statuses: tuple[str, ...]
    queues: tuple[ExportedQueue, ...]
    schedules: tuple[ExportedSchedule, ...]


def read_header(line: str) -> ExportHeader:
    """The header line, every queue's config and every schedule checked; ExportFileError
    unless it is one this version reads."""
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ExportFileError(f"line 1: not a {FORMAT} file (made by `scheduler export`)")
    version = header.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ExportFileError(
            f"line 1: export format version {version!r}; this scheduler-core reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version == 1:  # before named queues: the one config is the default queue's
        config = header.get("config")
        if not isinstance(config, dict):
            raise ExportFileError("line 1: the header holds no config object")
        queues: tuple[ExportedQueue, ...] = (
            ExportedQueue(DEFAULT_QUEUE, config_columns(config, "config"), paused=None),
        )
        schedules: tuple[ExportedSchedule, ...] = ()
    else:
        queues, schedules = _queues_and_schedules(header)
    return ExportHeader(
        dialect=str(header.get("dialect")),
        version=int(version),
        statuses=tuple(header.get("statuses") or ()),
        queues=queues,
        schedules=schedules,
    )


def _queues_and_schedules(
    header: dict[str, Any],
) -> tuple[tuple[ExportedQueue, ...], tuple[ExportedSchedule, ...]]:
    try:
        loaded = _HEADER_V2_SCHEMA.load(
            {"queues": header.get("queues"), "schedules": header.get("schedules")}
        )
    except ValidationError as exc:
        raise ExportFileError(f"line 1: {'; '.join(_details(exc.messages))}") from None
    queues = tuple(
        ExportedQueue(q["name"], config_columns(q["config"], f"queues.{n}.config"), q["paused"])
        for n, q in enumerate(loaded["queues"])
    )
    schedules = tuple(
        ExportedSchedule(
            name=s["name"],
            cron=s["cron"],
            timezone=s["timezone"],
            catch_up=s["catchUp"],
            paused=s["paused"],
            webhook_url=s["webhookUrl"],
            webhook_auth=s["webhookAuth"],
            payload_json=s["payloadJson"],
            queue=s["queue"],
            max_retries=s["maxRetries"],
            next_fire_at=s["nextFireAt"],
            last_fire_at=s["lastFireAt"],
            created_at=s["createdAt"],
            updated_at=s["updatedAt"],
            not_after=s["notAfter"],
            success_codes=s["successCodes"],
            stale_codes=s["staleCodes"],
        )
        for s in loaded["schedules"]
    )
    for kind, names in (
        ("queue", [q.name for q in queues]),
        ("schedule", [s.name for s in schedules]),
    ):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ExportFileError(f"line 1: {kind} {twice[0]!r} is listed twice")
    return queues, schedules


def config_columns(config: dict[str, Any], where: str) -> dict[str, int]:
    """A config object of the file as columns, every key checked against the bounds;
    ExportFileError naming each bad key."""
    try:
        return validate_changes(RuntimeConfig(), dict(config), camel=True)
    except ConfigError as exc:
        raise ExportFileError(f"line 1: {where}: {exc}") from None


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

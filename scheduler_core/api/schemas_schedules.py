"""marshmallow schemas of /api/v1/schedules: the schedule to create, a PATCH, and how a
schedule is shown.

The task template's fields are checked as a task's are (TaskInputSchema's rules: the
webhook URL's scheme and the target policy, webhookAuth as a header value, maxRetries,
an existing queue); the cron expression field by field, the time zone against the IANA
database. Unknown fields are refused.
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    RAISE,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from scheduler_core.api.schemas import (
    DEFAULT_SCHEMES,
    MAX_AUTH_LENGTH,
    Timestamp,
    check_existing_queue,
    check_name,
    check_webhook_url,
    header_value_problem,
    rules_output_fields,
)
from scheduler_core.api.schemas_rules import DeliveryRulesInput
from scheduler_core.marshmallow_base import ResponseSchema, StrictBoolean, StrictInteger
from scheduler_core.models import DEFAULT_QUEUE
from scheduler_core.names import NAME_RULE
from scheduler_core.redaction import masked_url
from scheduler_core.schedules import CatchUp, NewSchedule, cron_problem, timezone_problem

MAX_CRON_LENGTH = 256
CATCH_UP_VALUES = [c.value for c in CatchUp]


def _check_cron(value: str) -> None:
    if len(value) > MAX_CRON_LENGTH:
        raise ValidationError(f"Must be at most {MAX_CRON_LENGTH} characters.")
    problem = cron_problem(value)
    if problem:
        raise ValidationError(problem)


def _check_timezone(value: str) -> None:
    problem = timezone_problem(value)
    if problem:
        raise ValidationError(problem)


def _check_auth(value: str | None) -> None:
    if value is None:
        return
    if len(value) > MAX_AUTH_LENGTH:
        raise ValidationError(f"Longer than maximum length {MAX_AUTH_LENGTH}.")
    if header_value_problem(value):
        raise ValidationError(
            "Must be a valid header value: no control characters, no leading whitespace, "
            "only ISO-8859-1 characters."
        )


def _cron_field(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=_check_cron,
        metadata={
            "description": "Five fields, standard cron syntax: minute hour day-of-month "
            "month day-of-week (`30 2 * * *`, `*/15 * * * MON-FRI`), read in `timezone`. "
            "A refusal names the field and why.",
            "example": "0 3 * * *",
        },
        **kwargs,
    )


def _timezone_field(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=_check_timezone,
        metadata={
            "description": "IANA time zone the expression is read in (default UTC). At a "
            "daylight-saving change a fixed time in the skipped hour runs once at the first "
            "valid moment after it, one in the repeated hour runs once (Debian cron).",
            "example": "Europe/Berlin",
        },
        **kwargs,
    )


def _catch_up_field(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=validate.OneOf(CATCH_UP_VALUES, error="Must be one of: latest, none."),
        metadata={
            "description": "After downtime (a fire time over 60 s late): `latest` fires the "
            "most recent missed time once, never older ones; `none` fires nothing missed.",
        },
        **kwargs,
    )


class _TemplateFields(DeliveryRulesInput):
    """The task template, checked as a task's fields are, delivery rules included (a
    template's notAfter is a fixed time: every task fired after it ends stale unsent)."""

    class Meta:
        unknown = RAISE

    webhookAuth = fields.String(
        allow_none=True,
        validate=_check_auth,
        metadata={
            "description": "Sent verbatim as each callback's Authorization header. "
            "Write-only: never returned, never logged (null in a PATCH removes it).",
            "writeOnly": True,
        },
    )
    payload = fields.Raw(
        allow_none=True,
        metadata={"description": "Any JSON value, delivered in each callback's body."},
    )
    maxRetries = StrictInteger(
        allow_none=True,
        validate=validate.Range(min=0, max=1000),
        metadata={"description": "Each task's retry override; null: the queue's max_retries."},
    )
    queue = fields.String(
        allow_none=True,
        validate=check_existing_queue,
        metadata={"description": "An existing queue for the tasks (null or omitted: default)."},
    )

    def __init__(self, schemes: frozenset[str] = DEFAULT_SCHEMES, **kwargs: Any):
        super().__init__(**kwargs)
        self.schemes = schemes

    @validates("webhookUrl")
    def _check_url(self, value: str, **_: Any) -> None:
        check_webhook_url(value, self.schemes)


class ScheduleInputSchema(_TemplateFields):
    """A schedule to create: a name, when (cron, timezone, catchUp) and the task each
    fire enqueues."""

    name = fields.String(
        required=True,
        validate=check_name,
        metadata={"description": f"Unique; {NAME_RULE}"},
    )
    cron = _cron_field(required=True)
    timezone = _timezone_field(load_default="UTC")
    catchUp = _catch_up_field(load_default=CatchUp.LATEST.value)
    paused = StrictBoolean(
        load_default=False,
        metadata={"description": "Create it paused (no fire until resumed)."},
    )
    webhookUrl = fields.String(
        required=True,
        metadata={
            "description": "Absolute URL each fire's callback is sent to, checked as a "
            "task's is (scheme of a loaded delivery plugin, target policy).",
            "format": "uri",
        },
    )

    @staticmethod
    def new_schedule(body: dict[str, Any]) -> NewSchedule:
        return NewSchedule(
            name=body["name"],
            cron=body["cron"],
            timezone=body["timezone"],
            catch_up=CatchUp(body["catchUp"]),
            paused=body["paused"],
            webhook_url=body["webhookUrl"],
            webhook_auth=body.get("webhookAuth"),
            payload=body.get("payload"),
            queue=body.get("queue") or DEFAULT_QUEUE,
            max_retries=body.get("maxRetries"),
            not_after=body.get("notAfter"),
            success_codes=body.get("successCodes"),
            stale_codes=body.get("staleCodes"),
        )


# PATCH field (camelCase) -> Schedule attribute
PATCH_FIELDS = {
    "cron": "cron",
    "timezone": "timezone",
    "catchUp": "catch_up",
    "webhookUrl": "webhook_url",
    "webhookAuth": "webhook_auth",
    "payload": "payload",
    "queue": "queue",
    "maxRetries": "max_retries",
    "notAfter": "not_after",
    "successCodes": "success_codes",
    "staleCodes": "stale_codes",
}


class SchedulePatchSchema(_TemplateFields):
    """Some fields of a schedule to change (at least one). A new cron or timezone moves
    nextFireAt to the first fire time from now. Pause and resume have their own routes;
    the name cannot change."""

    OPENAPI_EXTRA = {"minProperties": 1}

    cron = _cron_field()
    timezone = _timezone_field()
    catchUp = _catch_up_field()
    webhookUrl = fields.String(
        metadata={"description": "The callback URL, checked as a task's is.", "format": "uri"}
    )

    @validates_schema
    def _at_least_one(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(f"Name at least one field to change: {', '.join(PATCH_FIELDS)}.")

    def handle_error(self, error: ValidationError, data: Any, **kwargs: Any) -> None:
        messages = error.messages
        if isinstance(messages, dict) and any(k in FIXED for k in messages):
            fixed = {
                key: (
                    ["Cannot be changed by PATCH; use pause/resume."]
                    if key == "paused"
                    else ["Cannot be changed; create a schedule under the new name."]
                    if key == "name"
                    else ["Read-only: the scheduler sets it."]
                    if key in FIXED
                    else value
                )
                for key, value in messages.items()
            }
            raise ValidationError(fixed) from error
        raise error

    @staticmethod
    def changes(body: dict[str, Any]) -> dict[str, Any]:
        """The store's changes (model attribute names) for a loaded body."""
        changes = {PATCH_FIELDS[key]: value for key, value in body.items()}
        if "queue" in changes and changes["queue"] is None:
            changes["queue"] = DEFAULT_QUEUE
        if "catch_up" in changes:
            changes["catch_up"] = CatchUp(changes["catch_up"])
        return changes


FIXED = frozenset(("name", "paused", "nextFireAt", "lastFireAt", "createdAt", "updatedAt"))


def _out(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **extra}


class ScheduleOutputSchema(ResponseSchema):
    """A schedule as the API returns it. There is deliberately no webhookAuth field: it
    is write-only."""

    class Meta(ResponseSchema.Meta):
        ordered = True

    name = fields.String(required=True, metadata=_out("The schedule's unique name."))
    cron = fields.String(required=True, metadata=_out("The five-field cron expression."))
    timezone = fields.String(required=True, metadata=_out("The IANA time zone it is read in."))
    catchUp = fields.String(
        attribute="catch_up",
        required=True,
        validate=validate.OneOf(CATCH_UP_VALUES),
        metadata=_out("latest or none: what a fire time missed during downtime does."),
    )
    paused = fields.Boolean(required=True, metadata=_out("A paused schedule fires nothing."))
    webhookUrl = fields.Function(
        lambda schedule: masked_url(schedule.webhook_url),
        required=True,
        metadata=_out(
            "The callback URL, with any credentials (userinfo, query values) masked.",
            type="string",
        ),
    )
    payload = fields.Raw(
        allow_none=True, required=True, metadata=_out("The JSON value each task carries.")
    )
    queue = fields.String(required=True, metadata=_out("The queue each task goes to."))
    maxRetries = fields.Integer(
        attribute="max_retries",
        allow_none=True,
        required=True,
        metadata=_out("Each task's retry override, or null."),
    )
    notAfter, successCodes, staleCodes = rules_output_fields()  # each fired task's
    nextFireAt = Timestamp(
        attribute="next_fire_at",
        allow_none=True,
        required=True,
        metadata=_out("The next fire time (UTC); null while paused."),
    )
    lastFireAt = Timestamp(
        attribute="last_fire_at",
        allow_none=True,
        required=True,
        metadata=_out("The last fire time enqueued (UTC), or null; a trigger does not count."),
    )
    createdAt = Timestamp(attribute="created_at", required=True, metadata=_out("Created at."))
    updatedAt = Timestamp(
        attribute="updated_at", required=True, metadata=_out("Last changed through the API.")
    )


class ScheduleListSchema(ResponseSchema):
    """Every schedule, by name."""

    schedules = fields.List(fields.Nested(ScheduleOutputSchema), required=True)


schedule_output = ScheduleOutputSchema()

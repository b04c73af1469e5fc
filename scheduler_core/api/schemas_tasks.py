"""marshmallow schemas of the task routes beyond enqueue: the list query, PATCH, and the
filter of the bulk actions, with what the bulk actions answer.

Each request schema does all of a request's checking, names every problem field by field,
and gives the route the values it needs (a `TaskFilter`'s pieces, a keyset position);
`validation_error` turns its messages into the API's 400.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from scheduler_core.api.errors import ApiError
from scheduler_core.api.schemas import (
    EARLIEST,
    LATEST,
    TaskInputSchema,
    TaskOutputSchema,
    check_existing_queue,
    quoted,
)
from scheduler_core.api.schemas_rules import DeliveryRulesInput
from scheduler_core.marshmallow_base import Rfc3339DateTime
from scheduler_core.models import TaskFilter, TaskStatus
from scheduler_core.store.base import decode_cursor

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATUS_NAMES = ", ".join(s.value for s in TaskStatus)
_STATUS_VALUES = frozenset(s.value for s in TaskStatus)
LIMIT_MESSAGE = f"Must be an integer from 1 to {MAX_LIMIT}."
CURSOR_MESSAGE = "Pass back the nextCursor of a previous page."
BLANK_IS_ABSENT = frozenset(("status", "queue", "cursor"))  # as before the schema


def status_problem(name: str) -> str | None:
    """Why `name` is not a task status, or None."""
    if name == "":
        return f"An empty status; name each one of: {STATUS_NAMES}."
    if name not in _STATUS_VALUES:
        return f"Unknown status {quoted(name)}; must be one of: {STATUS_NAMES}."
    return None


def _check_time(value: datetime) -> None:
    if not EARLIEST <= value <= LATEST:
        raise ValidationError("Must be between 1970 and 9000.")


class StatusList(fields.Field[frozenset[TaskStatus]]):
    """Statuses as a query writes them, comma-separated (`pending,stale`), each checked."""

    def __init__(self, **kwargs: Any):
        super().__init__(metadata={"type": "string", **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> frozenset[TaskStatus]:
        if not isinstance(value, str):
            raise ValidationError("Not a valid string.")
        names = value.split(",")
        problems = [p for p in (status_problem(name) for name in names) if p]
        if problems:
            raise ValidationError(problems)
        return frozenset(TaskStatus(name) for name in names)


class QueryLimit(fields.Integer):
    """A page size from the query string: ASCII digits only ("²".isdigit() is True but
    int() refuses it; int() would read "５" as 5 and " 5" as 5)."""

    def __init__(self, **kwargs: Any):
        super().__init__(
            validate=validate.Range(min=1, max=MAX_LIMIT, error=LIMIT_MESSAGE),
            error_messages={"invalid": LIMIT_MESSAGE},
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise self.make_error("invalid")
        return int(value)


class KeysetCursor(fields.Field[int]):
    """A nextCursor handed out by the list, read back as its keyset position."""

    def __init__(self, **kwargs: Any):
        super().__init__(metadata={"type": "string", **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        try:
            if not isinstance(value, str):
                raise ValueError("not a string")
            return decode_cursor(value)
        except ValueError:
            raise ValidationError(CURSOR_MESSAGE) from None


class ListQuerySchema(Schema):
    """The query of `GET /api/v1/tasks`. Other query parameters are ignored; an empty
    `status`, `queue` or `cursor` is as if absent."""

    class Meta:
        unknown = EXCLUDE

    status = StatusList(
        load_default=None,
        metadata={"description": f"Comma-separated statuses, any of: {STATUS_NAMES}."},
    )
    queue = fields.String(
        load_default=None,
        validate=check_existing_queue,
        metadata={"description": "Only tasks of this queue (an existing one)."},
    )
    limit = QueryLimit(load_default=DEFAULT_LIMIT, metadata={"description": "Page size."})
    cursor = KeysetCursor(
        load_default=None,
        metadata={"description": "The nextCursor of the previous page."},
    )

    @pre_load
    def _from_query(self, data: Any, **_: Any) -> Any:
        # `status=a&status=b` names several statuses as `status=a,b` does (what
        # requests and most clients send for a list). Any other parameter given twice
        # with different values is refused: silently keeping one would hide tasks.
        if not hasattr(data, "getlist"):
            return data
        query: dict[str, str] = {}
        repeated: dict[str, list[str]] = {}
        for key in data:
            values = [v for v in data.getlist(key) if not (key in BLANK_IS_ABSENT and v == "")]
            if not values:
                continue
            if key == "status":
                query[key] = ",".join(values)
            elif len(set(values)) > 1 and key in self.fields:
                repeated[key] = [f"Give {key} once; it came {len(values)} times."]
            else:
                query[key] = values[0]
        if repeated:
            raise ValidationError(repeated)
        return query

    @staticmethod
    def task_filter(query: dict[str, Any]) -> TaskFilter:
        """The store's filter for a loaded query."""
        return TaskFilter(statuses=query["status"], queue=query["queue"])


class TaskPatchSchema(DeliveryRulesInput):
    """`PATCH /api/v1/tasks/{id}`: what may change in a pending task: executeAt and the
    delivery rules (null: back to the rule's default). At least one field; any other field
    is refused, the task's other fields by name."""

    OPENAPI_EXTRA = {"minProperties": 1}

    class Meta:
        unknown = RAISE

    executeAt = Rfc3339DateTime(
        metadata={"description": "The new due time, RFC 3339 with an offset; past: due now."},
    )

    @validates("executeAt")
    def _check_execute_at(self, value: datetime, **_: Any) -> None:
        _check_time(value)

    @validates_schema
    def _at_least_one(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(f"Name at least one field to change: {self._changeable()}.")

    def handle_error(self, error: ValidationError, data: Any, **kwargs: Any) -> None:
        """A field a task has but PATCH cannot change says so, rather than "Unknown"."""
        messages = error.messages
        if isinstance(messages, dict):
            fixed = {
                key: (
                    [f"Cannot be changed; only {self._changeable()} can (or enqueue anew)."]
                    if key in UNCHANGEABLE
                    else value
                )
                for key, value in messages.items()
            }
            raise ValidationError(fixed) from error
        raise error

    def _changeable(self) -> str:
        return ", ".join(self.fields)


UNCHANGEABLE = (
    frozenset(TaskInputSchema(schemes=frozenset()).fields) | frozenset(TaskOutputSchema().fields)
) - frozenset(TaskPatchSchema().fields)


class BulkFilterSchema(Schema):
    """The body of `POST /api/v1/tasks:retry` and `:cancel`: which tasks. Every field
    given must match; at least one field. `createdAfter` is inclusive, `createdBefore`
    exclusive, and must be later than `createdAfter` when both are given."""

    OPENAPI_EXTRA = {"minProperties": 1}

    class Meta:
        unknown = RAISE

    status = fields.List(
        fields.String(
            validate=validate.OneOf(
                sorted(_STATUS_VALUES),
                error=f"Unknown status {{input!r}}; must be one of: {STATUS_NAMES}.",
            )
        ),
        validate=validate.Length(min=1, error="Name at least one status."),
        metadata={"description": f"Any of: {STATUS_NAMES}."},
    )
    queue = fields.String(
        validate=check_existing_queue,
        metadata={
            "description": "Only tasks of this queue (an existing one).",
        },
    )
    # Any time at all: a bound far out takes everything on its side.
    createdBefore = Rfc3339DateTime(
        metadata={"description": "Only tasks created before this (exclusive)."}
    )
    createdAfter = Rfc3339DateTime(metadata={"description": "Only tasks created at or after this."})

    @validates_schema
    def _check_filter(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(
                "Name at least one of status, queue, createdBefore, createdAfter "
                "(to take every task, name every status)."
            )
        before, after = data.get("createdBefore"), data.get("createdAfter")
        if before is not None and after is not None and before <= after:
            raise ValidationError(
                "Must be later than createdAfter: the range holds no time.", "createdBefore"
            )

    @staticmethod
    def task_filter(body: dict[str, Any]) -> TaskFilter:
        """The store's filter for a loaded body; times in UTC."""
        statuses = body.get("status")
        before, after = body.get("createdBefore"), body.get("createdAfter")
        return TaskFilter(
            statuses=frozenset(TaskStatus(s) for s in statuses) if statuses is not None else None,
            queue=body.get("queue"),
            created_before=utc_bound(before) if before is not None else None,
            created_after=utc_bound(after) if after is not None else None,
        )


def utc_bound(moment: datetime) -> datetime:
    """`moment` in UTC; one beyond what UTC can hold in a datetime (year 1 at +05:00, say)
    as the earliest or latest time there is, which bounds the same tasks."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year < 5000 else datetime.max).replace(tzinfo=UTC)


# -- what the bulk routes answer (for the API document; the routes write it) -------------


class BulkResultSchema(Schema):
    """What a bulk action changed."""

    count = fields.Integer(metadata={"description": "How many tasks changed."})


# -- errors ---------------------------------------------------------------------------


def validation_error(what: str, messages: Any) -> ApiError:
    """The API's 400 for a schema's `messages`: field-by-field details (string keys, as
    JSON has them; a list's items by index), and a message that quotes the first few
    problems, so a client that shows only the message shows what is wrong."""
    details = _string_keys(messages) if isinstance(messages, dict) else {"_schema": messages}
    problems = [
        text.rstrip(".") if field == "_schema" else f"{field}: {text.rstrip('.')}"
        for field, text in _flatten(details)
    ]
    summary = "; ".join(problems[:3])
    if len(problems) > 3:
        summary += f"; and {len(problems) - 3} more"
    return ApiError(400, "validation_error", f"{what} is not valid: {summary}.", details)


def _string_keys(messages: Any) -> Any:
    if isinstance(messages, dict):
        return {str(k): _string_keys(v) for k, v in messages.items()}
    return messages


def _flatten(details: Any, prefix: str = "") -> Any:
    if isinstance(details, dict):
        for key, value in details.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(details, list):
        for item in details:
            yield from _flatten(item, prefix)
    else:
        yield prefix or "_schema", str(details)


def load(schema: Schema, data: Any, what: str) -> dict[str, Any]:
    """`schema.load(data)`, or the API's 400 naming every problem."""
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise validation_error(what, exc.messages) from None
    return loaded


list_query = ListQuerySchema()
task_patch = TaskPatchSchema()
bulk_filter = BulkFilterSchema()

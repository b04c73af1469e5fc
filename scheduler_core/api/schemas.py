"""marshmallow schemas: what a task body may contain, and how a task is shown."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from flask import current_app
from marshmallow import ValidationError, fields, validate, validates
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from scheduler_core.api.schemas_rules import DeliveryRulesInput, StatusRules
from scheduler_core.marshmallow_base import ResponseSchema, Rfc3339DateTime, StrictInteger
from scheduler_core.models import DEFAULT_QUEUE, AttemptOutcome, TaskStatus
from scheduler_core.names import name_problem
from scheduler_core.redaction import masked_url
from scheduler_core.targets import (
    TargetError,
    TargetPolicy,
    current_policy,
    parse_host,
    refusal_at_enqueue,
)

# The schemes the built-in delivery plugin handles; the API passes the loaded plugins' set.
DEFAULT_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048
MAX_AUTH_LENGTH = 8192
MAX_KEY_LENGTH = 255
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
# What str.isspace() calls whitespace (re's \s on str is the same set), and the C0
# controls and DEL: none may appear in a webhook URL.
# RFC 3986's authority: userinfo@host:port from unreserved, pct-encoded, sub-delims, ":",
# "@" and the brackets of an IPv6 literal.
# Non-ASCII letters too: an internationalised name, which both parsers encode alike.
_AUTHORITY = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:@\[\]\u00a0-\U0010ffff]*")
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
# Any character outside what a header value may hold: TAB, visible ASCII, ISO-8859-1 upper half.
_HEADER_FORBIDDEN = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


def quoted(value: str, limit: int = 64) -> str:
    """`value` as an error message quotes what a client sent: repr, cut at `limit`."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_name(name: str) -> None:
    """A marshmallow validator for queue and schedule names."""
    problem = name_problem(name)
    if problem:
        raise ValidationError(problem)


def missing_queue_message(name: str) -> str:
    return f"No queue named {quoted(name)}."


def check_existing_queue(name: str) -> None:
    """A marshmallow validator, inside a request: the name rule, then that the queue
    exists in the app's store (`default` always does)."""
    check_name(name)
    if name == DEFAULT_QUEUE:
        return
    store = current_app.extensions["scheduler_store"]
    if name not in store.existing_queues({name}):
        raise ValidationError(missing_queue_message(name))


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")


def header_value_problem(value: str) -> bool:
    """Whether `value` cannot be sent as a header value (a NUL or any other control
    character, leading whitespace, a character beyond ISO-8859-1)."""
    return bool(value[:1].isspace() or _HEADER_FORBIDDEN.search(value))


def _header_value(value: str) -> None:
    """webhookAuth is sent verbatim as a header: refuse what no header can carry, here,
    rather than at delivery, where the HTTP library's error would quote the secret."""
    if header_value_problem(value):
        raise ValidationError(
            "Must be a valid header value: no control characters, no leading whitespace, "
            "only ISO-8859-1 characters."
        )


class TaskInputSchema(DeliveryRulesInput):
    """One task to enqueue, with its delivery rules (schemas_rules.py). Unknown fields are
    refused, so a typo like `webhookURL` is caught."""

    webhookUrl = fields.String(
        required=True,
        metadata={
            "description": "Absolute URL the callback is sent to; its scheme must be one a "
            "loaded delivery plugin handles (http and https out of the box).",
            "format": "uri",
            "maxLength": MAX_URL_LENGTH,
        },
    )
    webhookAuth = fields.String(
        allow_none=True,
        validate=[validate.Length(max=MAX_AUTH_LENGTH), _no_nul, _header_value],
        metadata={
            "description": "Sent verbatim as the callback's Authorization header. "
            "Write-only: never returned, never logged.",
            "writeOnly": True,
        },
    )
    executeAt = Rfc3339DateTime(
        allow_none=True,
        metadata={
            "description": "When to call: RFC 3339 with a UTC offset or Z. Default now; a "
            "past time is due at once."
        },
    )
    payload = fields.Raw(
        allow_none=True,
        metadata={
            "description": "Any JSON value, delivered in the callback body (null when omitted)."
        },
    )
    idempotencyKey = fields.String(
        allow_none=True,
        validate=[validate.Length(min=1, max=MAX_KEY_LENGTH), _no_nul],
        metadata={
            "description": "A second enqueue with the same key returns the first task (200) "
            "and creates nothing, while that task exists."
        },
    )
    maxRetries = StrictInteger(
        allow_none=True,
        validate=validate.Range(min=0, max=1000),
        metadata={
            "description": "Retries after the first attempt, for this task; null: the "
            "configuration's maxRetries, read at each failure."
        },
    )
    queue = fields.String(
        allow_none=True,
        validate=check_name,
        metadata={
            "description": "The name of an existing queue to put the task in (null or "
            "omitted: `default`). A queue that does not exist is refused (400)."
        },
    )

    def __init__(self, schemes: frozenset[str] = DEFAULT_SCHEMES, **kwargs: Any):
        super().__init__(**kwargs)
        self.schemes = schemes

    @validates("webhookUrl")
    def _check_url(self, value: str, **_: Any) -> None:
        check_webhook_url(value, self.schemes)

    @validates("executeAt")
    def _check_execute_at(self, value: datetime | None, **_: Any) -> None:
        if value is not None and not EARLIEST <= value <= LATEST:
            raise ValidationError("Must be between 1970 and 9000.")


def check_webhook_url(value: str, schemes: frozenset[str]) -> None:
    """Raise ValidationError unless `value` is an absolute URL of a host, at most
    MAX_URL_LENGTH characters, whose scheme is in `schemes`, read alike by every URL
    parser involved, whose host the process's target policy lets callbacks reach."""
    problem = webhook_url_problem(value, schemes)
    if problem is not None:
        raise ValidationError(problem)


def webhook_url_problem(value: str, schemes: frozenset[str]) -> str | None:
    """What is wrong with `value` as a webhook URL, or None."""
    return _url_problem(value, schemes, current_policy())


@functools.lru_cache(maxsize=1024)  # the tasks of an array mostly share their URL
def _url_problem(value: str, schemes: frozenset[str], policy: TargetPolicy) -> str | None:
    if len(value) > MAX_URL_LENGTH:
        return f"Must be at most {MAX_URL_LENGTH} characters."
    if _URL_FORBIDDEN.search(value):
        return "Must not contain whitespace or control characters."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        if "@" in value:  # urllib may quote a piece of the userinfo (a password's "[...]")
            return "Not a valid URL."
        return f"Not a valid URL: {exc}."
    scheme = parts.scheme.lower()
    if not scheme:
        return "Must be an absolute URL, like https://example.com/hook."
    if scheme not in schemes:
        return (
            f"Scheme {scheme!r} is not handled by any loaded delivery plugin "
            f"(handled: {', '.join(sorted(schemes)) or 'none'})."
        )
    if not parts.hostname:
        return "Must name a host."
    disagreement = parsers_disagree(value, parts)
    if disagreement:
        return disagreement
    refusal = refusal_at_enqueue(parts.hostname, policy)
    if refusal:
        return f"Target refused: {refusal}"
    return None


def parsers_disagree(value: str, parts: SplitResult) -> str | None:
    """Why the URL could be read differently by the parser that checks it (urllib's) and
    the one that calls it (urllib3's, under requests): a backslash or a second `@` in the
    authority, say, moves the host for one and not the other. None when they agree."""
    authority = parts.netloc
    if "\\" in value:
        return "Must not contain a backslash (URL parsers read it differently)."
    if authority.count("@") > 1 or not _AUTHORITY.fullmatch(authority):
        return "The host part holds characters URL parsers read differently."
    try:
        called = parse_url(value)
    except LocationParseError:
        return "Not a valid URL for the HTTP client."
    same = (
        (called.scheme or "").lower() == parts.scheme.lower()
        and _host_key(called.host or "") == _host_key(parts.hostname or "")
        and called.port == parts.port
    )
    return None if same else "URL parsers read this URL's host differently."


def _host_key(host: str) -> object:
    """A host as the target policy reads it (IDNA, IP spellings), to compare two parses."""
    try:
        return parse_host(host.strip("[]"))
    except TargetError:
        return host.lower()


@functools.lru_cache(maxsize=4096)
def timestamp_text(value: datetime | None) -> str | None:
    """A time as the API writes it: UTC, ISO-8601, with a Z; None stays None. (Cached:
    the tasks of one array share their creation time, and often their due time.)"""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Timestamp(fields.DateTime):
    """UTC, ISO-8601, with a Z. (A DateTime, so the OpenAPI document says date-time.)"""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return timestamp_text(value)


def _out(description: str, **extra: Any) -> dict[str, Any]:
    """An output field's metadata: always present in the JSON (so `required` in the
    OpenAPI document), described."""
    return {"description": description, **extra}


def rules_output_fields() -> tuple[Timestamp, StatusRules, StatusRules]:
    """The delivery rules as a task (or a schedule's template) shows them: notAfter,
    successCodes, staleCodes, null for a default. Made per schema, in place (an ordered
    schema keeps its fields in the order they were made)."""
    return (
        Timestamp(
            attribute="not_after",
            allow_none=True,
            required=True,
            metadata=_out("Never called after this time; null: no deadline."),
        ),
        StatusRules(
            attribute="success_codes",
            allow_none=True,
            required=True,
            metadata=_out('The status codes that resolve the task, as given; null: ["2xx"].'),
        ),
        StatusRules(
            attribute="stale_codes",
            allow_none=True,
            required=True,
            metadata=_out("The status codes that end the task stale at once; null: none."),
        ),
    )


class TaskOutputSchema(ResponseSchema):
    """A task as the API returns it. There is deliberately no webhookAuth field:
    it is write-only."""

    class Meta(ResponseSchema.Meta):
        ordered = True

    id = fields.String(required=True, metadata=_out("Opaque task id."))
    queue = fields.String(required=True, metadata=_out("The task's queue."))
    # Credentials the URL may carry (userinfo, query values) are never shown.
    webhookUrl = fields.Function(
        lambda task: masked_url(task.webhook_url),
        required=True,
        metadata=_out(
            "The callback URL, with any credentials (userinfo, query values) masked.",
            type="string",
        ),
    )
    executeAt = Timestamp(
        attribute="execute_at", required=True, metadata=_out("The time the client asked for.")
    )
    status = fields.Enum(
        TaskStatus,
        by_value=True,
        required=True,
        metadata=_out(
            "pending until due and while waiting for a retry; running while a delivery is "
            "in flight; resolved, stale (retries exhausted) or cancelled at the end.",
            type="string",
        ),
    )
    attempts = fields.Integer(
        required=True, metadata=_out("Delivery attempts started, successful or not.")
    )
    maxRetries = fields.Integer(
        attribute="max_retries",
        allow_none=True,
        required=True,
        metadata=_out("The task's override, or null when the configuration's applies."),
    )
    nextAttemptAt = Timestamp(
        attribute="next_attempt_at",
        required=True,
        metadata=_out("When the task is due next: executeAt until a failure."),
    )
    payload = fields.Raw(
        allow_none=True, required=True, metadata=_out("The JSON value given at enqueue.")
    )
    idempotencyKey = fields.String(
        attribute="idempotency_key",
        allow_none=True,
        required=True,
        metadata=_out("The key given at enqueue, or null."),
    )
    notAfter, successCodes, staleCodes = rules_output_fields()
    lastError = fields.String(
        attribute="last_error",
        allow_none=True,
        required=True,
        metadata=_out("Why the last attempt failed (printable text, at most 500 characters)."),
    )
    lastStatusCode = fields.Integer(
        attribute="last_status_code",
        allow_none=True,
        required=True,
        metadata=_out("The HTTP status of the last failed attempt, or null."),
    )
    createdAt = Timestamp(attribute="created_at", required=True, metadata=_out("Enqueued at."))
    updatedAt = Timestamp(attribute="updated_at", required=True, metadata=_out("Last changed at."))
    resolvedAt = Timestamp(
        attribute="resolved_at",
        allow_none=True,
        required=True,
        metadata=_out("When a delivery resolved the task; null until then."),
    )
    schedule = fields.String(
        allow_none=True,
        required=True,
        metadata=_out("The name of the schedule whose fire made the task, or null."),
    )


class AttemptOutputSchema(ResponseSchema):
    """One delivery attempt of a task."""

    class Meta(ResponseSchema.Meta):
        ordered = True

    attempt = fields.Integer(required=True, metadata=_out("1 for the first try."))
    startedAt = Timestamp(attribute="started_at", required=True, metadata=_out("Started at."))
    finishedAt = Timestamp(
        attribute="finished_at",
        allow_none=True,
        required=True,
        metadata=_out("Finished at; null while in flight."),
    )
    durationMs = fields.Integer(
        attribute="duration_ms",
        allow_none=True,
        required=True,
        metadata=_out("How long the attempt took, in ms."),
    )
    statusCode = fields.Integer(
        attribute="status_code",
        allow_none=True,
        required=True,
        metadata=_out("The receiver's final HTTP status, or null (timeout, refused...)."),
    )
    error = fields.String(
        allow_none=True, required=True, metadata=_out("Why the attempt failed, or null.")
    )
    # null while the attempt is in flight
    outcome = fields.Enum(
        AttemptOutcome,
        by_value=True,
        allow_none=True,
        required=True,
        metadata=_out("How the attempt ended; null while it is in flight.", type="string"),
    )
    latenessMs = fields.Integer(
        attribute="lateness_ms",
        allow_none=True,
        required=True,
        metadata=_out("First byte sent minus the time the task was due, in ms."),
    )


task_output = TaskOutputSchema()
attempt_output = AttemptOutputSchema()

"""The sender's delivery rules in a request (SPEC.md, "Delivery rules"): `notAfter`,
`successCodes`, `staleCodes`, as the enqueue, PATCH and schedule schemas read them, and
the checks they share.

- `notAfter`: an RFC 3339 time; the task is never called after it. Refused when it is
  earlier than the task's `executeAt` (or, with no `executeAt`, already past).
- `successCodes` / `staleCodes`: arrays of status codes 100..599 or classes "1xx".."5xx"
  (read by `status_codes.parse_rules`: "4XX" is "4xx", repeats dropped). null or omitted:
  the defaults (["2xx"] / none). A code or class named in both lists is refused, the
  default successCodes included (staleCodes ["2xx"] with no successCodes). Otherwise the
  more precise rule wins at judgement: successCodes [409] with staleCodes ["4xx"] resolves
  on 409 and ends stale on 404; staleCodes [204] with the default ["2xx"] ends stale on
  204.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validates, validates_schema

from scheduler_core.marshmallow_base import Rfc3339DateTime
from scheduler_core.models import StatusRule
from scheduler_core.status_codes import (
    DEFAULT_SUCCESS_CODES,
    MAX_CODE,
    MAX_RULES,
    MIN_CODE,
    StatusRuleError,
    parse_rules,
)

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
RULE_FIELDS = ("notAfter", "successCodes", "staleCodes")

# How the OpenAPI document shows a list of rules.
RULES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": MAX_RULES,
    "items": {
        "oneOf": [
            {"type": "integer", "minimum": MIN_CODE, "maximum": MAX_CODE},
            {"type": "string", "pattern": "^[1-5][xX][xX]$"},
        ]
    },
}


class StatusRules(fields.Field[tuple[StatusRule, ...]]):
    """A JSON array of status rules, read by `parse_rules`; written back as a list."""

    def __init__(self, **kwargs: Any):
        super().__init__(metadata={**RULES_SCHEMA, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[StatusRule, ...]:
        if not isinstance(value, list):
            raise ValidationError('Must be an array of status codes or classes, like [200, "4xx"].')
        try:
            return parse_rules(value)
        except StatusRuleError as exc:
            raise ValidationError(f"{exc}.") from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else list(value)


def rules_out(rules: tuple[StatusRule, ...] | None) -> list[StatusRule] | None:
    """successCodes / staleCodes as the API returns them: the list given, null for the
    default."""
    return None if rules is None else list(rules)


def overlap(
    success: tuple[StatusRule, ...] | None, stale: tuple[StatusRule, ...] | None
) -> list[StatusRule]:
    """The rules (codes or classes) both lists name (successCodes None: its default), in
    staleCodes' order. A code in one and its class in the other is no overlap: the code,
    more precise, decides that status."""
    if not stale:
        return []
    success = DEFAULT_SUCCESS_CODES if success is None else success
    return [rule for rule in stale if rule in success]


def overlap_message(rules: list[StatusRule], success_given: bool) -> str:
    shown = ", ".join(str(r) for r in rules[:5]) + (", ..." if len(rules) > 5 else "")
    where = "successCodes" if success_given else 'the default successCodes ["2xx"]'
    return f"A status cannot both resolve and end the task stale: {shown} also in {where}."


def not_after_problem(
    not_after: datetime | None,
    execute_at: datetime | None,
    now: datetime | None = None,
    *,
    check_now: bool = True,
) -> str | None:
    """Why `not_after` cannot go with `execute_at` (None: due now), or None. With
    `check_now`, a notAfter already past (the server's clock) is refused too, whatever
    executeAt says: such a task, or each task of a schedule, could never be called."""
    if not_after is None:
        return None
    if execute_at is not None and not_after < execute_at:
        return "Must not be earlier than executeAt: the task could never be called."
    if check_now and not_after < (now or datetime.now(UTC)):
        return "Must not be in the past: the task could never be called."
    return None


class DeliveryRulesInput(Schema):
    """The rule fields of a request, with their checks; mixed into the enqueue, PATCH and
    schedule schemas. Each check names its field; a pair that cannot go together names
    the field that says the later thing (notAfter, staleCodes)."""

    notAfter = Rfc3339DateTime(
        allow_none=True,
        metadata={
            "description": "Never called after this time (RFC 3339 with an offset); a task "
            'not resolved by then becomes stale with lastError "deadline passed". Not '
            "earlier than executeAt. null or omitted: no deadline."
        },
    )
    successCodes = StatusRules(
        allow_none=True,
        metadata={
            "description": "Status codes that resolve the task: codes 100..599 or classes "
            'like "2xx", e.g. [200, "2xx", 409]. null or omitted: ["2xx"].'
        },
    )
    staleCodes = StatusRules(
        allow_none=True,
        metadata={
            "description": "Status codes that end the task stale at once, no retry spent, "
            "e.g. [400, 404, 410]. None may also be a success code. null or omitted: none."
        },
    )

    @validates("notAfter")
    def _check_not_after_range(self, value: datetime | None, **_: Any) -> None:
        if value is not None and not EARLIEST <= value <= LATEST:
            raise ValidationError("Must be between 1970 and 9000.")

    @validates("successCodes")
    def _check_success_codes(self, value: tuple[StatusRule, ...] | None, **_: Any) -> None:
        informational = {"1xx", *range(100, 200)}
        if value is not None and all(rule in informational for rule in value):
            raise ValidationError(
                "Must name at least one final status (200..599, or a class from 2xx): "
                "informational 1xx answers never count, so the task could never resolve."
            )

    @validates_schema(skip_on_field_errors=True)
    def _check_rules_together(self, data: dict[str, Any], **_: Any) -> None:
        codes = overlap(data.get("successCodes"), data.get("staleCodes"))
        if codes:
            message = overlap_message(codes, data.get("successCodes") is not None)
            raise ValidationError(message, "staleCodes")
        problem = not_after_problem(data.get("notAfter"), data.get("executeAt"))
        if problem:
            raise ValidationError(problem, "notAfter")

"""The completion URLs' bodies (SPEC.md, "Delivery rules": Scheduler-Async): what a POST
to X-Scheduler-Fail-Url may carry, and what both URLs answer."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from scheduler_core.marshmallow_base import ResponseSchema, StrictInteger


class FailBodySchema(Schema):
    """The optional JSON body of a POST to X-Scheduler-Fail-Url. Unknown fields are
    refused."""

    class Meta:
        ordered = True

    error = fields.String(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Why the work failed, as lastError shows it (printable, at most "
            "500 characters, the task's secrets redacted)."
        },
    )
    retryAfterSeconds = StrictInteger(
        attribute="retry_after_s",
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={
            "description": "Try again this many seconds later (capped at "
            "retry_backoff_max_ms), while the retry budget lasts."
        },
    )


class CompletionResultSchema(ResponseSchema):
    """What a completion URL answers: the attempt it settled and the task's status now."""

    class Meta(ResponseSchema.Meta):
        ordered = True

    taskId = fields.String(required=True, metadata={"description": "The task."})
    attempt = fields.Integer(
        required=True, metadata={"description": "The attempt the URL belongs to."}
    )
    outcome = fields.String(
        required=True,
        validate=validate.OneOf(["resolved", "failed"]),
        metadata={"description": "What the attempt came to."},
    )
    status = fields.String(
        required=True,
        validate=validate.OneOf(["resolved", "pending", "stale"]),
        metadata={"description": "The task's status now."},
    )


fail_body = FailBodySchema()
completion_result = CompletionResultSchema()

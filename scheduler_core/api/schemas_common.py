"""marshmallow schemas of responses that are not a task or a configuration: the error
envelope, the envelopes of lists, the health probes and the plugin list.

The views build these responses directly (jsonify); the schemas are the contract the
OpenAPI document shows, and tests/api/test_openapi.py checks real responses against it.
"""

from __future__ import annotations

from marshmallow import fields, validate

from scheduler_core.api.errors import ERROR_CODES
from scheduler_core.api.schemas import AttemptOutputSchema, TaskOutputSchema
from scheduler_core.marshmallow_base import ResponseSchema


class ErrorBodySchema(ResponseSchema):
    """What went wrong: a stable code for programs, a message for people, and details
    (for a validation_error, each refused field with its reasons; an item of an array is
    named by its index)."""

    class Meta(ResponseSchema.Meta):
        ordered = True

    code = fields.String(
        required=True,
        validate=validate.OneOf(ERROR_CODES),
        metadata={"description": "Stable, machine-readable."},
    )
    message = fields.String(required=True, metadata={"description": "For people."})
    details = fields.Dict(
        required=True,
        metadata={
            "description": "Field by field for validation_error ({field: [reasons]}), the "
            "task's status for conflict, else empty."
        },
    )


class ErrorSchema(ResponseSchema):
    """Every failure's body: {"error": {"code", "message", "details"}}."""

    error = fields.Nested(ErrorBodySchema, required=True)


class TaskArraySchema(ResponseSchema):
    """The tasks of an enqueued array, in the order they were sent."""

    tasks = fields.List(fields.Nested(TaskOutputSchema), required=True)


class TaskPageSchema(ResponseSchema):
    """One page of tasks, newest first."""

    class Meta(ResponseSchema.Meta):
        ordered = True

    tasks = fields.List(fields.Nested(TaskOutputSchema), required=True)
    nextCursor = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page."},
    )


class AttemptListSchema(ResponseSchema):
    """Every delivery attempt of a task, oldest first."""

    attempts = fields.List(fields.Nested(AttemptOutputSchema), required=True)


class PluginSchema(ResponseSchema):
    """A loaded plugin."""

    class Meta(ResponseSchema.Meta):
        ordered = True

    name = fields.String(required=True, metadata={"description": "Its registration name."})
    builtin = fields.Boolean(
        required=True, metadata={"description": "Whether scheduler-core itself ships it."}
    )
    distribution = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The installed package it came from; null if none."},
    )
    version = fields.String(
        allow_none=True, required=True, metadata={"description": "That package's version."}
    )
    hooks = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "The hooks it implements, sorted."},
    )
    schemes = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "The URL schemes it delivers to, sorted."},
    )


class PluginListSchema(ResponseSchema):
    """The loaded plugins, in registration order."""

    plugins = fields.List(fields.Nested(PluginSchema), required=True)


class HealthSchema(ResponseSchema):
    """The process is up."""

    status = fields.String(
        required=True, validate=validate.OneOf(["ok"]), metadata={"description": "Always ok."}
    )


class ReadySchema(ResponseSchema):
    """The database is reachable."""

    status = fields.String(
        required=True,
        validate=validate.OneOf(["ready"]),
        metadata={"description": "Always ready (else the answer is 503)."},
    )

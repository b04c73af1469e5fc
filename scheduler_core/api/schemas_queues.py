"""marshmallow schemas of /api/v1/queues (the openapi helper documents every Schema in this
module). A queue's config keys are the configuration table's, validated by the schemas
of `runtime_config` (the rules of `PATCH /api/v1/config` and `scheduler config set`)."""

from __future__ import annotations

import copy
from typing import Any

from marshmallow import Schema, fields

from scheduler_core.api.schemas import Timestamp
from scheduler_core.api.schemas_stats import StatusCountsSchema
from scheduler_core.marshmallow_base import ResponseSchema
from scheduler_core.models import QueueInfo, TaskStatus
from scheduler_core.names import NAME_RULE
from scheduler_core.runtime_config import ConfigPatchSchema, ConfigSchema

# The schemas of runtime_config, with a name and a description of their own (the
# validation itself is runtime_config.validate_changes, as for PATCH /api/v1/config).
QueueConfigSchema: type[Schema] = type(
    "QueueConfigSchema",
    (ConfigPatchSchema,),
    {
        "__doc__": "`PUT /api/v1/queues/{name}`: the queue's whole configuration. Every key "
        "is optional (one left out takes its default; `{}` gives every default), each an "
        "integer within its bounds; unknown keys are refused, and retryBackoffMaxMs must "
        "be at least retryBackoffMs.",
        "__module__": __name__,
    },
)
QueuePatchSchema: type[Schema] = type(
    "QueuePatchSchema",
    (ConfigPatchSchema,),
    {
        "__doc__": "`PATCH /api/v1/queues/{name}`: some keys of the queue's configuration "
        "(at least one); the others keep their values. The rules of QueueConfig.",
        "__module__": __name__,
        "OPENAPI_EXTRA": {"minProperties": 1},
    },
)


def _queue_fields() -> dict[str, Any]:
    """The queue's fields in the order a queue is shown: name, paused, the config keys
    (ConfigSchema's, with their bounds), counts, backlog, times."""
    config = {name: copy.deepcopy(field) for name, field in ConfigSchema._declared_fields.items()}
    return {
        "name": fields.String(
            required=True, metadata={"description": f"The queue's name: {NAME_RULE}"}
        ),
        "paused": fields.Boolean(
            required=True,
            metadata={
                "description": "Whether the queue is paused: its tasks are not claimed (those "
                "in flight finish); enqueueing into it still works."
            },
        ),
        **config,
        "counts": fields.Nested(
            StatusCountsSchema,
            required=True,
            metadata={"description": "The queue's tasks by status."},
        ),
        "dueBacklog": fields.Integer(
            attribute="due_backlog",
            required=True,
            metadata={
                "description": "The queue's pending tasks already due (nextAttemptAt <= now "
                "by the database clock)."
            },
        ),
        "createdAt": Timestamp(
            attribute="created_at",
            required=True,
            metadata={"description": "When the queue was created."},
        ),
        "updatedAt": Timestamp(
            attribute="updated_at",
            required=True,
            metadata={"description": "When its configuration or pause switch last changed."},
        ),
    }


QueueSchema: type[ResponseSchema] = type(
    "QueueSchema",
    (ResponseSchema,),
    {
        "__doc__": "A queue: its row of the configuration table (every key, camelCase, as "
        "GET /api/v1/config shows the default queue's), its pause switch, and its tasks "
        "by status and due backlog by the database clock.",
        "__module__": __name__,
        **_queue_fields(),
    },
)


class QueueListSchema(ResponseSchema):
    """Every queue, sorted by name."""

    queues = fields.List(
        fields.Nested(QueueSchema),
        required=True,
        metadata={"description": "Every queue (`default` included), sorted by name."},
    )


class PurgeResultSchema(ResponseSchema):
    """What `POST /api/v1/queues/{name}/purge` cancelled."""

    count = fields.Integer(
        required=True,
        metadata={"description": "How many pending and stale tasks were cancelled."},
    )


_queue_output = QueueSchema()


def queue_json(info: QueueInfo) -> dict[str, Any]:
    """A queue as the API shows it."""
    data: dict[str, Any] = _queue_output.dump(
        {
            "name": info.name,
            "paused": info.paused,
            **info.config.as_dict(),
            "counts": {status.value: info.counts.get(status, 0) for status in TaskStatus},
            "due_backlog": info.due_backlog,
            "created_at": info.created_at,
            "updated_at": info.updated_at,
        }
    )
    return data

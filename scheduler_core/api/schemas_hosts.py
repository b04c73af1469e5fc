"""marshmallow output schemas of `GET /api/v1/hosts` (the openapi helper documents every
Schema in this module)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from scheduler_core.marshmallow_base import ResponseSchema
from scheduler_core.store.host_limits import HostInfo


class HostSchema(ResponseSchema):
    """A throttled host: per-host backpressure after its 429 or 503 answers."""

    class Meta:
        ordered = True

    host = fields.String(
        required=True,
        metadata={"description": "host[:port] of the webhook URLs it receives, lower case."},
    )
    blockedSeconds = fields.Float(  # noqa: N815 - the API's camelCase
        required=True,
        metadata={"description": "Seconds until its tasks may start again; 0 when not blocked."},
    )
    blockedUntil = fields.String(  # noqa: N815
        required=True,
        metadata={"description": "When the last Retry-After ends (RFC 3339, UTC)."},
    )
    maxConcurrent = fields.Integer(  # noqa: N815
        required=True,
        allow_none=True,
        metadata={"description": "At most this many of its tasks run at once (null: no limit)."},
    )
    maxPerSecond = fields.Float(  # noqa: N815
        required=True,
        allow_none=True,
        metadata={"description": "At most this many of its tasks start a second (null: no limit)."},
    )
    throttledTotal = fields.Integer(  # noqa: N815
        required=True,
        metadata={"description": "429 and 503 answers it gave since it was first throttled."},
    )
    updatedAt = fields.String(  # noqa: N815
        required=True,
        metadata={"description": "When its limits last changed (RFC 3339, UTC)."},
    )


class HostsOutput(ResponseSchema):
    """Every throttled host, most throttled first; a host never throttled is not listed."""

    hosts = fields.List(
        fields.Nested(HostSchema),
        required=True,
        metadata={"description": "The throttled hosts, most 429/503 answers first."},
    )


def host_json(info: HostInfo) -> dict[str, Any]:
    """One host as the API shows it."""
    return {
        "host": info.host,
        "blockedSeconds": info.blocked_s,
        "blockedUntil": _rfc3339(info.blocked_until),
        "maxConcurrent": info.max_concurrent,
        "maxPerSecond": info.max_per_second,
        "throttledTotal": info.throttled_total,
        "updatedAt": _rfc3339(info.updated_at),
    }


def _rfc3339(moment: Any) -> str:
    return str(moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))

"""The runtime configuration row: its keys, defaults, bounds and validation.

Both `PATCH /api/v1/config` and `scheduler config set` validate through the marshmallow
schemas here (one rule set in two spellings: camelCase for the API, column names for the
CLI), so they refuse exactly the same values; the OpenAPI document describes the API's
from the same schemas. The database repeats the bounds as CHECK constraints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from scheduler_core.marshmallow_base import ResponseSchema, StrictInteger


@dataclass(frozen=True)
class Bound:
    default: int
    minimum: int
    maximum: int
    meaning: str = ""  # for people: the OpenAPI document and /docs show it


BOUNDS: dict[str, Bound] = {
    "base_interval_ms": Bound(
        1000, 10, 3_600_000, "The throttle's window, and the fallback poll interval (ms)."
    ),
    "http_callback_timeout_ms": Bound(
        5000,
        100,
        1_800_000,
        "Total time one callback may take (DNS, connect, send, response) before it is "
        "cancelled and counted as failed (ms).",
    ),
    "select_size": Bound(
        100,
        1,
        10_000,
        "Most callbacks one dispatcher starts within a window, and most in flight at once.",
    ),
    "max_retries": Bound(
        5,
        0,
        1000,
        "Retries after the first attempt: a task is tried at most maxRetries + 1 times, "
        "then it is stale.",
    ),
    "retry_backoff_ms": Bound(
        1000, 0, 86_400_000, "Delay before the first retry; it doubles per retry (ms)."
    ),
    "retry_backoff_max_ms": Bound(
        3_600_000,
        0,
        604_800_000,
        "Cap on the retry delay (ms); at least retryBackoffMs.",
    ),
    "retention_hours": Bound(
        168, 1, 87_600, "Resolved and cancelled tasks are deleted after this long (hours)."
    ),
    "max_dispatches_per_second": Bound(
        0,
        0,
        100_000,
        "The queue's callback starts per second across all dispatchers together (a token "
        "bucket in the database); 0 = no limit.",
    ),
    "max_concurrent_dispatches": Bound(
        0,
        0,
        100_000,
        "The queue's callbacks in flight across all dispatchers together; 0 = no limit.",
    ),
}

LEASE_MARGIN_MS = 5000  # the lease outlives the callback timeout by this much


@dataclass(frozen=True)
class RuntimeConfig:
    base_interval_ms: int = BOUNDS["base_interval_ms"].default
    http_callback_timeout_ms: int = BOUNDS["http_callback_timeout_ms"].default
    select_size: int = BOUNDS["select_size"].default
    max_retries: int = BOUNDS["max_retries"].default
    retry_backoff_ms: int = BOUNDS["retry_backoff_ms"].default
    retry_backoff_max_ms: int = BOUNDS["retry_backoff_max_ms"].default
    retention_hours: int = BOUNDS["retention_hours"].default
    max_dispatches_per_second: int = BOUNDS["max_dispatches_per_second"].default
    max_concurrent_dispatches: int = BOUNDS["max_concurrent_dispatches"].default

    @property
    def lease_ms(self) -> int:
        return self.http_callback_timeout_ms + LEASE_MARGIN_MS

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def as_camel(self) -> dict[str, int]:
        return {to_camel(k): v for k, v in asdict(self).items()}


class ConfigError(ValueError):
    """A refused configuration change; `details` maps each bad key to its reasons."""

    def __init__(self, details: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in details.items()))
        self.details = details


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


CAMEL_TO_COLUMN = {to_camel(k): k for k in BOUNDS}

_INTEGER = "Must be an integer."


def _setting(column: str, data_key: str, *, load: bool) -> fields.Field:
    """The field of one column: an integer within its bounds (loading), described."""
    bound = BOUNDS[column]
    description = f"{bound.meaning} Default: {bound.default}."
    if not load:  # the document shows the bounds of what a GET returns too
        return fields.Integer(
            data_key=data_key,
            required=True,
            metadata={
                "description": description,
                "minimum": bound.minimum,
                "maximum": bound.maximum,
            },
        )
    return StrictInteger(
        data_key=data_key,
        validate=validate.Range(
            bound.minimum, bound.maximum, error="Must be between {min} and {max}."
        ),
        error_messages={"invalid": _INTEGER, "null": _INTEGER},
        metadata={"description": description},
    )


class _ConfigChanges(Schema):
    """Some keys of the configuration, each an integer within its bounds; together with
    the stored values they keep retry_backoff_max_ms >= retry_backoff_ms. Loads to
    {column: value}. Subclasses (below) only choose how keys are spelled."""

    def __init__(self, current: RuntimeConfig | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.current = current or RuntimeConfig()

    @validates_schema(skip_on_field_errors=True)
    def _backoff_order(self, data: dict[str, int], **_: Any) -> None:
        merged = replace(self.current, **data)
        if merged.retry_backoff_max_ms < merged.retry_backoff_ms:
            key = self.fields["retry_backoff_max_ms"].data_key or "retry_backoff_max_ms"
            floor = self.fields["retry_backoff_ms"].data_key or "retry_backoff_ms"
            raise ValidationError(f"Must be at least {floor} ({merged.retry_backoff_ms}).", key)


def _schema_class(name: str, base: type[Schema], doc: str, *, camel: bool, load: bool) -> type[Any]:
    keys = {column: to_camel(column) if camel else column for column in BOUNDS}
    attributes: dict[str, Any] = {
        column: _setting(column, key, load=load) for column, key in keys.items()
    }
    attributes.update(__doc__=doc, __module__=__name__)
    if load:
        known = ", ".join(sorted(keys.values()))
        attributes["error_messages"] = {"unknown": f"Unknown key. Known keys: {known}."}
    return type(name, (base,), attributes)


# The API's spelling (camelCase), for PATCH /api/v1/config and the OpenAPI document.
ConfigPatchSchema: type[_ConfigChanges] = _schema_class(
    "ConfigPatchSchema",
    _ConfigChanges,
    "Some keys of the configuration to change; the others keep their values. Every key "
    "is an integer within its bounds, or the whole change is refused.",
    camel=True,
    load=True,
)
# `scheduler config set`'s spelling (column names), the same rules.
_ConfigColumnsSchema: type[_ConfigChanges] = _schema_class(
    "ConfigColumnsSchema", _ConfigChanges, "", camel=False, load=True
)
ConfigSchema: type[Schema] = _schema_class(
    "ConfigSchema",
    ResponseSchema,
    "The runtime configuration of the default queue, read by every dispatcher at every tick.",
    camel=True,
    load=False,
)


def validate_changes(
    current: RuntimeConfig, changes: dict[str, Any], *, camel: bool
) -> dict[str, int]:
    """Check `changes` (keys camelCase when `camel`, else column names) against `current`;
    return them keyed by column name.

    Raises ConfigError naming every bad key (in the caller's spelling) and why.
    """
    schema = (ConfigPatchSchema if camel else _ConfigColumnsSchema)(current)
    try:
        columns: dict[str, int] = schema.load(changes)
    except ValidationError as exc:
        messages = exc.messages
        if not isinstance(messages, dict):  # not an object at all
            raise ConfigError({"_schema": [str(m) for m in messages]}) from None
        raise ConfigError(
            {str(key): [str(m) for m in reasons] for key, reasons in messages.items()}
        ) from None
    return columns

"""The runtime configuration row: its keys, defaults, bounds and validation.

Both `PATCH /api/v1/config` and `scheduler config set` validate through here, so the
API and the CLI refuse exactly the same values. The database repeats the bounds as
CHECK constraints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Bound:
    default: int
    minimum: int
    maximum: int


BOUNDS: dict[str, Bound] = {
    "base_interval_ms": Bound(1000, 10, 3_600_000),
    "http_callback_timeout_ms": Bound(5000, 100, 1_800_000),
    "select_size": Bound(100, 1, 10_000),
    "max_retries": Bound(5, 0, 1000),
    "retry_backoff_ms": Bound(1000, 0, 86_400_000),
    "retry_backoff_max_ms": Bound(3_600_000, 0, 604_800_000),
    "retention_hours": Bound(168, 1, 87_600),
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


def validate_changes(
    current: RuntimeConfig, changes: dict[str, Any], *, camel: bool
) -> dict[str, int]:
    """Check `changes` against `current`; return them keyed by column name.

    Raises ConfigError naming every bad key (in the caller's spelling) and why.
    """
    details: dict[str, list[str]] = {}
    columns: dict[str, int] = {}
    for key, value in changes.items():
        column = CAMEL_TO_COLUMN.get(key) if camel else (key if key in BOUNDS else None)
        if column is None:
            known = sorted(CAMEL_TO_COLUMN) if camel else sorted(BOUNDS)
            details[key] = [f"Unknown key. Known keys: {', '.join(known)}."]
            continue
        # bool is an int subclass in Python; JSON true is not a number.
        if not isinstance(value, int) or isinstance(value, bool):
            details[key] = ["Must be an integer."]
            continue
        bound = BOUNDS[column]
        if not bound.minimum <= value <= bound.maximum:
            details[key] = [f"Must be between {bound.minimum} and {bound.maximum}."]
            continue
        columns[column] = value
    if not details:
        merged = replace(current, **columns)
        if merged.retry_backoff_max_ms < merged.retry_backoff_ms:
            key = "retryBackoffMaxMs" if camel else "retry_backoff_max_ms"
            details[key] = [f"Must be at least retry_backoff_ms ({merged.retry_backoff_ms})."]
    if details:
        raise ConfigError(details)
    return columns

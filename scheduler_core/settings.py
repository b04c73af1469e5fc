"""Process settings, read once from the environment (and CLI flags) at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///scheduler.db"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Callbacks one dispatcher runs at once, at most (select_size bounds them too).
DEFAULT_DELIVERY_THREADS = 64
MAX_DELIVERY_THREADS = 1024


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    load_entry_points: bool = True
    delivery_threads: int = DEFAULT_DELIVERY_THREADS

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        env = os.environ
        keys = tuple(k.strip() for k in env.get("SCHEDULER_API_KEYS", "").split(",") if k.strip())
        return cls(
            database_url=database_url or env.get("SCHEDULER_DATABASE_URL") or DEFAULT_DATABASE_URL,
            api_keys=keys,
            max_body_bytes=_positive_int(env, "SCHEDULER_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            load_entry_points=not _truthy(env.get("SCHEDULER_DISABLE_PLUGIN_AUTOLOAD")),
            delivery_threads=_positive_int(
                env, "SCHEDULER_DELIVERY_THREADS", DEFAULT_DELIVERY_THREADS, MAX_DELIVERY_THREADS
            ),
        )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive_int(
    env: os._Environ[str], name: str, default: int, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value <= 0 or (maximum is not None and value > maximum):
        bound = f" from 1 to {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be a positive integer{bound}, got {raw!r}")
    return value

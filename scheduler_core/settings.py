"""Process settings, read once from the environment (and CLI flags) at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from scheduler_core.encryption import parse_keys as parse_encryption_keys
from scheduler_core.http_guard import parse_allowed_hosts, parse_cors_origins
from scheduler_core.signing import parse_signing_secrets
from scheduler_core.targets import TargetPolicy

DEFAULT_DATABASE_URL = "sqlite:///scheduler.db"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Callbacks one dispatcher runs at once, at most (select_size bounds them too).
DEFAULT_DELIVERY_THREADS = 64
MAX_DELIVERY_THREADS = 1024
# The HTTP server's defences: open client connections at most, seconds a connection may
# stay idle, seconds a client may take to send one request (head and body).
DEFAULT_CONNECTION_LIMIT = 1000
MAX_CONNECTION_LIMIT = 100_000
DEFAULT_IDLE_TIMEOUT_S = 30.0
DEFAULT_READ_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 86_400.0
# `scheduler worker` serves /metrics here when given a port (SCHEDULER_METRICS_PORT).
DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)  # may hold a password
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    load_entry_points: bool = True
    delivery_threads: int = DEFAULT_DELIVERY_THREADS
    # The HTTP server's defences (scheduler_core/serving.py); SCHEDULER_CONNECTION_LIMIT,
    # SCHEDULER_IDLE_TIMEOUT_S, SCHEDULER_READ_TIMEOUT_S.
    connection_limit: int = DEFAULT_CONNECTION_LIMIT
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    # While the API is open (no API keys), the browser origins and Host names it answers:
    # SCHEDULER_CORS_ORIGINS, SCHEDULER_ALLOWED_HOSTS (scheduler_core/http_guard.py).
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    # SCHEDULER_ALLOWED_TARGETS / SCHEDULER_DENIED_TARGETS, read (and checked) at start.
    target_policy: TargetPolicy = field(default_factory=TargetPolicy)
    # SCHEDULER_SIGNING_SECRET: `whsec_...` secrets, space-separated; each signs every
    # callback (Standard Webhooks). Empty: callbacks are not signed.
    signing_secrets: tuple[str, ...] = field(default=(), repr=False)
    # SCHEDULER_ENCRYPTION_KEY: Fernet keys, space- or comma-separated; the first encrypts
    # webhookAuth at rest, all decrypt. Empty: webhookAuth is stored as given.
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    # SCHEDULER_METRICS_HOST / SCHEDULER_METRICS_PORT: where `scheduler worker` serves
    # /metrics; no port: it serves none (`scheduler serve` has /metrics on its API port).
    # Port 0 picks a free one, logged at start.
    metrics_host: str = DEFAULT_METRICS_HOST
    metrics_port: int | None = None
    # SCHEDULER_OTEL=1: OpenTelemetry spans for each enqueue and attempt (plugins/otel.py),
    # when the `otel` extra is installed. Off by default.
    otel: bool = False
    # SCHEDULER_PUBLIC_URL: the base of the completion URLs every callback carries
    # (X-Scheduler-Complete-Url); unset, http://SCHEDULER_HOST:SCHEDULER_PORT (a wildcard
    # host read as 127.0.0.1), by default http://127.0.0.1:8080.
    public_url: str = DEFAULT_PUBLIC_URL

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        env = os.environ
        keys = _api_keys(env.get("SCHEDULER_API_KEYS"))
        return cls(
            database_url=database_url or env.get("SCHEDULER_DATABASE_URL") or DEFAULT_DATABASE_URL,
            api_keys=keys,
            max_body_bytes=_positive_int(env, "SCHEDULER_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            load_entry_points=not _truthy(env.get("SCHEDULER_DISABLE_PLUGIN_AUTOLOAD")),
            delivery_threads=_positive_int(
                env, "SCHEDULER_DELIVERY_THREADS", DEFAULT_DELIVERY_THREADS, MAX_DELIVERY_THREADS
            ),
            connection_limit=_positive_int(
                env, "SCHEDULER_CONNECTION_LIMIT", DEFAULT_CONNECTION_LIMIT, MAX_CONNECTION_LIMIT
            ),
            idle_timeout_s=_seconds(env, "SCHEDULER_IDLE_TIMEOUT_S", DEFAULT_IDLE_TIMEOUT_S),
            read_timeout_s=_seconds(env, "SCHEDULER_READ_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S),
            cors_origins=parse_cors_origins(env.get("SCHEDULER_CORS_ORIGINS")),
            allowed_hosts=parse_allowed_hosts(env.get("SCHEDULER_ALLOWED_HOSTS")),
            target_policy=TargetPolicy.from_settings(
                env.get("SCHEDULER_ALLOWED_TARGETS"), env.get("SCHEDULER_DENIED_TARGETS")
            ),
            signing_secrets=parse_signing_secrets(env.get("SCHEDULER_SIGNING_SECRET")),
            encryption_keys=parse_encryption_keys(env.get("SCHEDULER_ENCRYPTION_KEY")),
            metrics_host=(env.get("SCHEDULER_METRICS_HOST") or "").strip() or DEFAULT_METRICS_HOST,
            metrics_port=_port(env, "SCHEDULER_METRICS_PORT"),
            otel=_truthy(env.get("SCHEDULER_OTEL")),
            public_url=_public_url(env),
        )


def _api_keys(raw: str | None) -> tuple[str, ...]:
    """SCHEDULER_API_KEYS: comma-separated keys. Unset or empty: the API is open. Set to
    something that holds no key (",", " "): refused rather than silently open."""
    if raw is None or raw == "":
        return ()
    keys = tuple(key.strip() for key in raw.split(",") if key.strip())
    if not keys:
        raise ValueError(
            "SCHEDULER_API_KEYS is set but holds no key; list keys separated by commas, "
            "or unset it for an open API"
        )
    for number, key in enumerate(keys, 1):
        if not all(" " <= char <= "~" for char in key):
            raise ValueError(
                f"SCHEDULER_API_KEYS: key {number} has a control or non-ASCII character, "
                "which an Authorization header cannot carry"
            )
    return keys


def listening_url(host: str, port: int) -> str:
    """``http://host:port`` of a server listening on `host`: a wildcard (0.0.0.0, ::) read
    as 127.0.0.1, an IPv6 address in brackets."""
    if host in {"0.0.0.0", "::", "[::]"}:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def public_url_is_set(env: Mapping[str, str] | None = None) -> bool:
    """Whether SCHEDULER_PUBLIC_URL names the URLs' base (else `serve` derives it from
    where it listens)."""
    return bool(
        ((env if env is not None else os.environ).get("SCHEDULER_PUBLIC_URL") or "").strip()
    )


def _public_url(env: os._Environ[str]) -> str:
    """SCHEDULER_PUBLIC_URL, checked: http(s), a host, no query or fragment; trailing
    slashes dropped. Unset: derived from SCHEDULER_HOST and SCHEDULER_PORT (serve's)."""
    raw = (env.get("SCHEDULER_PUBLIC_URL") or "").strip()
    if not raw:
        host = (env.get("SCHEDULER_HOST") or "").strip() or "127.0.0.1"
        return listening_url(host, _port(env, "SCHEDULER_PORT") or 8080)
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            "SCHEDULER_PUBLIC_URL must be an http:// or https:// URL with a host and no "
            f"query, like https://scheduler.example.com, got {raw!r}"
        )
    return raw.rstrip("/")


def _port(env: os._Environ[str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a TCP port from 0 to 65535, got {raw!r}")
    return value


def _seconds(env: os._Environ[str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TIMEOUT_S:  # refuses nan and inf too
        raise ValueError(
            f"{name} must be a number of seconds above 0, at most {MAX_TIMEOUT_S:.0f}, got {raw!r}"
        )
    return value


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

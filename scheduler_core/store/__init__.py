"""Store backends, chosen by the database URL's scheme."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler_core.store.base import (
    Store,
    StoreError,
    StoreUnavailable,
    TaskConflict,
    TaskNotFound,
    decode_cursor,
    encode_cursor,
)

__all__ = [
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TaskConflict",
    "TaskNotFound",
    "decode_cursor",
    "encode_cursor",
    "open_store",
]


class UnsupportedDatabase(ValueError):
    pass


def open_store(url: str, pool_size: int = 10, encryption_keys: Sequence[str] = ()) -> Store:
    """A store for `url` (SQLAlchemy-style: postgresql://..., sqlite:///path.db).

    With `encryption_keys` (SCHEDULER_ENCRYPTION_KEY), webhookAuth is stored encrypted with
    the first and opened with any of them when a task is claimed."""
    cipher = None
    if encryption_keys:
        from scheduler_core.encryption import AuthCipher

        cipher = AuthCipher(encryption_keys)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in {"postgresql", "postgres", "postgresql+psycopg2"}:
        from scheduler_core.store.postgres import PostgresStore

        try:
            return PostgresStore(url, pool_size=pool_size, cipher=cipher)
        except ValueError as exc:  # malformed: the message never quotes the URL
            raise UnsupportedDatabase(str(exc)) from None
    if scheme in {"sqlite", "sqlite3"}:
        from scheduler_core.store.sqlite import SqliteStore

        try:
            return SqliteStore(url, pool_size=pool_size, cipher=cipher)
        except ValueError as exc:
            raise UnsupportedDatabase(str(exc)) from None
    raise UnsupportedDatabase(
        f"unsupported database URL scheme {scheme!r}: use postgresql://... or sqlite:///..."
    )

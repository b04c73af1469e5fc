"""Throwaway PostgreSQL databases, empty (not migrated), for tests that need a blank slate.

The session database of tests/conftest.py is already migrated; migrations, `scheduler
migrate` and the packaging test need one that has never seen the schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2

from tests.conftest import ADMIN_URL

# A port nothing listens on: connecting is refused at once.
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/scheduler_nowhere"


def admin_connection() -> Any:
    conn = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


@contextmanager
def throwaway_database(prefix: str = "scheduler_tmp") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (and its connections) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            with admin.cursor() as cur:
                # FORCE: a scheduler process still running cannot keep the database alive.
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in its own connection and return every row."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def table_names(url: str) -> set[str]:
    rows = query(
        url,
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    return {name for (name,) in rows}

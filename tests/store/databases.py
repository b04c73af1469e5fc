"""Empty (never migrated) databases of either backend, and direct SQL on any test database.

The session databases of tests/conftest.py are already migrated; migrations, `scheduler
migrate`, a server started on a blank database and the packaging test need one that has
never seen the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from scheduler_core.store.sqlite import sqlite_path
from tests.conftest import require_postgres
from tests.support.database import BACKENDS, TestDatabase, postgres_database, sqlite_url

# A PostgreSQL port nothing listens on: connecting is refused at once.
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/scheduler_nowhere"


@contextmanager
def empty_database(backend: str, folder: Path, prefix: str = "scheduler_tmp") -> Iterator[str]:
    """The URL of an empty database of `backend`, gone afterwards.

    PostgreSQL: a database of its own, dropped (connections and all) at the end. SQLite:
    a file name in `folder` that does not exist yet, as on a machine that never ran us.
    """
    if backend == "postgresql":
        require_postgres()
        with postgres_database(prefix) as url:
            yield url
    elif backend == "sqlite":
        yield sqlite_url(folder, f"{prefix}.db")
    else:
        raise ValueError(f"unknown backend {backend!r}")


def dialect_of(url: str) -> str:
    return TestDatabase(url).dialect


def query(url: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Run one statement (%s placeholders) in its own transaction and return every row."""
    return TestDatabase(url).execute(sql, params)


def table_names(url: str) -> set[str]:
    """The tables a user created (SQLite's own sqlite_* bookkeeping left out)."""
    db = TestDatabase(url)
    if db.dialect == "sqlite" and not Path(sqlite_path(url)).exists():
        return set()  # looking must not create the file
    rows = db.sql(
        postgresql="SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        sqlite="SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    return {name for (name,) in rows}


def require_backend(backend: str, server: bool = True) -> None:
    """Skip a test written for one backend when that backend is not under test (or, for
    PostgreSQL with `server`, not reachable: see tests/conftest.py)."""
    if backend not in BACKENDS:
        pytest.skip(f"{backend} is not in SCHEDULER_TEST_BACKENDS ({','.join(BACKENDS)})")
    if backend == "postgresql" and server:
        require_postgres()

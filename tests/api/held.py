"""A dispatcher's claim caught in the middle: a transaction that has made a task `running`
and not committed yet, for tests of what a concurrent API write does meanwhile."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from scheduler_core.store.sqlite import sqlite_path
from tests.support.database import SQLITE_NOW_US, TestDatabase
from tests.support.waiting import wait_until


class HeldClaim:
    def __init__(self, db: TestDatabase):
        self.db = db

    def wait_for_a_waiter(self) -> None:
        """Return once another statement waits for the held row (PostgreSQL; SQLite has no
        row locks to look at: there a writer waits for the whole file, which the caller's
        thread being alive shows)."""
        if self.db.dialect != "postgresql":
            return
        wait_until(
            lambda: (
                self.db.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                )[0][0]
                > 0
            ),
            timeout=10,
            message="for a statement to wait on the claimed row",
        )


@contextmanager
def held_claim(db: TestDatabase, task_ids: list[str]) -> Iterator[HeldClaim]:
    """Claim `task_ids` (running, attempts + 1, a lease) in a transaction committed when
    the block ends."""
    marks = ", ".join(["%s"] * len(task_ids))
    if db.dialect == "postgresql":
        conn = psycopg2.connect(db.url)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "UPDATE scheduler_tasks SET status = 'running', attempts = attempts + 1,"
                    " lease_expires_at = now() + interval '1 minute', updated_at = now()"
                    f" WHERE id IN ({marks})",
                    task_ids,
                )
                assert cur.rowcount == len(task_ids)
            yield HeldClaim(db)
            conn.commit()
        finally:
            conn.close()
        return
    lite = sqlite3.connect(sqlite_path(db.url), timeout=30, isolation_level=None)
    try:
        lite.execute("BEGIN IMMEDIATE")
        changed = lite.execute(
            "UPDATE scheduler_tasks SET status = 'running', attempts = attempts + 1,"
            f" lease_expires_at = {SQLITE_NOW_US} + 60000000, updated_at = {SQLITE_NOW_US}"
            f" WHERE id IN ({marks.replace('%s', '?')})",
            task_ids,
        ).rowcount
        assert changed == len(task_ids)
        yield HeldClaim(db)
        lite.execute("COMMIT")
    finally:
        lite.close()

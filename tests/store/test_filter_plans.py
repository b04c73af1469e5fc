"""A status filter stays an index read on a big table, on both backends: a page of a rare
status among 100,000 tasks reads that status's rows from the (status, seq) index, not
every task; a bulk action's batch does the same. (The plans are the databases' own; these
tests pin down that the queries leave them that choice.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler_core.models import TaskFilter, TaskStatus
from scheduler_core.store import Store, open_store
from scheduler_core.store.base import MAX_POSITION
from tests.store.databases import empty_database
from tests.support.database import BACKENDS, TestDatabase

pytestmark = pytest.mark.slow

TASKS = 100_000
STALE_EVERY = 1000  # 100 stale tasks, spread among resolved ones
POPULATE = {
    "postgresql": """
        INSERT INTO scheduler_tasks (webhook_url, payload, execute_at, next_attempt_at, status)
        SELECT 'http://127.0.0.1:9/', 'null', now(), now(),
               CASE WHEN mod(g, %s) = 0 THEN 'stale' ELSE 'resolved' END
        FROM generate_series(1, %s) AS g""",
    "sqlite": """
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s)
        INSERT INTO scheduler_tasks (id, webhook_url, execute_at, next_attempt_at, status,
                                     created_at, updated_at)
        SELECT 'task-' || n, 'http://127.0.0.1:9/', 0, 0,
               CASE WHEN n = n / %s * %s THEN 'stale' ELSE 'resolved' END, n, n
        FROM g""",
}


@pytest.fixture(scope="module", params=BACKENDS)
def big(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, TestDatabase]]:
    backend = request.param
    folder: Path = tmp_path_factory.mktemp("plans")
    with empty_database(backend, folder, "scheduler_plans") as url:
        store = open_store(url, pool_size=2)
        store.migrate()
        db = TestDatabase(url)
        params = (
            (STALE_EVERY, TASKS) if backend == "postgresql" else (TASKS, STALE_EVERY, STALE_EVERY)
        )
        db.execute(POPULATE[backend], params)
        db.execute("ANALYZE")
        yield store, db
        store.close()


def _params(store: Store, statuses: frozenset[TaskStatus], **extra: Any) -> dict[str, Any]:
    sql_store: Any = store
    return {
        **sql_store._filter_params(TaskFilter()),
        **sql_store._statuses_param(statuses),
        **extra,
    }


def _plan(store: Store, db: TestDatabase, query: str, params: dict[str, Any]) -> str:
    sql: str = store.q[query]  # type: ignore[attr-defined]
    if db.dialect == "postgresql":
        import psycopg2

        conn = psycopg2.connect(db.url)
        try:
            with conn.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                plan = cur.fetchone()[0]
        finally:
            conn.rollback()  # a bulk batch's EXPLAIN ANALYZE did write
            conn.close()
        return json.dumps(plan)
    import sqlite3

    from scheduler_core.store.sqlite import sqlite_path

    lite = sqlite3.connect(sqlite_path(db.url))
    try:
        sql = sql.replace("coalesce(scheduler_now(), ", "(").replace("scheduler_now()", "0")
        rows = lite.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    finally:
        lite.close()
    return "\n".join(str(row[3]) for row in rows)


def _rows_read(plan: str) -> int:
    """Rows PostgreSQL read and threw away, over every node of an EXPLAIN ANALYZE."""

    def walk(node: Any) -> int:
        if isinstance(node, dict):
            return int(node.get("Rows Removed by Filter", 0)) + sum(map(walk, node.values()))
        if isinstance(node, list):
            return sum(map(walk, node))
        return 0

    return walk(json.loads(plan))


def test_a_page_of_a_rare_status_reads_that_status_only(big: tuple[Store, TestDatabase]) -> None:
    store, db = big
    stale = frozenset({TaskStatus.STALE})
    started = time.monotonic()
    page, after = store.list_tasks(TaskFilter(statuses=stale), 50, None)
    assert len(page) == 50 and after is not None
    assert {t.status for t in page} == {TaskStatus.STALE}
    rest, _ = store.list_tasks(TaskFilter(statuses=stale), 1000, after)
    assert len(rest) == TASKS // STALE_EVERY - 50
    assert time.monotonic() - started < 5  # milliseconds, in fact; the plan says why

    params = _params(store, stale, before=MAX_POSITION, limit=51)
    plan = _plan(store, db, "list_tasks_by_status", params)
    assert "scheduler_tasks_status_seq" in plan
    if db.dialect == "postgresql":
        assert _rows_read(plan) < 1000, plan


def test_a_bulk_batch_reads_its_statuses_from_the_index(big: tuple[Store, TestDatabase]) -> None:
    store, db = big
    takes = frozenset({TaskStatus.STALE, TaskStatus.CANCELLED})
    params = _params(store, takes, after=0, ceiling=TASKS, batch=500)
    plan = _plan(store, db, "bulk_retry", params)
    assert "scheduler_tasks_status_seq" in plan
    if db.dialect == "postgresql":
        assert _rows_read(plan) < 1000, plan

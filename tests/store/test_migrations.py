"""The numbered SQL migrations of each dialect: names, replay, idempotence, the config row,
the CHECK constraints, the due index."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

import scheduler_core.migrations as migrations_module
from scheduler_core.migrations import load as load_migrations
from scheduler_core.runtime_config import BOUNDS, RuntimeConfig
from scheduler_core.store import open_store
from scheduler_core.store.postgres import PostgresStore
from scheduler_core.store.sqlite import SqliteStore, split_statements, sqlite_path
from tests.store.databases import dialect_of, query, require_backend
from tests.store.schema import describe_schema, expected_schema
from tests.support.database import SQLITE_NOW_US, TestDatabase, postgres_database

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
DIALECTS = ["postgresql", "sqlite"]
TABLES = {
    "scheduler_attempts",
    "scheduler_config",
    "scheduler_hosts",
    "scheduler_keys",
    "scheduler_schedules",
    "scheduler_schema_migrations",
    "scheduler_tasks",
}


def migrate(url: str) -> list[str]:
    store = open_store(url, pool_size=1)
    try:
        return store.migrate()
    finally:
        store.close()


@pytest.fixture
def migrated_database_url(empty_database_url: str) -> str:
    migrate(empty_database_url)
    return empty_database_url


# -- file names ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migration_files_are_named_nnnn_name_and_numbered_from_0001_without_gaps(
    dialect: str,
) -> None:
    folder = REPO_MIGRATIONS / dialect
    names = sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")

    assert names, f"no migrations in {folder}"
    assert [n for n in names if not FILE_NAME.match(n)] == []
    numbers = [int(FILE_NAME.match(n).group(1)) for n in names]  # type: ignore[union-attr]
    assert numbers == list(range(1, len(names) + 1))
    loaded = load_migrations(dialect)
    assert [m.name for m in loaded] == names
    assert [m.version for m in loaded] == numbers


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_installed_package_finds_the_same_migrations_as_the_repo_folder(dialect: str) -> None:
    installed = files("scheduler_core.migrations").joinpath(dialect)
    shipped = sorted(e.name for e in installed.iterdir() if e.name.endswith(".sql"))

    assert shipped == sorted(p.name for p in (REPO_MIGRATIONS / dialect).glob("*.sql"))


def test_every_dialect_folder_loads() -> None:
    dialects = sorted(
        p.name for p in REPO_MIGRATIONS.iterdir() if p.is_dir() and p.name != "__pycache__"
    )

    assert dialects == DIALECTS
    for dialect in dialects:
        assert load_migrations(dialect)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["0001_initial.sql", "0003_later.sql"], "without gaps"),
        (["0002_second.sql"], "without gaps"),
        (["0001_initial.sql", "0001_again.sql"], "without gaps"),
        (["0001_initial.sql", "2_short.sql"], "does not match NNNN_name.sql"),
        (["0001_initial.sql", "0002_Mixed-Case.sql"], "does not match NNNN_name.sql"),
    ],
    ids=["gap", "not-from-0001", "duplicate-number", "short-number", "bad-name"],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_load_refuses_misnumbered_or_misnamed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str], message: str, dialect: str
) -> None:
    (tmp_path / dialect).mkdir()
    for name in names:
        (tmp_path / dialect / name).write_text("SELECT 1;")
    monkeypatch.setattr(migrations_module, "files", lambda _package: tmp_path)

    with pytest.raises(ValueError, match=re.escape(message)):
        load_migrations(dialect)


def test_every_sqlite_migration_splits_into_complete_statements() -> None:
    # The SQLite store runs a migration statement by statement inside one transaction.
    for migration in load_migrations("sqlite"):
        statements = split_statements(migration.sql)
        assert statements, migration.name
        assert all(sqlite3.complete_statement(s) for s in statements), migration.name


# -- replay -------------------------------------------------------------------------------


def _replay(url: str) -> None:
    """Run every migration file as written, each in one transaction, without the store."""
    dialect = dialect_of(url)
    if dialect == "postgresql":
        conn = psycopg2.connect(url)
        try:
            for migration in load_migrations(dialect):
                with conn, conn.cursor() as cur:
                    cur.execute(migration.sql)
        finally:
            conn.close()
        return
    lite = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        for migration in load_migrations(dialect):
            lite.execute("BEGIN")
            for statement in split_statements(migration.sql):
                lite.execute(statement)
            lite.execute("COMMIT")
    finally:
        lite.close()


def test_replaying_every_migration_on_an_empty_database_gives_the_expected_schema(
    empty_database_url: str,
) -> None:
    _replay(empty_database_url)

    expected = expected_schema(dialect_of(empty_database_url))
    del expected["scheduler_schema_migrations"]  # the store's bookkeeping, not a migration's
    assert describe_schema(empty_database_url) == expected


def test_store_migrate_gives_the_expected_schema_and_records_each_migration(
    empty_database_url: str,
) -> None:
    dialect = dialect_of(empty_database_url)

    applied = migrate(empty_database_url)

    assert applied == [m.name for m in load_migrations(dialect)]
    assert describe_schema(empty_database_url) == expected_schema(dialect)
    assert query(
        empty_database_url, "SELECT version, name FROM scheduler_schema_migrations ORDER BY version"
    ) == [(m.version, m.name) for m in load_migrations(dialect)]


def _insert_task(db: TestDatabase, webhook_url: str = "http://127.0.0.1/x") -> None:
    db.sql(
        postgresql="INSERT INTO scheduler_tasks (webhook_url, execute_at, next_attempt_at)"
        " VALUES (%s, now(), now())",
        sqlite="INSERT INTO scheduler_tasks"
        " (id, webhook_url, execute_at, next_attempt_at, created_at, updated_at)"
        f" VALUES (lower(hex(randomblob(16))), %s, {SQLITE_NOW_US}, {SQLITE_NOW_US},"
        f" {SQLITE_NOW_US}, {SQLITE_NOW_US})",
        params=(webhook_url,),
    )


def test_migrating_twice_changes_nothing_and_keeps_the_configuration(
    migrated_database_url: str,
) -> None:
    db = TestDatabase(migrated_database_url)
    db.execute("UPDATE scheduler_config SET select_size = 7")
    _insert_task(db)
    before = describe_schema(migrated_database_url)

    assert migrate(migrated_database_url) == []

    assert describe_schema(migrated_database_url) == before
    assert db.execute("SELECT select_size FROM scheduler_config") == [(7,)]
    assert db.execute("SELECT count(*) FROM scheduler_tasks") == [(1,)]
    assert db.execute("SELECT count(*) FROM scheduler_schema_migrations") == [
        (len(load_migrations(db.dialect)),)
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_expected_schema_file_is_valid_json_sorted_by_table(dialect: str) -> None:
    # Kept readable for review: one entry per table, the same tables as the replay.
    expected = expected_schema(dialect)
    assert list(expected) == sorted(expected)
    assert set(expected) == TABLES
    json.dumps(expected)


def test_the_sqlite_schema_file_keeps_the_partial_indexes_and_the_checks() -> None:
    # What the JSON must say for the SQLite store to behave; a regenerated file that lost
    # one of these would otherwise pass the replay test silently.
    tasks = expected_schema("sqlite")["scheduler_tasks"]
    assert tasks["indexes"]["scheduler_tasks_due"] == {
        "unique": False,
        "origin": "CREATE INDEX",
        "columns": ["queue", "has_failed", "next_attempt_at", "seq"],
        "where": "status = 'pending'",
    }
    assert tasks["indexes"]["scheduler_tasks_idempotency_key"]["unique"] is True
    assert tasks["indexes"]["scheduler_tasks_idempotency_key"]["where"] == (
        "idempotency_key IS NOT NULL"
    )
    assert tasks["checks"] == ["status <> 'running' OR lease_expires_at IS NOT NULL"]
    assert tasks["autoincrement"] is True  # a deleted seq is never reused: stable cursors
    config = expected_schema("sqlite")["scheduler_config"]
    for key, bound in BOUNDS.items():
        assert config["columns"][key]["default"] == str(bound.default), key
        assert config["columns"][key]["checks"] == [
            f"{key} BETWEEN {bound.minimum} AND {bound.maximum}"
        ], key
    assert config["checks"] == ["retry_backoff_max_ms >= retry_backoff_ms"]


# -- the configuration row ----------------------------------------------------------------


def config_row(url: str) -> list[dict[str, int]]:
    columns = list(BOUNDS)
    rows = query(url, f"SELECT {', '.join(columns)} FROM scheduler_config")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_a_new_database_has_exactly_the_default_queue_with_the_defaults(
    migrated_database_url: str,
) -> None:
    assert config_row(migrated_database_url) == [RuntimeConfig().as_dict()]


INTEGRITY_ERRORS = (psycopg2.IntegrityError, sqlite3.IntegrityError)


def violation(exc: BaseException) -> str:
    """Which kind of constraint refused the statement, the same word on both backends."""
    if isinstance(exc, psycopg2.errors.CheckViolation):
        return "check"
    if isinstance(exc, psycopg2.errors.UniqueViolation):
        return "unique"
    if isinstance(exc, sqlite3.IntegrityError):
        for prefix, kind in (("CHECK constraint failed", "check"), ("UNIQUE", "unique")):
            if str(exc).startswith(prefix):
                return kind
    return repr(exc)


def refused(statement: Callable[[], object]) -> str:
    with pytest.raises(INTEGRITY_ERRORS) as info:
        statement()
    return violation(info.value)


Update = Callable[[dict[str, int]], None]


@pytest.fixture
def config_update(clean_database: str, db: TestDatabase) -> Iterator[Update]:
    """UPDATE scheduler_config in one transaction that is rolled back afterwards.

    Each update runs in a savepoint, so one refused update leaves the others usable.
    """
    conn: Any
    if db.dialect == "postgresql":
        conn = psycopg2.connect(clean_database)
        placeholder = "%s"
    else:
        conn = sqlite3.connect(sqlite_path(clean_database), isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        placeholder = "?"
    cur = conn.cursor()

    def update(columns: dict[str, int]) -> None:
        assignments = ", ".join(f"{name} = {placeholder}" for name in columns)
        cur.execute("SAVEPOINT attempt")
        try:
            cur.execute(f"UPDATE scheduler_config SET {assignments}", list(columns.values()))
        except INTEGRITY_ERRORS:
            cur.execute("ROLLBACK TO SAVEPOINT attempt")
            raise

    try:
        yield update
    finally:
        conn.rollback()
        conn.close()


def _companions(key: str, value: int) -> dict[str, int]:
    """Other columns to set so that only `key`'s own bound decides."""
    if key == "retry_backoff_max_ms":
        return {"retry_backoff_ms": max(0, min(value, BOUNDS["retry_backoff_ms"].maximum))}
    if key == "retry_backoff_ms":
        return {"retry_backoff_max_ms": max(value, BOUNDS["retry_backoff_max_ms"].minimum)}
    return {}


@pytest.mark.parametrize("key", list(BOUNDS))
def test_config_check_constraints_match_the_documented_bounds(
    config_update: Update, key: str
) -> None:
    bound = BOUNDS[key]
    for value in (bound.minimum, bound.maximum):
        config_update({key: value, **_companions(key, value)})
    for value in (bound.minimum - 1, bound.maximum + 1):
        columns = {key: value, **_companions(key, value)}
        assert refused(lambda columns=columns: config_update(columns)) == "check", value


def test_config_check_refuses_a_backoff_cap_below_the_backoff(config_update: Update) -> None:
    columns = {"retry_backoff_ms": 5000, "retry_backoff_max_ms": 4000}

    assert refused(lambda: config_update(columns)) == "check"


def test_a_refused_config_update_changes_nothing(clean_database: str, db: TestDatabase) -> None:
    kind = refused(
        lambda: db.execute("UPDATE scheduler_config SET base_interval_ms = 5, select_size = 3")
    )

    assert kind == "check"
    assert config_row(clean_database) == [RuntimeConfig().as_dict()]


def test_the_config_table_holds_one_row_per_queue_name_and_refuses_bad_names(
    clean_database: str, db: TestDatabase
) -> None:
    again = "INSERT INTO scheduler_config (queue) VALUES ('default')"
    assert refused(lambda: db.execute(again)) == "unique"
    for bad in ("", "a b", "x/y", "é", "q" * 65):
        statement = f"INSERT INTO scheduler_config (queue) VALUES ('{bad}')"
        assert refused(lambda statement=statement: db.execute(statement)) == "check", bad
    db.execute("INSERT INTO scheduler_config (queue) VALUES ('mail-1.x_Y')")

    assert len(config_row(clean_database)) == 2


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status", "done"),
        ("attempts", -1),
        ("budget_start", -1),
        ("max_retries", 1001),
        ("status", "running"),  # running without a lease: nobody would ever reclaim it
    ],
    ids=["unknown-status", "negative-attempts", "negative-budget", "max-retries", "no-lease"],
)
def test_task_check_constraints_refuse_impossible_rows(
    clean_database: str, db: TestDatabase, column: str, value: object
) -> None:
    _insert_task(db)

    kind = refused(lambda: db.execute(f"UPDATE scheduler_tasks SET {column} = %s", (value,)))

    assert kind == "check"
    assert db.execute("SELECT status, attempts, budget_start FROM scheduler_tasks") == [
        ("pending", 0, 0)
    ]


# -- the claim uses the partial due index: PostgreSQL ----------------------------------------
# EXPLAIN (FORMAT JSON) and generate_series are PostgreSQL's: these tests run on a
# PostgreSQL database of their own (the SQLite claim has its own plan test below).


@pytest.fixture
def migrated_postgres_url() -> Iterator[str]:
    require_backend("postgresql")
    with postgres_database("scheduler_plan") as url:
        migrate(url)
        yield url


def _claim_plan(url: str) -> list[dict[str, Any]]:
    """Every scan of scheduler_tasks in EXPLAIN of the claim query."""
    store = PostgresStore(url, pool_size=1)
    claim_sql = store.q["claim_due"]
    store.close()
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("ANALYZE scheduler_tasks")
            cur.execute(
                "EXPLAIN (FORMAT JSON) " + claim_sql,
                {"limit": 100, "lease_ms": 10_000, "queue": "default"},
            )
            [[plan]] = cur.fetchall()
    finally:
        conn.rollback()  # EXPLAIN without ANALYZE claims nothing; be sure regardless
        conn.close()

    nodes: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == "scheduler_tasks" and node["Node Type"].endswith("Scan"):
            nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return nodes


def _fill(url: str, resolved: int, due: int, future: int = 0) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                INSERT INTO scheduler_tasks
                    (webhook_url, execute_at, next_attempt_at, status, attempts, resolved_at)
                SELECT 'http://127.0.0.1/done', now() - interval '2 days',
                       now() - interval '2 days' + g * interval '1 ms', 'resolved', 1, now()
                FROM generate_series(1, %(resolved)s) AS g;
                INSERT INTO scheduler_tasks (webhook_url, execute_at, next_attempt_at, has_failed)
                SELECT 'http://127.0.0.1/due', now(), now() - g * interval '1 s', g %% 2 = 0
                FROM generate_series(1, %(due)s) AS g;
                INSERT INTO scheduler_tasks (webhook_url, execute_at, next_attempt_at)
                SELECT 'http://127.0.0.1/later', now() + interval '1 day',
                       now() + interval '1 day' + g * interval '1 ms'
                FROM generate_series(1, %(future)s) AS g;
                """,
                {"resolved": resolved, "due": due, "future": future},
            )
    finally:
        conn.close()


def test_the_claim_reads_the_due_index_among_50k_resolved_tasks(
    migrated_postgres_url: str,
) -> None:
    _fill(migrated_postgres_url, resolved=50_000, due=6)

    nodes = _claim_plan(migrated_postgres_url)

    scans = [(n["Node Type"], n.get("Index Name")) for n in nodes]
    assert ("Index Scan", "scheduler_tasks_due") in scans, scans
    assert not [s for s in scans if s[0] == "Seq Scan"], scans


def test_with_a_backlog_of_future_tasks_both_claim_scans_use_the_due_index(
    migrated_postgres_url: str,
) -> None:
    # Here any other index would walk every pending task scheduled for tomorrow.
    _fill(migrated_postgres_url, resolved=50_000, due=6, future=20_000)

    nodes = _claim_plan(migrated_postgres_url)

    candidate_scans = [
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if n.get("Index Name") != "scheduler_tasks_pkey"
    ]
    assert candidate_scans == [("Index Scan", "scheduler_tasks_due")] * 2, candidate_scans


# -- the claim uses the partial due index: SQLite ------------------------------------------


def _fill_sqlite(url: str, resolved: int, due: int, future: int) -> None:
    day_us = 86_400_000_000
    now = SQLITE_NOW_US
    series = "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)"
    columns = (
        "(id, webhook_url, execute_at, next_attempt_at, status, attempts, has_failed,"
        " resolved_at, created_at, updated_at)"
    )
    lite = sqlite3.connect(sqlite_path(url))
    try:
        with lite:
            lite.execute(
                f"{series} INSERT INTO scheduler_tasks {columns}"
                f" SELECT 'done-' || n, 'http://127.0.0.1/done', {now} - 2 * {day_us},"
                f" {now} - 2 * {day_us} + n * 1000, 'resolved', 1, 0, {now}, {now}, {now}"
                " FROM g",
                (resolved,),
            )
            lite.execute(
                f"{series} INSERT INTO scheduler_tasks {columns}"
                f" SELECT 'due-' || n, 'http://127.0.0.1/due', {now}, {now} - n * 1000000,"
                f" 'pending', 0, n % 2, NULL, {now}, {now} FROM g",
                (due,),
            )
            lite.execute(
                f"{series} INSERT INTO scheduler_tasks {columns}"
                f" SELECT 'later-' || n, 'http://127.0.0.1/later', {now} + {day_us},"
                f" {now} + {day_us} + n * 1000, 'pending', 0, 0, NULL, {now}, {now} FROM g",
                (future,),
            )
    finally:
        lite.close()


def _sqlite_claim_plan(url: str, analyze: bool) -> list[str]:
    claim_sql = SqliteStore(url).q["claim_due"]
    lite = sqlite3.connect(sqlite_path(url))
    # The store's queries read the clock through a function each of its connections
    # registers; any clock will do for a plan.
    lite.create_function("scheduler_now", 0, lambda: time.time_ns() // 1000)
    try:
        if analyze:
            lite.execute("ANALYZE")
        rows = lite.execute(
            "EXPLAIN QUERY PLAN " + claim_sql,
            {"limit": 100, "lease_ms": 10_000, "queue": "default"},
        ).fetchall()
    finally:
        lite.close()
    return [str(detail) for *_ids, detail in rows]


# The store never runs ANALYZE, so the plan without statistics is the one users get.
@pytest.mark.parametrize("analyze", [False, True], ids=["no-statistics", "analyzed"])
def test_the_sqlite_claim_searches_the_due_index_among_resolved_and_future_tasks(
    tmp_path: Path, analyze: bool
) -> None:
    require_backend("sqlite")
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    migrate(url)
    _fill_sqlite(url, resolved=50_000, due=6, future=20_000)

    plan = _sqlite_claim_plan(url, analyze)

    reads = [step for step in plan if re.search(r"\bscheduler_tasks\b", step)]
    # Both candidate queries (never failed, failed) range-scan the partial due index;
    # the UPDATE then finds each chosen row by its id. Nothing scans the table.
    due = [s for s in reads if "USING INDEX scheduler_tasks_due" in s]
    assert len(due) == 2, plan
    assert all(s.startswith("SEARCH") and "next_attempt_at<" in s for s in due), plan
    others = [s for s in reads if s not in due]
    assert others == [
        "SEARCH scheduler_tasks USING COVERING INDEX sqlite_autoindex_scheduler_tasks_1 (id=?)"
    ], plan
    assert not [s for s in plan if s.startswith("SCAN scheduler_tasks")], plan


@pytest.mark.parametrize("analyze", [False, True], ids=["no-statistics", "analyzed"])
def test_the_sqlite_outcome_write_finds_each_task_by_id_not_among_the_pending_ones(
    tmp_path: Path, analyze: bool
) -> None:
    """With thousands of tasks pending, a batch of outcomes must go from each outcome to its
    task by id: a plan through the status index reads every pending task once per outcome
    and held the write lock for seconds (leases expired under a soak)."""
    require_backend("sqlite")
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    migrate(url)
    _fill_sqlite(url, resolved=5_000, due=5_000, future=5_000)
    store = SqliteStore(url)
    lite = sqlite3.connect(sqlite_path(url))
    lite.create_function("scheduler_now", 0, lambda: time.time_ns() // 1000)
    try:
        if analyze:
            lite.execute("ANALYZE")
        for name in ("record_task_outcomes", "record_attempt_outcomes"):
            rows = lite.execute(
                "EXPLAIN QUERY PLAN " + store.q[name], {"outcomes": "[]"}
            ).fetchall()
            plan = [str(detail) for *_ids, detail in rows]
            assert plan[0].startswith("SCAN json_each"), plan
            assert len(plan) == 2 and plan[1].startswith("SEARCH"), plan
            assert "(id=?)" in plan[1] or "(task_id=? AND attempt=?)" in plan[1], plan
    finally:
        lite.close()

"""The numbered SQL migrations: names, replay, idempotence, the config row, the due index."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

import scheduler_core.migrations as migrations_module
from scheduler_core.migrations import load as load_migrations
from scheduler_core.runtime_config import BOUNDS, RuntimeConfig
from scheduler_core.store.postgres import PostgresStore
from tests.store.databases import query
from tests.store.schema import describe_schema, expected_schema

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
DIALECTS = ["postgresql"]


@pytest.fixture
def migrated_database_url(empty_database_url: str) -> str:
    store = PostgresStore(empty_database_url, pool_size=1)
    try:
        store.migrate()
    finally:
        store.close()
    return empty_database_url


def migrate(url: str) -> list[str]:
    store = PostgresStore(url, pool_size=1)
    try:
        return store.migrate()
    finally:
        store.close()


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


def test_the_installed_package_finds_the_same_migrations_as_the_repo_folder() -> None:
    installed = files("scheduler_core.migrations").joinpath("postgresql")
    shipped = sorted(e.name for e in installed.iterdir() if e.name.endswith(".sql"))

    assert shipped == sorted(p.name for p in (REPO_MIGRATIONS / "postgresql").glob("*.sql"))


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
def test_load_refuses_misnumbered_or_misnamed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str], message: str
) -> None:
    (tmp_path / "postgresql").mkdir()
    for name in names:
        (tmp_path / "postgresql" / name).write_text("SELECT 1;")
    monkeypatch.setattr(migrations_module, "files", lambda _package: tmp_path)

    with pytest.raises(ValueError, match=re.escape(message)):
        load_migrations("postgresql")


# -- replay -------------------------------------------------------------------------------


def test_replaying_every_migration_on_an_empty_database_gives_the_expected_schema(
    empty_database_url: str,
) -> None:
    conn = psycopg2.connect(empty_database_url)
    try:
        for migration in load_migrations("postgresql"):
            with conn, conn.cursor() as cur:
                cur.execute(migration.sql)
    finally:
        conn.close()

    expected = expected_schema()
    del expected["scheduler_schema_migrations"]  # the store's bookkeeping, not a migration's
    assert describe_schema(empty_database_url) == expected


def test_store_migrate_gives_the_expected_schema_and_records_each_migration(
    empty_database_url: str,
) -> None:
    applied = migrate(empty_database_url)

    assert applied == [m.name for m in load_migrations("postgresql")]
    assert describe_schema(empty_database_url) == expected_schema()
    assert query(
        empty_database_url, "SELECT version, name FROM scheduler_schema_migrations ORDER BY version"
    ) == [(m.version, m.name) for m in load_migrations("postgresql")]


def test_migrating_twice_changes_nothing_and_keeps_the_configuration(
    migrated_database_url: str,
) -> None:
    query(migrated_database_url, "UPDATE scheduler_config SET select_size = 7")
    query(
        migrated_database_url,
        "INSERT INTO scheduler_tasks (webhook_url, execute_at, next_attempt_at)"
        " VALUES ('http://127.0.0.1/x', now(), now())",
    )
    before = describe_schema(migrated_database_url)

    assert migrate(migrated_database_url) == []

    assert describe_schema(migrated_database_url) == before
    assert query(migrated_database_url, "SELECT select_size FROM scheduler_config") == [(7,)]
    assert query(migrated_database_url, "SELECT count(*) FROM scheduler_tasks") == [(1,)]
    assert query(migrated_database_url, "SELECT count(*) FROM scheduler_schema_migrations") == [
        (len(load_migrations("postgresql")),)
    ]


def test_the_expected_schema_file_is_valid_json_sorted_by_table() -> None:
    # Kept readable for review: one entry per table, the same tables as the replay.
    expected = expected_schema()
    assert list(expected) == sorted(expected)
    assert set(expected) == {
        "scheduler_attempts",
        "scheduler_config",
        "scheduler_schema_migrations",
        "scheduler_tasks",
    }
    json.dumps(expected)


# -- the configuration row ----------------------------------------------------------------


def config_row(url: str) -> list[dict[str, int]]:
    columns = list(BOUNDS)
    rows = query(url, f"SELECT {', '.join(columns)} FROM scheduler_config")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_the_config_table_holds_exactly_one_row_with_the_defaults(
    migrated_database_url: str,
) -> None:
    assert config_row(migrated_database_url) == [RuntimeConfig().as_dict()]


@pytest.fixture
def config_cursor(clean_database: str) -> Iterator[Any]:
    """A cursor in a transaction that is rolled back afterwards."""
    conn = psycopg2.connect(clean_database)
    try:
        with conn.cursor() as cur:
            yield cur
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


def _update(cur: Any, columns: dict[str, int]) -> None:
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    cur.execute("SAVEPOINT attempt")
    try:
        cur.execute(f"UPDATE scheduler_config SET {assignments}", columns)
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT attempt")
        raise


@pytest.mark.parametrize("key", list(BOUNDS))
def test_config_check_constraints_match_the_documented_bounds(config_cursor: Any, key: str) -> None:
    bound = BOUNDS[key]
    for value in (bound.minimum, bound.maximum):
        _update(config_cursor, {key: value, **_companions(key, value)})
    for value in (bound.minimum - 1, bound.maximum + 1):
        with pytest.raises(psycopg2.errors.CheckViolation):
            _update(config_cursor, {key: value, **_companions(key, value)})


def test_config_check_refuses_a_backoff_cap_below_the_backoff(config_cursor: Any) -> None:
    with pytest.raises(psycopg2.errors.CheckViolation):
        _update(config_cursor, {"retry_backoff_ms": 5000, "retry_backoff_max_ms": 4000})


def test_a_refused_config_update_changes_nothing(clean_database: str) -> None:
    with pytest.raises(psycopg2.errors.CheckViolation):
        query(clean_database, "UPDATE scheduler_config SET base_interval_ms = 5, select_size = 3")

    assert config_row(clean_database) == [RuntimeConfig().as_dict()]


def test_the_config_table_refuses_a_second_row(clean_database: str) -> None:
    with pytest.raises(psycopg2.errors.UniqueViolation):
        query(clean_database, "INSERT INTO scheduler_config DEFAULT VALUES")
    with pytest.raises(psycopg2.errors.CheckViolation):
        query(clean_database, "INSERT INTO scheduler_config (singleton) VALUES (false)")

    assert len(config_row(clean_database)) == 1


# -- the claim uses the partial due index -------------------------------------------------


def _claim_plan(url: str) -> list[dict[str, Any]]:
    """Every scan of scheduler_tasks in EXPLAIN of the claim query."""
    store = PostgresStore(url, pool_size=1)
    claim_sql = store.q["claim_due"]
    store.close()
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("ANALYZE scheduler_tasks")
            cur.execute("EXPLAIN (FORMAT JSON) " + claim_sql, {"limit": 100, "lease_ms": 10_000})
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
    query(
        url,
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


def test_the_claim_reads_the_due_index_among_50k_resolved_tasks(
    migrated_database_url: str,
) -> None:
    _fill(migrated_database_url, resolved=50_000, due=6)

    nodes = _claim_plan(migrated_database_url)

    scans = [(n["Node Type"], n.get("Index Name")) for n in nodes]
    assert ("Index Scan", "scheduler_tasks_due") in scans, scans
    assert not [s for s in scans if s[0] == "Seq Scan"], scans


def test_with_a_backlog_of_future_tasks_both_claim_scans_use_the_due_index(
    migrated_database_url: str,
) -> None:
    # Here any other index would walk every pending task scheduled for tomorrow.
    _fill(migrated_database_url, resolved=50_000, due=6, future=20_000)

    nodes = _claim_plan(migrated_database_url)

    candidate_scans = [
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if n.get("Index Name") != "scheduler_tasks_pkey"
    ]
    assert candidate_scans == [("Index Scan", "scheduler_tasks_due")] * 2, candidate_scans

"""Describe a database schema as plain data, to compare it with what the tests expect.

The description is what a user of the database relies on: tables, columns (type,
nullability, default), indexes (with their partial predicates) and constraints, each
keyed by name so a difference reads clearly in an assertion. One description per
dialect, from what each database says about itself:

- PostgreSQL: information_schema, pg_indexes, pg_constraint.
- SQLite: PRAGMA table_info / index_list / index_info / foreign_key_list, plus the
  CREATE statements kept in sqlite_master for what no PRAGMA reports (CHECK
  constraints, the WHERE clause of a partial index, AUTOINCREMENT, WITHOUT ROWID).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from scheduler_core.store.sqlite import sqlite_path
from tests.store.databases import dialect_of, query


def expected_schema_path(dialect: str) -> Path:
    return Path(__file__).with_name(f"expected_schema_{dialect}.json")


def expected_schema(dialect: str) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads(expected_schema_path(dialect).read_text("utf-8"))
    return expected


def describe_schema(database_url: str) -> dict[str, Any]:
    if dialect_of(database_url) == "sqlite":
        return describe_sqlite_schema(database_url)
    return describe_postgresql_schema(database_url)


# -- PostgreSQL ----------------------------------------------------------------------------


def describe_postgresql_schema(database_url: str) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for (table,) in query(
        database_url,
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    ):
        tables[table] = {"columns": {}, "indexes": {}, "constraints": {}}

    for table, column, data_type, nullable, default, identity, generation in query(
        database_url,
        "SELECT table_name, column_name, data_type, is_nullable, column_default,"
        "       is_identity, identity_generation"
        " FROM information_schema.columns WHERE table_schema = 'public'"
        " ORDER BY table_name, ordinal_position",
    ):
        tables[table]["columns"][column] = {
            "type": data_type,
            "nullable": nullable == "YES",
            "default": default,
            "identity": generation if identity == "YES" else None,
        }

    for table, index, definition in query(
        database_url,
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public' ORDER BY 1, 2",
    ):
        tables[table]["indexes"][index] = definition

    for table, constraint, kind, definition in query(
        database_url,
        "SELECT rel.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid)"
        " FROM pg_constraint con"
        " JOIN pg_class rel ON rel.oid = con.conrelid"
        " JOIN pg_namespace ns ON ns.oid = rel.relnamespace"
        " WHERE ns.nspname = 'public' ORDER BY 1, 2",
    ):
        kinds = {"c": "check", "f": "foreign key", "p": "primary key", "u": "unique"}
        tables[table]["constraints"][constraint] = {
            "kind": kinds.get(kind, kind),
            "definition": definition,
        }
    return tables


# -- SQLite --------------------------------------------------------------------------------


def describe_sqlite_schema(database_url: str) -> dict[str, Any]:
    conn = sqlite3.connect(sqlite_path(database_url))
    try:
        return _describe_sqlite(conn)
    finally:
        conn.close()


def _describe_sqlite(conn: sqlite3.Connection) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name, create in conn.execute(
        "SELECT name, sql FROM sqlite_master"
        " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ):
        columns = {
            column: {
                "type": declared,
                "nullable": not notnull,
                "default": default,
                "primary_key": pk,  # position in the primary key, 0 when not part of it
                "checks": [],
            }
            for _cid, column, declared, notnull, default, pk in conn.execute(
                f"PRAGMA table_info({name})"
            )
        }
        table_checks: list[str] = []
        body, options = _table_body(create)
        for definition in _split_top_level(body):
            first = definition.split(None, 1)[0].strip('"`[]')
            checks = _checks(definition)
            if first in columns:
                columns[first]["checks"] = checks
            else:
                table_checks += checks
        tables[name] = {
            "columns": columns,
            "indexes": _sqlite_indexes(conn, name),
            "foreign_keys": [
                {
                    "columns": [source],
                    "references": f"{target_table} ({target})",
                    "on_update": on_update,
                    "on_delete": on_delete,
                }
                for _id, _seq, target_table, source, target, on_update, on_delete, _match in (
                    conn.execute(f"PRAGMA foreign_key_list({name})")
                )
            ],
            "checks": table_checks,
            "autoincrement": bool(re.search(r"\bAUTOINCREMENT\b", body, re.IGNORECASE)),
            "without_rowid": bool(re.search(r"\bWITHOUT\s+ROWID\b", options, re.IGNORECASE)),
        }
    return tables


def _sqlite_indexes(conn: sqlite3.Connection, table: str) -> dict[str, Any]:
    created = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
        )
    )
    indexes: dict[str, Any] = {}
    for _seq, index, unique, origin, partial in sorted(
        conn.execute(f"PRAGMA index_list({table})"), key=lambda row: row[1]
    ):
        columns = [
            column for _seqno, _cid, column in sorted(conn.execute(f"PRAGMA index_info({index})"))
        ]
        where = None
        if partial:
            # Only the CREATE INDEX statement knows the predicate.
            text = _strip_comments(created[index])
            where = _normalise(re.split(r"\bWHERE\b", text, maxsplit=1, flags=re.IGNORECASE)[1])
        indexes[index] = {
            "unique": bool(unique),
            "origin": {"c": "CREATE INDEX", "u": "UNIQUE constraint", "pk": "PRIMARY KEY"}[origin],
            "columns": columns,
            "where": where,
        }
    return indexes


# -- reading CREATE TABLE text ---------------------------------------------------------------


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _strip_comments(sql: str) -> str:
    """The statement without -- and /* */ comments; quoted text is left alone."""
    out, i = [], 0
    while i < len(sql):
        char = sql[i]
        if char in "'\"":
            end = sql.index(char, i + 1)
            while sql[end + 1 : end + 2] == char:  # a doubled quote escapes itself
                end = sql.index(char, end + 2)
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            i = sql.find("\n", i)
            i = len(sql) if i < 0 else i
        elif sql.startswith("/*", i):
            i = sql.index("*/", i) + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _matching_paren(text: str, start: int) -> int:
    """The index of the ')' closing the '(' at `start` (comments already stripped)."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char in "'\"":
            i = text.index(char, i + 1)
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _table_body(create: str) -> tuple[str, str]:
    """(what is between the outer parentheses, the table options after them)."""
    text = _strip_comments(create)
    start = text.index("(")
    end = _matching_paren(text, start)
    return text[start + 1 : end], text[end + 1 :]


def _split_top_level(body: str) -> list[str]:
    """Column definitions and table constraints: split on commas outside parentheses."""
    parts, depth, current, i = [], 0, "", 0
    while i < len(body):
        char = body[i]
        if char in "'\"":
            end = body.index(char, i + 1)
            current += body[i : end + 1]
            i = end + 1
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    parts.append(current)
    return [_normalise(p) for p in parts if p.strip()]


def _checks(definition: str) -> list[str]:
    """The expression of every CHECK (...) in one column definition or table constraint."""
    found = []
    for match in re.finditer(r"\bCHECK\s*\(", definition, re.IGNORECASE):
        start = match.end() - 1
        found.append(_normalise(definition[start + 1 : _matching_paren(definition, start)]))
    return found

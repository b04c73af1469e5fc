"""Describe a PostgreSQL schema as plain data, to compare it with what the tests expect.

The description is what a user of the database relies on: tables, columns (type,
nullability, default, identity), indexes (with their partial predicates) and
constraints, each keyed by name so a difference reads clearly in an assertion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.store.databases import query

EXPECTED_SCHEMA_PATH = Path(__file__).with_name("expected_schema_postgresql.json")


def describe_schema(database_url: str) -> dict[str, Any]:
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


def expected_schema() -> dict[str, Any]:
    expected: dict[str, Any] = json.loads(EXPECTED_SCHEMA_PATH.read_text("utf-8"))
    return expected

"""Numbered SQL migrations, one folder per dialect, shipped as `scheduler_core.migrations`.

File names follow `NNNN_short_name.sql`; numbers start at 0001 and have no gaps. Each
file runs in one transaction and is recorded in `scheduler_schema_migrations`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    """Every migration of `dialect`, in order; ValueError on a misnamed or missing file."""
    folder = files(__name__).joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = FILE_NAME.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {entry.name!r} does not match NNNN_name.sql")
        found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise ValueError(f"{dialect} migrations must be numbered 1..n without gaps")
    return found

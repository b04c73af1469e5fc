"""Numbered SQL migrations, one folder per dialect, shipped as `scheduler_core.migrations`.

File names follow `NNNN_short_name.sql`; numbers start at 0001 and have no gaps. Each
file runs in one transaction and is recorded in `scheduler_schema_migrations`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
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


def pending(known: Sequence[Migration], done: Collection[int]) -> list[Migration]:
    """The migrations of `known` that `done` (the versions a database recorded) lacks, in
    order. ValueError when `known` is not numbered 1..n (a test migrating to an older
    version gives a prefix of `load()`), or when the database recorded a version `known`
    does not hold: a newer scheduler-core migrated it, and this one cannot know what its
    schema means, so it refuses rather than run on it."""
    versions = [m.version for m in known]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..n without gaps, not {versions}")
    newer = sorted(v for v in done if v > len(versions))
    if newer:
        raise ValueError(
            f"the database schema is at version {max(newer)}, newer than this scheduler-core "
            f"knows (up to {len(versions)}): a newer release migrated it. Run that release "
            "(or newer) on this database; nothing was changed"
        )
    return [m for m in known if m.version not in done]

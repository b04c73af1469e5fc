"""Named SQL blocks kept in `.sql` files, looked up by name from Python."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split `-- name: x` blocks; each block runs until the next name."""
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[match.end() : end].strip()
        if match.group(1) in queries:
            raise ValueError(f"query {match.group(1)!r} defined twice")
        queries[match.group(1)] = body
    return queries


@cache
def queries_for(dialect: str) -> dict[str, str]:
    """Every named query of `dialect`: `sql/<dialect>.sql`, then the topic files beside it
    (`sql/<dialect>.<topic>.sql`, e.g. postgresql.queues.sql) in name order. ValueError
    when a name is defined twice, in one file or across them."""
    folder = files("scheduler_core.store").joinpath("sql")
    topics = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name.startswith(f"{dialect}.")
        and entry.name.endswith(".sql")
        and entry.name != f"{dialect}.sql"
    )
    queries: dict[str, str] = {}
    for name in [f"{dialect}.sql", *topics]:
        for query, body in parse_queries(folder.joinpath(name).read_text("utf-8")).items():
            if query in queries:
                raise ValueError(f"query {query!r} defined twice ({name})")
            queries[query] = body
    return queries

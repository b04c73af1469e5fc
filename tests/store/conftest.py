from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.databases import throwaway_database


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database of its own that has never been migrated, dropped after the test."""
    with throwaway_database("scheduler_store") as url:
        yield url

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.databases import empty_database


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of the backend under test that has never been migrated."""
    with empty_database(backend, tmp_path, "scheduler_store") as url:
        yield url

"""A SQLite database the scheduler creates is its owner's alone (0600), -wal and -shm
included, whatever the umask lets others read; a file the operator made keeps its mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_core.models import NewTask
from scheduler_core.store import open_store
from tests.support.database import sqlite_url
from tests.support.processes import run_cli


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask, 022: files readable by everyone unless made otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_of(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def test_a_new_database_and_its_wal_and_shm_files_are_private(tmp_path, open_umask):
    db = tmp_path / "new.db"
    store = open_store(sqlite_url(tmp_path, "new.db"), pool_size=2)
    try:
        store.migrate()
        store.enqueue([NewTask("http://127.0.0.1:9/x", "Bearer t0ken-value")])
        # While a connection is open in WAL mode, all three files exist.
        for path in files_of(db):
            assert path.exists(), path
            assert mode(path) == 0o600, f"{path.name}: {oct(mode(path))}"
    finally:
        store.close()


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path, open_umask):
    db = tmp_path / "shared.db"
    db.touch()
    db.chmod(0o640)
    store = open_store(sqlite_url(tmp_path, "shared.db"), pool_size=2)
    try:
        store.migrate()
        store.enqueue([NewTask("http://127.0.0.1:9/x")])
        assert mode(db) == 0o640
    finally:
        store.close()


def test_a_symlink_is_followed_and_its_target_left_alone(tmp_path, open_umask):
    target = tmp_path / "real.db"
    target.touch()
    target.chmod(0o644)
    (tmp_path / "link.db").symlink_to(target)
    store = open_store(sqlite_url(tmp_path, "link.db"), pool_size=1)
    try:
        store.migrate()
    finally:
        store.close()
    assert mode(target) == 0o644


def test_scheduler_migrate_creates_a_private_file(tmp_path, open_umask):
    result = run_cli(sqlite_url(tmp_path, "cli.db"), "migrate", "--create")
    assert result.returncode == 0, result.stderr
    assert mode(tmp_path / "cli.db") == 0o600

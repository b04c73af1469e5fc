"""The PostgreSQL store's connection pool: waiting for a free connection, recovering from
lost ones.

PostgreSQL only, on the session's PostgreSQL database whatever backends are under test:
the pool holds psycopg2 connections and a lost connection is made with
pg_terminate_backend. The SQLite store opens its connections on demand (see
tests/store/test_sqlite.py for how it waits for a busy file).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scheduler_core.runtime_config import RuntimeConfig
from scheduler_core.store import StoreUnavailable
from scheduler_core.store.pool import ConnectionPool
from scheduler_core.store.postgres import PostgresStore
from tests.store.databases import UNREACHABLE_URL, require_backend
from tests.support.database import TestDatabase, admin_connection
from tests.support.waiting import wait_until


@pytest.fixture
def postgres_clean_url(request: pytest.FixtureRequest) -> str:
    """The session PostgreSQL database, emptied, with the default configuration."""
    require_backend("postgresql")
    url = str(request.getfixturevalue("postgres_url"))
    TestDatabase(url).reset()
    return url


@pytest.fixture
def pool(postgres_clean_url: str) -> Iterator[ConnectionPool]:
    pool = ConnectionPool(postgres_clean_url, size=1, checkout_timeout=30)
    yield pool
    pool.close()


def backend_pid(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        pid: int = conn.get_backend_pid()
    return pid


def terminate(pids: list[int]) -> None:
    admin = admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", (pids,))
            # Terminating is asynchronous: wait until the backends are really gone.
            wait_until(
                lambda: not _alive(cur, pids),
                timeout=15,
                message="for the terminated backends to go away",
            )
    finally:
        admin.close()


def _alive(cur: Any, pids: list[int]) -> bool:
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
    return bool(cur.fetchone()[0])


def test_a_caller_waits_for_a_busy_pool_and_gets_the_connection_once_it_is_freed(
    pool: ConnectionPool,
) -> None:
    release = threading.Event()
    got: list[int] = []
    errors: list[BaseException] = []

    def holder() -> None:
        with pool.connection() as conn:
            got.append(conn.get_backend_pid())
            release.wait(30)

    def waiter() -> None:
        try:
            with pool.connection() as conn:
                got.append(conn.get_backend_pid())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    first = threading.Thread(target=holder)
    first.start()
    wait_until(lambda: len(got) == 1, timeout=15, message="for the first checkout")
    second = threading.Thread(target=waiter)
    second.start()
    try:
        # While the only connection is out the second caller waits; it neither errors
        # nor opens a connection beyond the pool's size.
        second.join(1.0)
        assert second.is_alive()
        assert got[1:] == [] and errors == []
    finally:
        release.set()
        first.join(15)
        second.join(15)

    assert errors == []
    assert len(got) == 2
    assert got[1] == got[0]  # the same connection, handed over rather than a new one


def test_a_checkout_that_waits_past_its_timeout_is_store_unavailable(
    postgres_clean_url: str,
) -> None:
    pool = ConnectionPool(postgres_clean_url, size=1, checkout_timeout=0.2)
    try:
        with (
            pool.connection(),
            pytest.raises(StoreUnavailable, match="no database connection"),
            pool.connection(),
        ):
            pass
        with pool.connection() as conn:  # and it is usable again once freed
            assert conn.get_backend_pid()
    finally:
        pool.close()


def test_the_store_recovers_after_its_connections_are_terminated(postgres_clean_url: str) -> None:
    store = PostgresStore(postgres_clean_url, pool_size=2)
    try:
        # Two connections open and back in the pool, idle.
        with store.pool.connection() as a, store.pool.connection() as b:
            pids = [a.get_backend_pid(), b.get_backend_pid()]
        terminate(pids)

        try:
            store.get_config()  # may still land on a dead connection
        except StoreUnavailable as exc:
            assert "database connection lost" in str(exc)

        assert store.get_config() == RuntimeConfig()
        store.ping()
        assert backend_pid(store.pool) not in pids
    finally:
        store.close()


def test_a_terminated_connection_in_the_middle_of_use_is_store_unavailable(
    postgres_clean_url: str,
) -> None:
    store = PostgresStore(postgres_clean_url, pool_size=1)
    try:
        pid = backend_pid(store.pool)
        terminate([pid])

        with (
            pytest.raises(StoreUnavailable),
            store.pool.connection() as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT 1")

        assert store.get_config() == RuntimeConfig()
    finally:
        store.close()


def test_every_store_verb_is_store_unavailable_when_the_server_is_unreachable() -> None:
    require_backend("postgresql", server=False)  # it needs no server: none is the point
    store = PostgresStore(UNREACHABLE_URL, pool_size=1)
    started = time.monotonic()
    try:
        for call in (
            store.ping,
            store.get_config,
            store.migrate,
            lambda: store.claim_due(10, 10_000),
            lambda: store.get("00000000-0000-0000-0000-000000000000"),
        ):
            with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL"):
                call()
    finally:
        store.close()
    assert time.monotonic() - started < 30  # refused at once, not a hang per call


def _application_names(url: str) -> set[str]:
    conn = admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = %s",
                (url.rsplit("/", 1)[1],),
            )
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_connections_are_named_scheduler_core_unless_pgappname_names_them(
    postgres_clean_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator tells processes apart in pg_stat_activity by PGAPPNAME, as with psql.
    monkeypatch.delenv("PGAPPNAME", raising=False)
    store = PostgresStore(postgres_clean_url, pool_size=1)
    try:
        store.get("00000000-0000-4000-8000-000000000000")
        assert "scheduler-core" in _application_names(postgres_clean_url)
    finally:
        store.close()
    monkeypatch.setenv("PGAPPNAME", "billing-worker-3")
    store = PostgresStore(postgres_clean_url, pool_size=1)
    try:
        store.get("00000000-0000-4000-8000-000000000000")
        assert "billing-worker-3" in _application_names(postgres_clean_url)
    finally:
        store.close()

"""Fixtures of the fault tests: real `scheduler` subprocesses (tests/cli/conftest.py's
`processes`), a receiver that counts callbacks per task, the shared PostgreSQL database
emptied, and a private PostgreSQL cluster that outage tests may stop and crash."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from scheduler_core.store import open_store
from tests.cli.conftest import processes  # noqa: F401 - a fixture, used by name
from tests.faults.pgcluster import PrivateCluster, unavailable_reason
from tests.faults.receiver import CountingReceiver
from tests.support.database import BACKENDS, TestDatabase


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture
def counting_receiver() -> Iterator[CountingReceiver]:
    receiver = CountingReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def clean_postgres(postgres_url: str) -> str:
    """The session's PostgreSQL database (tests/conftest.py), emptied, default config."""
    TestDatabase(postgres_url).reset()
    return postgres_url


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this session's own, on a free port, that tests may stop."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not in SCHEDULER_TEST_BACKENDS")
    problem = unavailable_reason()
    if problem:
        message = f"cannot create a private PostgreSQL cluster for outage tests: {problem}"
        if _in_ci():
            pytest.fail(f"{message} (CI=true: outage tests must run)", pytrace=False)
        pytest.skip(message)
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class OutageDatabase:
    cluster: PrivateCluster
    name: str

    @property
    def url(self) -> str:
        return self.cluster.url(self.name)


@pytest.fixture
def outage_database(private_postgres: PrivateCluster) -> Iterator[OutageDatabase]:
    """A migrated database of its own on the private cluster (running at the start)."""
    private_postgres.ensure_running()
    database = OutageDatabase(private_postgres, private_postgres.create_database())
    store = open_store(database.url, pool_size=1)
    store.migrate()
    store.close()
    try:
        yield database
    finally:
        private_postgres.ensure_running()  # a failed test may have left it stopped
        private_postgres.drop_database(database.name)

"""What the SQLite store does that PostgreSQL gets from its server: the file, WAL mode,
waiting for a busy write lock, and claims that stay atomic against concurrent writers.

Real files in a temporary folder, real threads, real connections; no mocks. The store's
contract (ordering, leases, retries...) is tested on both backends elsewhere.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

import scheduler_core.store.sqlite as sqlite_module
from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.migrations import load as load_migrations
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import StoreUnavailable, UnsupportedDatabase, open_store
from scheduler_core.store.sqlite import SqliteStore
from tests.store.databases import require_backend
from tests.support.database import TestDatabase, sqlite_url
from tests.support.receiver import Receiver

LOCKED = "database is locked"


@pytest.fixture(autouse=True)
def _sqlite_under_test() -> None:
    require_backend("sqlite")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path, "store.db")


@pytest.fixture
def store(url: str) -> Iterator[SqliteStore]:
    store = SqliteStore(url, pool_size=4)
    store.migrate()
    yield store
    store.close()


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        [(mode,)] = conn.execute("PRAGMA journal_mode").fetchall()
    finally:
        conn.close()
    return str(mode)


def make_client(store: SqliteStore, url: str) -> FlaskClient:
    settings = Settings(database_url=url, load_entry_points=False)
    app = create_app(
        settings, store=store, plugins=PluginManager(settings), test_config={"TESTING": True}
    )
    return app.test_client()


# -- the file ------------------------------------------------------------------------------


def test_the_store_puts_the_file_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    sqlite3.connect(path).close()
    assert journal_mode(path) == "delete"  # SQLite's own default, before the store opens it

    store = open_store(f"sqlite:///{path}", pool_size=1)
    try:
        store.migrate()
    finally:
        store.close()

    # WAL is a property of the file: any later connection, any process, finds it on.
    assert journal_mode(path) == "wal"


def test_a_relative_url_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    (cwd / "data").mkdir(parents=True)
    monkeypatch.chdir(cwd)

    for relative in ("relative.db", "data/nested.db"):
        store = open_store(f"sqlite:///{relative}", pool_size=1)
        try:
            assert store.migrate() == [m.name for m in load_migrations("sqlite")]
        finally:
            store.close()
        assert (cwd / relative).is_file(), relative
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]


def test_a_relative_url_means_the_working_directory_when_the_store_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Connections open lazily, one per thread that needs one; a later change of working
    # directory must not send some of them to another file.
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    monkeypatch.chdir(first)
    store = open_store("sqlite:///scheduler.db", pool_size=1)
    monkeypatch.chdir(later)
    try:
        store.migrate()
    finally:
        store.close()

    assert (first / "scheduler.db").is_file()
    assert not (later / "scheduler.db").exists()


def test_four_slashes_make_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = tmp_path / "abs" / "path.db"
    absolute.parent.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{absolute}"
    assert url.startswith("sqlite:////")

    store = open_store(url, pool_size=1)
    try:
        store.migrate()
    finally:
        store.close()

    assert absolute.is_file()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "an in-memory SQLite database cannot be shared"),
        ("sqlite://", "not a SQLite URL"),
        ("sqlite:///", "an in-memory SQLite database cannot be shared"),
        ("sqlite://relative.db", "not a SQLite URL: 'sqlite://relative.db' (use sqlite:///"),
    ],
    ids=["memory", "no-path", "empty-path", "two-slashes"],
)
def test_a_url_that_names_no_file_is_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(UnsupportedDatabase) as refused:
        open_store(url, pool_size=1)

    assert message in str(refused.value)


def test_a_url_whose_folder_does_not_exist_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"

    with pytest.raises(StoreUnavailable) as refused:
        open_store(sqlite_url(missing, "x.db"), pool_size=1)

    assert str(refused.value) == (
        f"cannot open SQLite database {missing / 'x.db'}: {missing} is missing"
    )
    assert list(tmp_path.iterdir()) == []


# -- a busy file ---------------------------------------------------------------------------


class WriteLockHolder:
    """Another connection (as another process would) holding the file's write lock."""

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.released_at: float | None = None
        self._timer: threading.Timer | None = None

    def hold(self, seconds: float) -> float:
        """Take the write lock now; release it after `seconds`. Returns when it was taken."""
        self.conn.execute("BEGIN IMMEDIATE")
        taken = time.monotonic()
        self._timer = threading.Timer(seconds, self.release)
        self._timer.start()
        return taken

    def release(self) -> None:
        if self.conn.in_transaction:
            self.released_at = time.monotonic()
            self.conn.execute("COMMIT")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.release()
        self.conn.close()


@pytest.mark.slow  # holds the write lock for two seconds
@pytest.mark.parametrize(
    "busy_timeout_s",
    [None, 0.2],
    ids=["within-the-busy-timeout", "longer-than-the-busy-timeout"],
)
def test_a_held_write_lock_delays_the_api_and_the_dispatcher_but_loses_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    receiver: Receiver,
    busy_timeout_s: float | None,
) -> None:
    caplog.set_level(logging.INFO)
    if busy_timeout_s is not None:
        # SQLite's own wait gives up after this; the store's retry loop must take over.
        monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_S", busy_timeout_s)
    url = sqlite_url(tmp_path, "busy.db")
    store = SqliteStore(url, pool_size=4)
    store.migrate()
    holder = WriteLockHolder(store.path)
    tick_errors: list[BaseException] = []
    try:
        client = make_client(store, url)
        receiver.behave("/slow", delay=1.0)
        first = client.post("/api/v1/tasks", json={"webhookUrl": receiver.url("/slow")})
        assert first.status_code == 201, first.json
        dispatcher = Dispatcher(store, PluginManager(Settings(url, load_entry_points=False)))

        def tick() -> None:
            try:
                dispatcher.tick()
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                tick_errors.append(exc)

        ticking = threading.Thread(target=tick)
        ticking.start()
        receiver.wait_for(1, "/slow", timeout=15)  # claimed and in flight: now lock the file
        taken = holder.hold(2.0)
        # The delivery answers after 1 s, so the dispatcher records its outcome while the
        # lock is held; the API enqueues while it is held too.
        second = client.post(
            "/api/v1/tasks", json={"webhookUrl": receiver.url("/later"), "payload": "kept"}
        )
        answered = time.monotonic()
        ticking.join(30)
        assert not ticking.is_alive(), "the tick never finished"
        tick_done = time.monotonic()
    finally:
        holder.close()
        store.close()

    assert tick_errors == []
    assert second.status_code == 201, second.json
    assert holder.released_at is not None
    assert answered >= holder.released_at, "the enqueue did not wait for the lock"
    assert tick_done >= holder.released_at, "the dispatcher wrote under another's lock"
    assert holder.released_at - taken >= 1.9

    check = SqliteStore(url, pool_size=1)
    try:
        resolved = check.get(first.json["id"])  # type: ignore[index]
        kept = check.get(second.json["id"])  # type: ignore[index]
        attempts = check.attempts(first.json["id"])  # type: ignore[index]
    finally:
        check.close()
    assert resolved is not None and kept is not None and attempts is not None
    assert (resolved.status.value, resolved.attempts, resolved.last_status_code) == (
        "resolved",
        1,
        200,
    )
    assert [(a.attempt, a.status_code, a.error) for a in attempts] == [(1, 200, None)]
    # Enqueued under the lock and kept; the tick may have delivered it once it could.
    assert kept.payload == "kept"
    assert kept.status.value in {"pending", "resolved"}

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert LOCKED not in caplog.text
    if busy_timeout_s is not None:
        assert "waiting for the write lock" in caplog.text  # the retry loop did the waiting


def test_claims_are_atomic_against_api_threads_enqueueing_at_the_same_moment(
    store: SqliteStore, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # A second store on the same file claims too, as another process would.
    other_process = SqliteStore(url, pool_size=2)
    stop = threading.Event()
    errors: list[BaseException] = []
    enqueued: list[str] = []
    statuses: Counter[int] = Counter()
    claimed: Counter[str] = Counter()
    lock = threading.Lock()

    def guarded(work: Any) -> Any:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                errors.append(exc)
                stop.set()

        return run

    # Built here, not in the threads: building Flask apps in several threads at once trips
    # CPython 3.11's "AST constructor recursion depth mismatch" (gh-106905).
    clients = [make_client(store, url) for _ in range(3)]

    def enqueue_loop(n: int) -> None:
        client = clients[n]
        batch = 0
        while not stop.is_set():
            batch += 1
            body = [
                {"webhookUrl": "http://127.0.0.1:9/hook", "payload": [n, batch, i]}
                for i in range(1 + batch % 3)
            ]
            response = client.post("/api/v1/tasks", json=body)
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 201:
                    enqueued.extend(t["id"] for t in response.json["tasks"])  # type: ignore[index]

    def claim_loop(claimer: SqliteStore) -> None:
        while not stop.is_set():
            for task in claimer.claim_due(7, 60_000):
                with lock:
                    claimed[task.id] += 1

    threads = [threading.Thread(target=guarded(lambda n=n: enqueue_loop(n))) for n in range(3)]
    threads += [
        threading.Thread(target=guarded(lambda c=c: claim_loop(c))) for c in (store, other_process)
    ]
    try:
        for thread in threads:
            thread.start()
        stop.wait(2.0)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not [t for t in threads if t.is_alive()], "a thread is stuck"
    finally:
        stop.set()
        other_process.close()

    assert errors == []
    assert set(statuses) == {201}
    assert len(enqueued) >= 50 and len(claimed) >= 10, (len(enqueued), len(claimed))
    assert [task_id for task_id, n in claimed.items() if n > 1] == []
    assert set(claimed) <= set(enqueued)
    rows = {
        task_id: (status, attempts)
        for task_id, status, attempts in TestDatabase(url).execute(
            "SELECT id, status, attempts FROM scheduler_tasks"
        )
    }
    assert set(rows) == set(enqueued)
    for task_id in enqueued:
        expected = ("running", 1) if task_id in claimed else ("pending", 0)
        assert rows[task_id] == expected, task_id
    db = TestDatabase(url)
    assert db.execute("SELECT count(*) FROM scheduler_attempts") == [(len(claimed),)]
    # Nothing is stuck: what was not claimed is claimable now, each once.
    leftover = store.claim_due(10_000, 60_000)
    assert sorted(t.id for t in leftover) == sorted(set(enqueued) - set(claimed))
    assert LOCKED not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

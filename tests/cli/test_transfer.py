"""`scheduler export` and `scheduler import`: a real SQLite database moved to a real
PostgreSQL one (and back), tasks in every state, webhookAuth encrypted under different keys
on each side, and the imported tasks delivered by a real worker to a real receiver."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler_core.encryption import generate_key
from scheduler_core.models import (
    DeliveryOutcome,
    NewTask,
    RecordedOutcome,
    RetryDecision,
)
from scheduler_core.store import Store, open_store
from scheduler_core.transfer import MOVED_WHILE_RUNNING
from tests.cli.conftest import Processes
from tests.store.databases import query, require_backend
from tests.support.database import postgres_database, sqlite_url
from tests.support.processes import run_cli
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

FUTURE = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
# Payloads whose bytes must survive the move: non-ASCII text, numbers no double holds,
# nesting, key order, an empty object and null.
PAYLOADS: dict[str, Any] = {
    "unicode": {"name": "Zoë Ωmega 東京 🚀", "quote": 'say "hi"\n\ttab'},
    "numbers": {"big": 123456789012345678901234567890, "neg": -(2**63), "float": 0.1},
    "nested": {"z": [1, {"y": [True, False, None, {"x": []}]}], "a": {}},
    "scalar": "just a string",
    "none": None,
}
SECRETS = ["Bearer pending-secret-Ω", "Basic c3RhbGU6c2VjcmV0", "Bearer running-secret"]


@pytest.fixture(autouse=True)
def _need_both_backends() -> None:
    require_backend("sqlite", server=False)
    require_backend("postgresql")


@pytest.fixture
def postgres_target() -> Iterator[str]:
    """An empty PostgreSQL database (never migrated): the machine being moved to."""
    with postgres_database("scheduler_import") as url:
        yield url


@dataclass
class Source:
    url: str
    key: str
    ids: dict[str, str]  # what each task is -> its id


def _claim_only(store: Store, task_id: str) -> int:
    claimed = store.claim_due(10, lease_ms=60_000)
    assert [c.id for c in claimed] == [task_id]
    return claimed[0].attempt


def _build_source(folder: Path, receiver: Receiver) -> Source:
    """A SQLite database whose webhookAuth values are sealed with its own key, holding a
    task in every state."""
    key = generate_key()
    url = sqlite_url(folder, "old.db")
    store = open_store(url, pool_size=2, encryption_keys=(key,))
    store.migrate()
    ids: dict[str, str] = {}
    try:

        def add(name: str, **fields: Any) -> str:
            [(task, created)] = store.enqueue([NewTask(webhook_url=receiver.url(), **fields)])
            assert created
            ids[name] = task.id
            return task.id

        # Finished ones first (each is the only due task when it is claimed).
        resolved = add("resolved", payload={"done": True})
        attempt = _claim_only(store, resolved)
        store.record_outcomes(
            [RecordedOutcome(resolved, attempt, DeliveryOutcome(ok=True, status_code=204), None)]
        )
        stale = add("stale", webhook_auth=SECRETS[1], payload=PAYLOADS["nested"], max_retries=0)
        attempt = _claim_only(store, stale)
        failed = DeliveryOutcome(ok=False, status_code=500, error="HTTP 500")
        store.record_outcomes([RecordedOutcome(stale, attempt, failed, RetryDecision.stale())])
        running = add("running", webhook_auth=SECRETS[2], payload=PAYLOADS["unicode"])
        _claim_only(store, running)  # left running: its dispatcher "is still delivering"
        cancelled = add("cancelled", execute_at=FUTURE)
        store.cancel(cancelled)
        add(
            "pending",
            webhook_auth=SECRETS[0],
            execute_at=FUTURE,
            payload=PAYLOADS["numbers"],
            idempotency_key="invoice-42",
            max_retries=7,
        )
        add("scalar", execute_at=FUTURE, payload=PAYLOADS["scalar"])
        add("none", execute_at=FUTURE, payload=None)
        store.update_config({"max_retries": 9, "retry_backoff_ms": 2500})
    finally:
        store.close()
    return Source(url, key, ids)


def _env(database_url: str, key: str | None) -> dict[str, str]:
    # "" is unset: whatever the test's own environment holds.
    return {"SCHEDULER_DATABASE_URL": database_url, "SCHEDULER_ENCRYPTION_KEY": key or ""}


def _no_secret_in(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
            assert json.dumps(secret) not in text


def _payload_texts(url: str) -> dict[str, str]:
    cast = "payload::text" if url.startswith("postgresql") else "payload"
    return {
        str(i): p for i, p in query(url, f"SELECT CAST(id AS TEXT), {cast} FROM scheduler_tasks")
    }


def _rows(url: str) -> dict[str, dict[str, Any]]:
    rows = query(
        url,
        "SELECT CAST(id AS TEXT), status, attempts, idempotency_key, max_retries, last_error,"
        " last_status_code, webhook_auth FROM scheduler_tasks",
    )
    names = ("status", "attempts", "key", "max_retries", "last_error", "code", "auth")
    return {str(r[0]): dict(zip(names, r[1:], strict=True)) for r in rows}


@pytest.mark.parametrize("new_key", [generate_key(), None], ids=["new-key", "no-key"])
def test_sqlite_to_postgresql_keeps_every_task_and_delivers_them_with_their_auth(
    tmp_path: Path,
    postgres_target: str,
    receiver: Receiver,
    processes: Processes,
    new_key: str | None,
) -> None:
    source = _build_source(tmp_path, receiver)
    export_file = tmp_path / "tasks.jsonl"

    # A task is running: a server may still be delivering. Refused, no file left behind.
    refused = run_cli(None, "export", "-o", str(export_file), env=_env(source.url, source.key))
    assert refused.returncode == 1
    assert "1 running" in refused.stderr and "--force" in refused.stderr
    assert not export_file.exists()

    done = run_cli(
        None, "export", "-o", str(export_file), "--force", env=_env(source.url, source.key)
    )
    assert done.returncode == 0, done.stderr
    assert "3 pending, 1 running, 1 resolved, 1 stale, 1 cancelled" in done.stderr  # drain check
    assert "exported 5 tasks" in done.stderr and "in clear" in done.stderr
    assert stat.S_IMODE(os.stat(export_file).st_mode) == 0o600
    _no_secret_in(done.stdout, done.stderr, refused.stdout, refused.stderr)
    exported = [json.loads(line) for line in export_file.read_text().splitlines()[1:-1]]
    assert {t["id"] for t in exported} == {
        source.ids[n] for n in ("pending", "running", "stale", "scalar", "none")
    }  # finished tasks stay behind unless --include-finished
    assert {t["webhookAuth"] for t in exported} == {*SECRETS, None}  # in clear in the file

    # The new database, with a key of its own, or none.
    imported = run_cli(
        None, "import", str(export_file), "--config", env=_env(postgres_target, new_key)
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported 5 tasks" in imported.stderr
    assert "came in pending" in imported.stderr
    assert "runtime config replaced" in imported.stderr
    _no_secret_in(imported.stdout, imported.stderr)

    old, new = _rows(source.url), _rows(postgres_target)
    assert set(new) == {t["id"] for t in exported}  # ids kept
    for name in ("pending", "stale", "scalar", "none"):
        task_id = source.ids[name]
        for column in ("status", "attempts", "key", "max_retries", "last_error", "code"):
            assert new[task_id][column] == old[task_id][column], (name, column)
    running = new[source.ids["running"]]
    assert (running["status"], running["attempts"]) == ("pending", 1)  # lease left behind
    assert running["last_error"] == MOVED_WHILE_RUNNING
    # Sealed with the new key (neither the plaintext nor the old token is stored), or,
    # with no key on the new side, stored as given.
    for task_id, row in new.items():
        if row["auth"] is None:
            continue
        assert row["auth"] != old[task_id]["auth"]
        if new_key is None:
            assert row["auth"] in SECRETS
        else:
            assert row["auth"].startswith("fernet:")
    # Payloads byte for byte.
    old_payloads, new_payloads = _payload_texts(source.url), _payload_texts(postgres_target)
    for task_id in new:
        assert new_payloads[task_id] == old_payloads[task_id]
        assert json.loads(new_payloads[task_id]) == json.loads(old_payloads[task_id])
    # The stale task's attempt history came along.
    [(status_code, outcome)] = query(
        postgres_target,
        "SELECT status_code, outcome FROM scheduler_attempts WHERE task_id = %s",
        (source.ids["stale"],),
    )
    assert (status_code, outcome) == (500, "failed")
    [(config_retries, config_backoff)] = query(
        postgres_target, "SELECT max_retries, retry_backoff_ms FROM scheduler_config"
    )
    assert (config_retries, config_backoff) == (9, 2500)

    # The idempotency key still holds on the new database.
    store = open_store(postgres_target, pool_size=1, encryption_keys=(new_key,) if new_key else ())
    try:
        [(task, created)] = store.enqueue(
            [NewTask(webhook_url=receiver.url("/other"), idempotency_key="invoice-42")]
        )
        assert not created and task.id == source.ids["pending"]
        store.retry(source.ids["stale"])  # due now, with its moved webhookAuth
    finally:
        store.close()

    # A worker on PostgreSQL holding only the new key delivers with the original auth.
    processes.worker(postgres_target, env={"SCHEDULER_ENCRYPTION_KEY": new_key or ""})
    calls = receiver.wait_for(2, "/hook", timeout=30)
    by_task = {c.header("X-Scheduler-Task-Id"): c for c in calls}
    assert by_task[source.ids["running"]].header("Authorization") == SECRETS[2]
    assert by_task[source.ids["running"]].json()["payload"] == PAYLOADS["unicode"]
    assert by_task[source.ids["running"]].header("X-Scheduler-Attempt") == "2"
    assert by_task[source.ids["stale"]].header("Authorization") == SECRETS[1]
    assert by_task[source.ids["stale"]].json()["payload"] == PAYLOADS["nested"]

    # Run again (an interrupted import resumed): everything is there already.
    again = run_cli(None, "import", str(export_file), env=_env(postgres_target, new_key))
    assert again.returncode == 0, again.stderr
    assert "imported 0 tasks; 5 already here" in again.stderr


def test_export_to_stdout_and_include_finished(tmp_path: Path, receiver: Receiver) -> None:
    source = _build_source(tmp_path, receiver)
    done = run_cli(
        None, "export", "--include-finished", "--force", env=_env(source.url, source.key)
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["format"] == "scheduler-core-export"
    assert lines[-1] == {"end": True, "tasks": 7}
    assert sorted(t["status"] for t in lines[1:-1]) == sorted(
        ["pending", "pending", "pending", "running", "stale", "resolved", "cancelled"]
    )
    _no_secret_in(done.stderr)
    assert "in clear" in done.stderr


def test_export_needs_the_key_that_sealed_the_values(tmp_path: Path, receiver: Receiver) -> None:
    source = _build_source(tmp_path, receiver)
    export_file = tmp_path / "tasks.jsonl"
    for key in (None, generate_key()):
        result = run_cli(
            None, "export", "-o", str(export_file), "--force", env=_env(source.url, key)
        )
        assert result.returncode == 1
        assert "3 stored webhookAuth values cannot be opened" in result.stderr
        assert not export_file.exists()
        _no_secret_in(result.stdout, result.stderr)


def test_export_never_creates_a_database_nor_overwrites_a_file(tmp_path: Path) -> None:
    missing = sqlite_url(tmp_path, "nowhere.db")
    result = run_cli(None, "export", "-o", str(tmp_path / "out.jsonl"), env=_env(missing, None))
    assert result.returncode == 1 and "no SQLite database" in result.stderr
    assert not (tmp_path / "nowhere.db").exists() and not (tmp_path / "out.jsonl").exists()

    url = sqlite_url(tmp_path, "empty.db")
    assert run_cli(url, "migrate", "--create").returncode == 0
    existing = tmp_path / "keep.jsonl"
    existing.write_text("mine\n")
    result = run_cli(None, "export", "-o", str(existing), env=_env(url, None))
    assert result.returncode == 1 and "exists already" in result.stderr
    assert existing.read_text() == "mine\n"


def test_import_refuses_a_damaged_file_and_writes_nothing(
    tmp_path: Path, postgres_target: str, receiver: Receiver
) -> None:
    source = _build_source(tmp_path, receiver)
    good = tmp_path / "tasks.jsonl"
    assert (
        run_cli(
            None, "export", "-o", str(good), "--force", env=_env(source.url, source.key)
        ).returncode
        == 0
    )
    lines = good.read_text().splitlines(keepends=True)
    cases = {
        "cut short": lines[:-1],
        "a bad line": [*lines[:2], lines[2].replace('"attempts": ', '"attempts": -'), *lines[3:]],
        "a bad queue name": [lines[0], lines[1].replace('"default"', '"mail box"'), *lines[2:]],
        "not an export": ['{"hello": 1}\n'],
    }
    reasons = {
        "cut short": "without its end line",
        "a bad line": "line 3: attempts:",
        "a bad queue name": "line 2: queue: Must be 1..64 characters",
        "not an export": "not a scheduler-core-export file",
    }
    for name, content in cases.items():
        damaged = tmp_path / f"{name}.jsonl"
        damaged.write_text("".join(content))
        result = run_cli(None, "import", str(damaged), env=_env(postgres_target, None))
        assert result.returncode == 1, name
        assert "nothing imported" in result.stderr and reasons[name] in result.stderr, name
        _no_secret_in(result.stdout, result.stderr)
    # Nothing was written: not even the schema (the file is read before the database).
    assert query(
        postgres_target,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'scheduler_tasks'",
    ) == [(0,)]


def test_postgresql_back_to_a_new_sqlite_file_needs_create(
    tmp_path: Path, postgres_target: str, receiver: Receiver
) -> None:
    """The other way round, from stdin, without encryption on either side."""
    store = open_store(postgres_target, pool_size=1)
    store.migrate()
    try:
        created = store.enqueue(
            [
                NewTask(webhook_url=receiver.url(), execute_at=FUTURE, payload=p, webhook_auth=a)
                for p, a in zip(PAYLOADS.values(), [*SECRETS, None, None], strict=True)
            ]
        )
    finally:
        store.close()
    exported = run_cli(None, "export", env=_env(postgres_target, None))
    assert exported.returncode == 0, exported.stderr

    target = sqlite_url(tmp_path, "new.db")
    refused = run_cli(None, "import", "-", env=_env(target, None), input=exported.stdout)
    assert refused.returncode == 1 and "no SQLite database" in refused.stderr
    assert not (tmp_path / "new.db").exists()

    done = run_cli(None, "import", "-", "--create", env=_env(target, None), input=exported.stdout)
    assert done.returncode == 0, done.stderr
    assert f"imported {len(created)} tasks" in done.stderr
    assert _payload_texts(target) == _payload_texts(postgres_target)
    assert {r["auth"] for r in _rows(target).values()} == {*SECRETS, None}
    assert stat.S_IMODE(os.stat(tmp_path / "new.db").st_mode) == 0o600


def test_one_task_is_counted_in_the_singular(tmp_path: Path, receiver: Receiver) -> None:
    url = sqlite_url(tmp_path, "one.db")
    store = open_store(url, pool_size=1)
    store.migrate()
    try:
        [(task, _)] = store.enqueue([NewTask(webhook_url=receiver.url())])
        _claim_only(store, task.id)  # running
    finally:
        store.close()
    export_file = tmp_path / "one.jsonl"

    refused = run_cli(None, "export", "-o", str(export_file), env=_env(url, None))
    assert refused.returncode == 1
    assert "Error: 1 task is running: a server or worker" in refused.stderr
    assert "--force exports it anyway: it comes in pending and is delivered again" in (
        " ".join(refused.stderr.split())
    )

    done = run_cli(None, "export", "-o", str(export_file), "--force", env=_env(url, None))
    assert done.returncode == 0, done.stderr
    assert "warning: exporting 1 running task (--force): it is imported pending" in done.stderr
    assert "exported 1 task (0 pending, 1 running, 0 stale)" in done.stderr

    target = sqlite_url(tmp_path, "two.db")
    imported = run_cli(None, "import", str(export_file), "--create", env=_env(target, None))
    assert imported.returncode == 0, imported.stderr
    assert "file: 1 task (0 pending, 1 running," in imported.stderr
    assert "imported 1 task; 0 already here" in imported.stderr
    assert "1 task exported running came in pending: it will be delivered again" in (
        imported.stderr
    )
    for text in (refused.stderr, done.stderr, imported.stderr):
        assert "1 tasks" not in text and "1 running tasks" not in text

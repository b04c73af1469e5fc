"""`scheduler rotate-key` while `scheduler serve` and `scheduler worker` run on the same
database with the new key list: every callback still carries its own webhookAuth, tasks
enqueued meanwhile are sealed with the new key, and afterwards the new key alone opens
every stored value."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography.fernet import Fernet

from scheduler_core.encryption import PREFIX
from scheduler_core.models import NewTask
from scheduler_core.store import open_store
from tests.support.database import TestDatabase
from tests.support.processes import SchedulerProcess, run_cli
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
STORED = 1000  # sealed with OLD (and some plaintext) before the rotation
DURING = 200  # enqueued over the API while it runs


def test_rotation_while_serve_and_worker_deliver(
    clean_database: str, db: TestDatabase, receiver: Receiver
) -> None:
    auth_of: dict[str, str] = {}
    old_store = open_store(clean_database, pool_size=2, encryption_keys=[OLD])
    plain_store = open_store(clean_database, pool_size=2)
    try:
        # Half due at once (delivered as the rotation starts), half once it is over
        # (opened by processes that started before it).
        later = datetime.now(UTC) + timedelta(seconds=4)
        for number, store in enumerate([old_store] * 4 + [plain_store]):
            batch = [
                NewTask(
                    receiver.url("/hook"),
                    f"Bearer before-{number}-{i}",
                    execute_at=later if i % 2 else None,
                )
                for i in range(STORED // 5)
            ]
            for (task, _), new in zip(store.enqueue(batch), batch, strict=True):
                auth_of[task.id] = str(new.webhook_auth)
        old_store.update_config({"select_size": 5000, "base_interval_ms": 100})
    finally:
        old_store.close()
        plain_store.close()

    env = {"SCHEDULER_ENCRYPTION_KEY": f"{NEW} {OLD}"}
    server = SchedulerProcess(["serve", "--port", "0"], clean_database, env)
    worker = SchedulerProcess(["worker"], clean_database, env)
    try:
        base_url = server.wait_listening(timeout=60)
        worker.wait_for_log("worker running", timeout=60)
        rotation = subprocess.Popen(
            [sys.executable, "-m", "scheduler_core.cli", "rotate-key", "--batch-size", "25"],
            env={**server_env(clean_database), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        errors: list[str] = []

        def enqueue_meanwhile() -> None:
            for i in range(DURING):
                auth = f"Bearer during-{i}"
                response = requests.post(
                    f"{base_url}/api/v1/tasks",
                    json={"webhookUrl": receiver.url("/hook"), "webhookAuth": auth},
                    timeout=15,
                )
                if response.status_code != 201:
                    errors.append(response.text)
                    return
                auth_of[response.json()["id"]] = auth

        client = threading.Thread(target=enqueue_meanwhile)
        client.start()
        out, err = rotation.communicate(timeout=120)
        client.join(60)
        assert rotation.returncode == 0, err
        assert not errors, errors[0]
        assert "0 no configured key opens" in out

        total = STORED + DURING
        wait_until(
            lambda: len({c.header("X-Scheduler-Task-Id") for c in receiver.calls()}) >= total,
            timeout=90,
            interval=0.2,
            message="for every task to be delivered",
        )
    finally:
        server.stop()
        worker.stop()

    for call in receiver.calls():
        task_id = str(call.header("X-Scheduler-Task-Id"))
        assert call.header("Authorization") == auth_of[task_id], task_id
    rows = db.execute("SELECT id, webhook_auth FROM scheduler_tasks")
    assert len(rows) == STORED + DURING
    new_only = Fernet(NEW.encode())
    for task_id, stored in rows:
        assert stored.startswith(PREFIX), task_id
        assert new_only.decrypt(stored[len(PREFIX) :].encode()).decode() == auth_of[str(task_id)]

    again = run_cli(clean_database, "rotate-key", env=env)
    assert again.returncode == 0, again.stderr
    assert f"{total} already current" in again.stdout


def server_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SCHEDULER_DATABASE_URL": database_url,
        "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1",
    }

"""webhookAuth at rest under SCHEDULER_ENCRYPTION_KEY: stored sealed, opened only for the
callback, rows from before a key still delivered, a row no key opens failing its attempt
(not the dispatcher), keys rotated in by `scheduler rotate-key`, bad keys refused at start.
Every test runs on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography.fernet import Fernet

from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.encryption import (
    NO_KEY_ERROR,
    PREFIX,
    WRONG_KEY_ERROR,
    AuthCipher,
    EncryptionKeyError,
    parse_keys,
    rotate,
)
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store, StoreError, open_store
from tests.support.database import TestDatabase, sqlite_url
from tests.support.processes import run_cli

AUTH = "Bearer enc-test-7f1d2c9a-secret"
K1 = Fernet.generate_key().decode()
K2 = Fernet.generate_key().decode()
K3 = Fernet.generate_key().decode()


@contextmanager
def scheduler(url: str, *keys: str) -> Iterator[tuple[Store, object, Dispatcher]]:
    """A store, an API test client and a dispatcher, all under `keys`, as one process."""
    settings = Settings(database_url=url, load_entry_points=False, encryption_keys=keys)
    store = open_store(url, pool_size=4, encryption_keys=keys)
    plugins = PluginManager(settings)
    app = create_app(settings, store=store, plugins=plugins, test_config={"TESTING": True})
    dispatcher = Dispatcher(store, plugins)
    try:
        yield store, app.test_client(), dispatcher
    finally:
        dispatcher.stop(wait=True)
        store.close()


def enqueue(client, url: str, auth: str | None = AUTH, **extra) -> str:
    body = {"webhookUrl": url, **extra}
    if auth is not None:
        body["webhookAuth"] = auth
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def stored_auth(db: TestDatabase, task_id: str) -> str | None:
    return db.task_row(task_id)["webhook_auth"]


def opens_with(stored: str, key: str) -> str:
    assert stored.startswith(PREFIX), stored
    return Fernet(key.encode()).decrypt(stored[len(PREFIX) :].encode()).decode()


def test_webhook_auth_is_stored_encrypted_and_sent_as_given(clean_database, db, receiver):
    with scheduler(clean_database, K1) as (_store, client, dispatcher):
        single = enqueue(client, receiver.url("/one"))
        response = client.post(
            "/api/v1/tasks",
            json=[{"webhookUrl": receiver.url("/many"), "webhookAuth": AUTH}] * 3
            + [{"webhookUrl": receiver.url("/many")}],
        )
        assert response.status_code == 201
        ids = [single] + [t["id"] for t in response.get_json()["tasks"]]

        for task_id in ids[:4]:
            stored = stored_auth(db, task_id)
            assert stored is not None and AUTH not in stored
            assert "enc-test" not in stored
            assert opens_with(stored, K1) == AUTH
        assert stored_auth(db, ids[4]) is None

        dispatcher.tick()

    calls = receiver.calls()
    assert len(calls) == 5
    assert sorted(str(c.header("Authorization")) for c in calls) == [AUTH] * 4 + ["None"]


def test_an_encrypted_webhook_auth_keeps_the_task_in_the_queue_it_named(
    clean_database, db, receiver
):
    # Sealing rebuilt each task from a list of fields: the queue was left out, so with a
    # key set every task with a webhookAuth landed in `default`.
    db.execute("INSERT INTO scheduler_config (queue) VALUES ('sealed')")
    with scheduler(clean_database, K1) as (store, client, dispatcher):
        one = enqueue(client, receiver.url("/one"), queue="sealed")
        response = client.post(
            "/api/v1/tasks",
            json=[{"webhookUrl": receiver.url("/many"), "webhookAuth": AUTH, "queue": "sealed"}],
        )
        assert response.status_code == 201
        [many] = [t["id"] for t in response.get_json()["tasks"]]
        for task_id in (one, many):
            assert store.get(task_id).queue == "sealed"
        dispatcher.tick()
    assert [c.header("Authorization") for c in receiver.calls()] == [AUTH, AUTH]


def test_plaintext_rows_from_before_a_key_still_deliver(clean_database, db, receiver):
    with scheduler(clean_database) as (_store, client, _dispatcher):
        task_id = enqueue(client, receiver.url("/old"))
    assert stored_auth(db, task_id) == AUTH  # no key: stored as given

    with scheduler(clean_database, K1) as (_store, client, dispatcher):
        dispatcher.tick()
        assert client.get(f"/api/v1/tasks/{task_id}").get_json()["status"] == "resolved"

    [call] = receiver.calls("/old")
    assert call.header("Authorization") == AUTH


def test_every_key_decrypts_and_the_first_encrypts(clean_database, db, receiver):
    with scheduler(clean_database, K1) as (_store, client, _dispatcher):
        old = enqueue(client, receiver.url("/k"), auth=AUTH + "-old")

    with scheduler(clean_database, K2, K1) as (_store, client, dispatcher):
        new = enqueue(client, receiver.url("/k"), auth=AUTH + "-new")
        assert opens_with(str(stored_auth(db, new)), K2) == AUTH + "-new"
        dispatcher.tick()

    sent = sorted(str(c.header("Authorization")) for c in receiver.calls("/k"))
    assert sent == [AUTH + "-new", AUTH + "-old"]
    assert opens_with(str(stored_auth(db, old)), K1) == AUTH + "-old"


@pytest.mark.parametrize(
    "keys,error",
    [((K3,), WRONG_KEY_ERROR), ((), NO_KEY_ERROR)],
    ids=["other-key", "no-key"],
)
def test_a_value_no_configured_key_opens_fails_its_attempt_and_sends_nothing(
    clean_database, db, receiver, keys, error
):
    with scheduler(clean_database, K1) as (_store, client, _dispatcher):
        locked = enqueue(client, receiver.url("/locked"), maxRetries=1)
    with scheduler(clean_database, *keys) as (store, client, dispatcher):
        store.update_config({"retry_backoff_ms": 0})
        fine = enqueue(client, receiver.url("/fine"), auth=None)

        dispatcher.tick()  # the dispatcher goes on: the other task is delivered
        task = client.get(f"/api/v1/tasks/{locked}").get_json()
        assert task["status"] == "pending" and task["attempts"] == 1
        assert task["lastError"] == error
        assert task["lastStatusCode"] is None
        assert client.get(f"/api/v1/tasks/{fine}").get_json()["status"] == "resolved"

        dispatcher.tick()  # its retry fails the same way, and it goes stale
        task = client.get(f"/api/v1/tasks/{locked}").get_json()
        assert task["status"] == "stale"
        attempts = client.get(f"/api/v1/tasks/{locked}/attempts").get_json()["attempts"]
        assert [a["error"] for a in attempts] == [error, error]
        assert [a["outcome"] for a in attempts] == ["failed", "failed"]

    assert receiver.calls("/locked") == []  # neither the ciphertext nor anything else
    assert len(receiver.calls("/fine")) == 1
    assert opens_with(str(stored_auth(db, locked)), K1) == AUTH  # left as it was

    # With the key back, a retry delivers it.
    with scheduler(clean_database, K3, K1) as (_store, client, dispatcher):
        assert client.post(f"/api/v1/tasks/{locked}/retry").status_code == 200
        dispatcher.tick()
        assert client.get(f"/api/v1/tasks/{locked}").get_json()["status"] == "resolved"
    [call] = receiver.calls("/locked")
    assert call.header("Authorization") == AUTH


# -- scheduler rotate-key ---------------------------------------------------------------


def test_rotate_key_encrypts_plaintext_and_reencrypts_with_the_first_key(clean_database, db):
    ids = {}
    with scheduler(clean_database) as (_s, client, _d):
        ids["plain"] = [
            enqueue(client, "http://127.0.0.1:9/p", auth=f"{AUTH}-p{i}") for i in range(4)
        ]
    with scheduler(clean_database, K1) as (_s, client, _d):
        ids["k1"] = [enqueue(client, "http://127.0.0.1:9/a", auth=f"{AUTH}-a{i}") for i in range(3)]
        enqueue(client, "http://127.0.0.1:9/none", auth=None)
    with scheduler(clean_database, K2) as (_s, client, _d):
        ids["k2"] = [enqueue(client, "http://127.0.0.1:9/b", auth=f"{AUTH}-b{i}") for i in range(2)]

    env = {"SCHEDULER_ENCRYPTION_KEY": f"{K2}, {K1}"}
    result = run_cli(clean_database, "rotate-key", "--batch-size", "3", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "9 stored webhookAuth values: 4 plaintext encrypted, 3 re-encrypted with the first "
        "key, 2 already current, 0 changed or deleted meanwhile (left alone), "
        "0 no configured key opens"
    )
    for kind, prefix in (("plain", "p"), ("k1", "a"), ("k2", "b")):
        for i, task_id in enumerate(ids[kind]):
            assert opens_with(str(stored_auth(db, task_id)), K2) == f"{AUTH}-{prefix}{i}"

    again = run_cli(clean_database, "rotate-key", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 plaintext encrypted, 0 re-encrypted with the first key, 9 already current" in (
        again.stdout
    )
    assert AUTH not in result.stdout + result.stderr + again.stdout + again.stderr


def test_rotate_key_leaves_values_no_key_opens_and_says_which(clean_database, db):
    with scheduler(clean_database, K3) as (_s, client, _d):
        lost = enqueue(client, "http://127.0.0.1:9/lost")
    with scheduler(clean_database, K1) as (_s, client, _d):
        kept = enqueue(client, "http://127.0.0.1:9/kept")
    before = stored_auth(db, lost)

    result = run_cli(clean_database, "rotate-key", env={"SCHEDULER_ENCRYPTION_KEY": f"{K2} {K1}"})

    assert result.returncode == 1
    assert "1 re-encrypted with the first key" in result.stdout
    assert "1 no configured key opens" in result.stdout
    database, line = result.stderr.strip().splitlines()
    assert database.startswith("database: ")
    assert line.startswith("Error: 1 values were encrypted with a key SCHEDULER_ENCRYPTION_KEY")
    assert lost in line
    assert stored_auth(db, lost) == before
    assert opens_with(str(stored_auth(db, kept)), K2) == AUTH


def test_rotate_key_without_a_key_refuses(clean_database):
    result = run_cli(clean_database, "rotate-key", env={"SCHEDULER_ENCRYPTION_KEY": ""})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: SCHEDULER_ENCRYPTION_KEY is not set: no key to encrypt with"
    ]


# -- the setting ----------------------------------------------------------------------


def test_keys_are_read_separated_by_spaces_or_commas():
    assert parse_keys(None) == () and parse_keys("") == ()
    assert parse_keys(K1) == (K1,)
    assert parse_keys(f" {K1} ,{K2}\n{K3}, ") == (K1, K2, K3)


BAD_KEY = "Zm9vYmFyYmF6LW5vdC1hLWtleS1zZWNyZXQ="  # base64, but 26 bytes


@pytest.mark.parametrize(
    "value,reason",
    [
        (BAD_KEY, "SCHEDULER_ENCRYPTION_KEY: its key is not a Fernet key"),
        (f"{K1},{BAD_KEY}", "SCHEDULER_ENCRYPTION_KEY: key 2 of 2 is not a Fernet key"),
        ("not-a-key-at-all-hunter2", "SCHEDULER_ENCRYPTION_KEY: its key is not a Fernet key"),
        (K1[:-2] + "!!", "SCHEDULER_ENCRYPTION_KEY: its key is not a Fernet key"),
        (" , ", "SCHEDULER_ENCRYPTION_KEY is set but holds no key"),
    ],
    ids=["short", "second", "text", "bad-char", "empty-list"],
)
def test_a_malformed_key_is_refused_without_being_quoted(value, reason):
    with pytest.raises(EncryptionKeyError) as caught:
        parse_keys(value)
    assert str(caught.value).startswith(reason)
    for part in value.split(","):
        if part.strip():
            assert part.strip() not in str(caught.value)


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"], ["migrate"]])
def test_serve_worker_and_migrate_refuse_to_start_with_a_malformed_key(tmp_path, command):
    value = f"{K1} {BAD_KEY}"
    result = run_cli(
        sqlite_url(tmp_path), *command, env={"SCHEDULER_ENCRYPTION_KEY": value}, timeout=30
    )
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: SCHEDULER_ENCRYPTION_KEY: key 2 of 2 is not a Fernet key")
    assert BAD_KEY not in result.stderr + result.stdout
    assert K1 not in result.stderr + result.stdout
    assert not (tmp_path / "scheduler.db").exists()  # refused before touching the database


def test_generate_key_prints_a_key_the_setting_takes():
    result = run_cli(None, "generate-key")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert parse_keys(key) == (key,)


class _FailingFirst(dict):
    """The store's queries, with replace_webhook_auth raising `sqlstate` the first times."""

    def __init__(self, queries: dict[str, str], sqlstate: str, times: int) -> None:
        super().__init__(queries)
        self.left = times
        self.sqlstate = sqlstate

    def __getitem__(self, name: str) -> str:
        if name == "replace_webhook_auth" and self.left > 0:
            self.left -= 1
            return (
                f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{self.sqlstate}'; END $$"
            )
        return str(super().__getitem__(name))


@pytest.mark.parametrize("times,rotated", [(2, True), (5, False)])
def test_a_rotation_batch_picked_as_a_deadlock_victim_is_tried_again(
    clean_database, db, times, rotated
):
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no deadlock")
    with scheduler(clean_database, K1) as (_s, client, _d):
        task_id = enqueue(client, "http://127.0.0.1:9/x")
    store = open_store(clean_database, pool_size=1, encryption_keys=[K2, K1])
    try:
        store.q = _FailingFirst(store.q, "40P01", times)  # type: ignore[attr-defined]
        if rotated:
            assert rotate(store, AuthCipher([K2, K1])).reencrypted == 1
            assert opens_with(str(stored_auth(db, task_id)), K2) == AUTH
        else:
            with pytest.raises(StoreError, match="re-encrypting a batch failed: injected"):
                rotate(store, AuthCipher([K2, K1]))
            assert opens_with(str(stored_auth(db, task_id)), K1) == AUTH
    finally:
        store.close()

"""`Scheduler`: a whole scheduler in the test's process, with the plugins under test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from scheduler_core import targets
from scheduler_core.api import create_app
from scheduler_core.dispatcher import Dispatcher
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.runtime_config import RuntimeConfig, validate_changes
from scheduler_core.settings import Settings
from scheduler_core.store import Store, open_store


class RequestFailed(AssertionError):
    """The API refused a request a helper expected to succeed.

    An AssertionError, so pytest reports the test as failed and shows the message, which
    holds the method, path, status and the API's error (``code``, ``message``,
    ``details``), e.g. ``POST /api/v1/tasks answered 400 validation_error: ...``.
    """

    def __init__(self, method: str, path: str, response: TestResponse):
        body = response.get_json(silent=True)
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status: int = response.status_code
        self.code: str | None = error.get("code")
        self.message: str | None = error.get("message")
        self.details: dict[str, Any] = error.get("details") or {}
        self.body: Any = body
        super().__init__(
            f"{method} {path} answered {self.status} {self.code}: {self.message} "
            f"{self.details or ''}".rstrip()
        )


class Scheduler:
    """The API, a store and a dispatcher in one object, with `plugins` registered after
    the built-in ones (so a plugin answering first takes over, as an installed one would).

    ::

        with Scheduler(MyTransport()) as scheduler:
            task = scheduler.enqueue("mine://queue/jobs", payload={"n": 1})
            scheduler.deliver_due()
            assert scheduler.task(task["id"])["status"] == "resolved"

    - The database is a fresh SQLite file in a temporary folder removed on `close()`,
      unless `database_url` names one (it is migrated; nothing in it is removed).
    - Installed plugins (the ``scheduler_core`` entry points) are not loaded unless
      `load_entry_points` is True: a test sees only the plugins it passes.
    - Any other keyword is a `Settings` field (``api_keys``, ``signing_secrets``,
      ``target_policy``...); TypeError for an unknown one. With ``api_keys`` set, the
      helpers send the first key.
    - `PluginLoadError` (from `scheduler_core.plugin_manager`) when a plugin names a
      hook that does not exist.

    Nothing runs in the background: `tick()` or `deliver_due()` delivers. The attributes
    are the real objects, for what the helpers do not cover: `settings`, `store`,
    `plugins` (the `PluginManager`), `app` (Flask), `client` (its test client, without
    the API key) and `dispatcher`. Not thread-safe; one per test.
    """

    def __init__(
        self,
        *plugins: object,
        database_url: str | None = None,
        load_entry_points: bool = False,
        **settings: Any,
    ) -> None:
        self._folder: Path | None = None
        if database_url is None:
            self._folder = Path(tempfile.mkdtemp(prefix="scheduler-core-test-"))
            database_url = f"sqlite:///{self._folder / 'scheduler.db'}"
        self._previous_policy = targets.current_policy()
        self._closed = False
        try:
            self.settings = Settings(
                database_url=database_url, load_entry_points=load_entry_points, **settings
            )
            # The manager sets the process's target policy; close() puts the old one back.
            self.plugins = PluginManager(self.settings, extra_plugins=plugins)
            self.store: Store = open_store(
                database_url, pool_size=4, encryption_keys=self.settings.encryption_keys
            )
        except BaseException:
            self._cleanup()
            raise
        try:
            self.store.migrate()
            self.app: Flask = create_app(
                self.settings, store=self.store, plugins=self.plugins, test_config={"TESTING": True}
            )
            self.client: FlaskClient = self.app.test_client()
            self.dispatcher = Dispatcher(
                self.store, self.plugins, delivery_threads=self.settings.delivery_threads
            )
        except BaseException:
            self.store.close()
            self._cleanup()
            raise

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the dispatcher (deliveries in flight finish), close the store, remove the
        temporary database and restore the process's target policy. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.dispatcher.stop(wait=True)
        finally:
            self.store.close()
            self._cleanup()

    def _cleanup(self) -> None:
        targets.set_policy(self._previous_policy)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    # -- the API -------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        """Any API request through the test client, with the API key when keys are set.
        `kwargs` are the test client's (``json=``, ``headers=``, ``query_string=``)."""
        if self.settings.api_keys:
            headers = {"Authorization": f"Bearer {self.settings.api_keys[0]}"}
            headers.update(kwargs.pop("headers", None) or {})
            kwargs["headers"] = headers
        return self.client.open(path, method=method, **kwargs)

    def _ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not 200 <= response.status_code < 300:
            raise RequestFailed(method, path, response)
        return response.get_json()

    def enqueue(self, webhook_url: str, **fields: Any) -> dict[str, Any]:
        """Enqueue one task (``POST /api/v1/tasks``); return it as the API shows it.

        `fields` are the body's other fields as the API spells them: ``payload``,
        ``executeAt``, ``webhookAuth``, ``idempotencyKey``, ``maxRetries``. RequestFailed
        when the API refuses it, e.g. a scheme no loaded plugin claims (400)."""
        task: dict[str, Any] = self._ok(
            "POST", "/api/v1/tasks", json={"webhookUrl": webhook_url, **fields}
        )
        return task

    def enqueue_many(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Enqueue an array of task bodies in one request, all or nothing; RequestFailed
        names each refused item by its index in ``details``."""
        tasks: list[dict[str, Any]] = self._ok("POST", "/api/v1/tasks", json=items)["tasks"]
        return tasks

    def task(self, task_id: str) -> dict[str, Any]:
        """``GET /api/v1/tasks/{id}``; RequestFailed (404) for an unknown id."""
        task: dict[str, Any] = self._ok("GET", f"/api/v1/tasks/{task_id}")
        return task

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        """The task's attempts, oldest first (``statusCode``, ``error``, ``outcome``...)."""
        rows: list[dict[str, Any]] = self._ok("GET", f"/api/v1/tasks/{task_id}/attempts")[
            "attempts"
        ]
        return rows

    def loaded_plugins(self) -> list[dict[str, Any]]:
        """``GET /api/v1/plugins``: every loaded plugin's name, builtin, distribution,
        version, hooks and schemes."""
        rows: list[dict[str, Any]] = self._ok("GET", "/api/v1/plugins")["plugins"]
        return rows

    def configure(self, **changes: int) -> RuntimeConfig:
        """Change the runtime configuration as ``scheduler config set`` does (snake_case
        keys: ``max_retries=0``, ``retry_backoff_ms=0``...); return the new config.
        `scheduler_core.runtime_config.ConfigError` names every refused key."""
        columns = validate_changes(self.store.get_config(), changes, camel=False)
        return self.store.update_config(columns)

    # -- delivery ------------------------------------------------------------------------

    def tick(self) -> RuntimeConfig:
        """One dispatcher round: claim what is due now (up to ``select_size``), deliver
        it through the plugins, wait for and store every outcome. A task that fails is
        not tried again in the same round. Returns the config the round ran with."""
        return self.dispatcher.tick()

    def deliver_due(self, max_rounds: int = 100) -> None:
        """Run rounds until no task is due: everything due now is delivered, and so are
        retries that come due at once (``retry_backoff_ms=0``). Tasks due later stay
        pending. RuntimeError when tasks are still due after `max_rounds` rounds (a plugin
        that keeps asking for an immediate retry, say)."""
        for _ in range(max_rounds):
            self.dispatcher.tick()
            due_in = self.store.dispatch_state().due_in_s
            if due_in is None or due_in > 0:
                return
        raise RuntimeError(f"tasks were still due after {max_rounds} rounds")

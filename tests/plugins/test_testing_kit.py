"""scheduler_core.testing: what a plugin author gets to test a plugin with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scheduler_core import hookimpl, targets
from scheduler_core.models import Callback, DeliveryReport, RetryDecision
from scheduler_core.plugin_manager import PluginLoadError
from scheduler_core.runtime_config import ConfigError
from scheduler_core.testing import Receiver, RequestFailed, Scheduler


class MemoryTransport:
    """Delivers memory:// callbacks into a list; `fail` makes every attempt fail."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Callback] = []
        self.fail = fail

    @hookimpl
    def scheduler_delivery_schemes(self) -> list[str]:
        return ["memory"]

    @hookimpl
    def scheduler_deliver(self, callback: Callback) -> DeliveryReport | None:
        if urlsplit(callback.url).scheme != "memory":
            return None
        self.sent.append(callback)
        return DeliveryReport.failed("broker said no") if self.fail else DeliveryReport.accepted()


class RetryAtOnce:
    @hookimpl
    def scheduler_retry_decision(self) -> RetryDecision:
        return RetryDecision(retry_in_ms=0)


def test_a_scheduler_delivers_over_http_to_a_receiver() -> None:
    with Receiver() as receiver, Scheduler() as scheduler:
        task = scheduler.enqueue(receiver.url("/hook"), payload={"n": 1})
        scheduler.deliver_due()

        [call] = receiver.calls("/hook")
        assert call.json()["payload"] == {"n": 1}
        assert call.header("x-scheduler-task-id") == task["id"]
        assert scheduler.task(task["id"])["status"] == "resolved"
        assert [a["outcome"] for a in scheduler.attempts(task["id"])] == ["resolved"]


def test_the_plugins_passed_are_loaded_after_the_builtins_and_deliver_their_scheme() -> None:
    transport = MemoryTransport()
    with Scheduler(transport) as scheduler:
        [*builtins, mine] = scheduler.loaded_plugins()
        task = scheduler.enqueue("memory://inbox/jobs", payload=[1, 2])
        scheduler.deliver_due()

        assert all(row["builtin"] for row in builtins)
        assert (mine["builtin"], mine["schemes"]) == (False, ["memory"])
        [callback] = transport.sent
        assert callback.url == "memory://inbox/jobs"
        assert callback.task_id == task["id"]
        assert scheduler.task(task["id"])["status"] == "resolved"


def test_a_refused_request_raises_with_the_apis_error() -> None:
    with Scheduler() as scheduler, pytest.raises(RequestFailed) as refused:
        scheduler.enqueue("memory://inbox/jobs")

    assert (refused.value.status, refused.value.code) == (400, "validation_error")
    assert refused.value.details == {
        "webhookUrl": [
            "Scheme 'memory' is not handled by any loaded delivery plugin (handled: http, https)."
        ]
    }
    assert "POST /api/v1/tasks answered 400 validation_error" in str(refused.value)


def test_an_unknown_task_is_a_request_failed_404() -> None:
    with Scheduler() as scheduler, pytest.raises(RequestFailed) as missing:
        scheduler.task("nope")

    assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_deliver_due_runs_immediate_retries_until_the_task_is_stale() -> None:
    transport = MemoryTransport(fail=True)
    with Scheduler(transport) as scheduler:
        scheduler.configure(max_retries=2, retry_backoff_ms=0)
        task = scheduler.enqueue("memory://inbox/jobs")

        scheduler.deliver_due()

        shown = scheduler.task(task["id"])
        assert (shown["status"], shown["attempts"]) == ("stale", 3)
        assert shown["lastError"] == "broker said no"
        assert len(transport.sent) == 3


def test_deliver_due_leaves_a_retry_that_is_not_due_yet_pending() -> None:
    with Scheduler(MemoryTransport(fail=True)) as scheduler:
        scheduler.configure(retry_backoff_ms=60_000)
        task = scheduler.enqueue("memory://inbox/jobs")
        later = scheduler.enqueue("memory://inbox/later", executeAt="2099-01-01T00:00:00Z")

        scheduler.deliver_due()

        assert (scheduler.task(task["id"])["status"], scheduler.task(task["id"])["attempts"]) == (
            "pending",
            1,
        )
        assert scheduler.task(later["id"])["attempts"] == 0


def test_deliver_due_gives_up_on_a_task_that_is_due_again_forever() -> None:
    with Scheduler(MemoryTransport(fail=True), RetryAtOnce()) as scheduler:
        scheduler.configure(max_retries=1000)
        scheduler.enqueue("memory://inbox/jobs")

        with pytest.raises(RuntimeError, match="still due after 3 rounds"):
            scheduler.deliver_due(max_rounds=3)


def test_configure_refuses_what_scheduler_config_set_refuses() -> None:
    with Scheduler() as scheduler, pytest.raises(ConfigError) as refused:
        scheduler.configure(select_size=0, nonsense=1)

    assert set(refused.value.details) == {"select_size", "nonsense"}


def test_with_api_keys_the_helpers_send_the_first_key() -> None:
    with Scheduler(api_keys=("k1", "k2")) as scheduler:
        task = scheduler.enqueue("http://127.0.0.1:9/hook", executeAt="2099-01-01T00:00:00Z")

        assert scheduler.task(task["id"])["id"] == task["id"]
        assert scheduler.client.get("/api/v1/plugins").status_code == 401
        assert scheduler.request("GET", "/api/v1/plugins").status_code == 200


def test_close_removes_the_database_and_restores_the_target_policy() -> None:
    before = targets.current_policy()
    scheduler = Scheduler(target_policy=targets.TargetPolicy.from_settings(None, "10.0.0.0/8"))
    database = Path(scheduler.settings.database_url.removeprefix("sqlite:///"))
    assert database.is_file()
    assert targets.current_policy() is scheduler.settings.target_policy

    scheduler.close()
    scheduler.close()  # twice is fine

    assert not database.parent.exists()
    assert targets.current_policy() is before


def test_an_unknown_setting_or_a_misspelt_hook_fails_at_once() -> None:
    class Misspelt:
        @hookimpl
        def scheduler_authorise(self) -> bool:
            return True

    with pytest.raises(TypeError):
        Scheduler(no_such_setting=1)
    with pytest.raises(PluginLoadError, match="scheduler_authorise"):
        Scheduler(Misspelt())


FIXTURE_USER = """
import pytest

from scheduler_core import hookimpl
from scheduler_core.models import DeliveryReport


class Collect:
    def __init__(self):
        self.urls = []

    @hookimpl
    def scheduler_delivery_schemes(self):
        return ["collect"]

    @hookimpl
    def scheduler_deliver(self, callback):
        if not callback.url.startswith("collect:"):
            return None
        self.urls.append(callback.url)
        return DeliveryReport.accepted()


COLLECT = Collect()


@pytest.fixture
def scheduler_plugins():
    return [COLLECT]


@pytest.fixture
def scheduler_settings():
    return {"max_body_bytes": 4096}


def test_my_plugin(scheduler, receiver):
    mine = scheduler.enqueue("collect://bin/a")
    http = scheduler.enqueue(receiver.url("/hook"))
    scheduler.deliver_due()
    assert COLLECT.urls == ["collect://bin/a"]
    assert len(receiver.calls("/hook")) == 1
    assert scheduler.settings.max_body_bytes == 4096
    assert {scheduler.task(t["id"])["status"] for t in (mine, http)} == {"resolved"}
"""


def test_the_pytest_fixtures_work_in_a_plugin_authors_suite(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(FIXTURE_USER)
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["scheduler_core.testing.pytest_plugin"]\n'
    )

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

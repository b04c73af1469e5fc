"""Queues on a real `scheduler serve` (subprocess, API keys set): the CLI creates a queue
and enqueues into it; an operator pauses, resumes and reconfigures the queue by clicking
in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.processes import SchedulerProcess, run_cli
from tests.ui.conftest import API_KEY

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 60.0


@pytest.fixture
def server(clean_database: str) -> Iterator[SchedulerProcess]:
    process = SchedulerProcess(
        ["serve", "--port", "0"], clean_database, env={"SCHEDULER_API_KEYS": API_KEY}
    )
    try:
        process.wait_listening(STARTUP_TIMEOUT)
        yield process
    finally:
        process.stop()
        print(process.output)
        process.log_path.unlink(missing_ok=True)


def api(server: SchedulerProcess, method: str, path: str, **kwargs: Any) -> Any:
    response = requests.request(
        method,
        f"{server.base_url}/api/v1{path}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=15,
        **kwargs,
    )
    assert response.status_code < 300, (method, path, response.status_code, response.text)
    return response.json()


def cli(server: SchedulerProcess, *args: str) -> Any:
    assert server.base_url is not None
    env = {"SCHEDULER_URL": server.base_url, "SCHEDULER_API_KEY": API_KEY}
    return run_cli(None, *args, env=env)


def test_the_cli_creates_a_queue_and_enqueues_into_it(server: SchedulerProcess) -> None:
    created = cli(server, "queues", "create", "mail", "max_retries=1")
    assert created.returncode == 0, created.stderr
    enqueued = cli(
        server, "enqueue", "http://127.0.0.1:9/hook", "--at", "+1d", "--queue", "mail", "--json"
    )
    assert enqueued.returncode == 0, enqueued.stderr
    assert '"queue": "mail"' in enqueued.stdout
    listed = cli(server, "tasks", "list", "--queue", "mail", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["queue"] for t in api(server, "GET", "/tasks?queue=mail")["tasks"]] == ["mail"]
    shown = cli(server, "queues", "show", "mail", "--json")
    assert '"maxRetries": 1' in shown.stdout and '"pending": 1' in shown.stdout
    refused = cli(server, "enqueue", "http://127.0.0.1:9/hook", "--queue", "nope")
    assert refused.returncode == 1 and "No queue named 'nope'" in refused.stderr


def test_an_operator_pauses_resumes_and_configures_a_queue_in_chromium(
    chromium: Any, server: SchedulerProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    api(server, "PUT", "/queues/mail", json={"selectSize": 10})
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{base}/ui/queues")
    page.fill("#key", API_KEY)
    page.click("button:text('Sign in')")
    expect(page).to_have_url(f"{base}/ui/queues")
    row = page.locator('tr[data-queue="mail"]')
    expect(row.locator("[data-state]")).to_have_text("running")

    row.locator("button:text('Pause')").click()
    expect(page.locator(".notice.ok")).to_contain_text("Paused")
    expect(row.locator("[data-state]")).to_have_text("paused")
    assert api(server, "GET", "/queues/mail")["paused"] is True
    page.screenshot(path=str(tmp_path / "queues-paused.png"), full_page=True)

    row.locator("button:text('Resume')").click()
    expect(page.locator(".notice.ok")).to_contain_text("Resumed")
    expect(row.locator("[data-state]")).to_have_text("running")
    assert api(server, "GET", "/queues/mail")["paused"] is False

    row.locator("a:text('mail')").click()
    expect(page).to_have_url(f"{base}/ui/queues/mail")
    before = api(server, "GET", "/queues/mail")
    page.fill("#f-selectSize", "0")
    page.fill("#f-maxDispatchesPerSecond", "25")
    with page.expect_response(lambda r: r.url.endswith("/ui/queues/mail/config")) as answer:
        page.click("button:text('Save')")
    assert answer.value.status == 400
    expect(page.locator(".field.invalid")).to_have_count(1)
    expect(page.locator(".field.invalid label")).to_have_text("selectSize")
    assert api(server, "GET", "/queues/mail") == before
    page.screenshot(path=str(tmp_path / "queue-config-error.png"), full_page=True)

    page.fill("#f-selectSize", "20")
    page.click("button:text('Save')")
    expect(page.locator(".notice.ok")).to_contain_text("Configuration saved")
    after = api(server, "GET", "/queues/mail")
    assert (after["selectSize"], after["maxDispatchesPerSecond"]) == (20, 25)
    assert api(server, "GET", "/config")["maxDispatchesPerSecond"] == 0

    page.click("nav >> text=Queues")
    expect(page.locator('tr[data-queue="mail"] td.num').nth(6)).to_have_text("25/s")
    page.screenshot(path=str(tmp_path / "queues.png"), full_page=True)
    # The one refused save (400) is all the browser reports: no script error.
    assert [e for e in console_errors if "status of 400" not in e] == []
    assert len(console_errors) <= 1
    context.close()

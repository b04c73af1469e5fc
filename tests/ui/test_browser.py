"""The dashboard in a real browser: headless Chromium (Debian's package, driven by
Playwright) against a real `scheduler serve` with API keys, delivering to a real receiver.

An operator's session, start to end: sign in (a wrong key first), read the overview and
check its numbers against the API, page through the tasks, retry a stale task and cancel a
pending one by clicking, read a task's attempts, edit the config (a bad value first), and
sign out; a page on another site that posts a form to the dashboard is refused. Every page
is saved as a screenshot under the test's tmp_path, wide (1280 px) and narrow (390 px).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.api.helpers import FUTURE, STATUSES
from tests.support.processes import SchedulerProcess
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until
from tests.ui.conftest import API_KEY

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 60.0
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}
PENDING_TASKS = 60  # with the stale and the resolved one: two pages of 50


class Api:
    """The REST API of the server under test, with the key."""

    def __init__(self, base_url: str):
        self.base = f"{base_url}/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {API_KEY}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base}{path}", timeout=15, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()

    def task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = self.call("GET", f"/tasks/{task_id}")
        return task

    def all_tasks(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.call("GET", "/tasks?limit=1000")["tasks"]
        return listed


@pytest.fixture
def server(clean_database: str, tmp_path: Path) -> Iterator[SchedulerProcess]:
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


def test_an_operator_session_in_chromium(
    chromium: Any, server: SchedulerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    assert base is not None
    api = Api(base)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # -- the state to look at: one stale task, one resolved, 60 pending for later ---------
    receiver.behave("/flaky", statuses=[500, 200], body=b"<b>receiver down</b>")
    stale = api.call("POST", "/tasks", json={"webhookUrl": receiver.url("/flaky"), "maxRetries": 0})
    done = api.call("POST", "/tasks", json={"webhookUrl": receiver.url("/ok")})
    later = api.call(
        "POST",
        "/tasks",
        json=[
            {"webhookUrl": receiver.url("/later"), "executeAt": FUTURE, "payload": {"n": n}}
            for n in range(PENDING_TASKS)
        ],
    )["tasks"]
    wait_until(
        lambda: (
            api.task(stale["id"])["status"] == "stale"
            and api.task(done["id"])["status"] == "resolved"
        ),
        timeout=30,
        message="for one task to go stale and one to resolve",
    )

    context = chromium.new_context(viewport=WIDE)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel task ...?" confirmations
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    refusals: list[tuple[int, str]] = []  # every answer of 400 and up, for the end
    page.on(
        "response",
        lambda r: (
            refusals.append((r.status, r.url.removeprefix(base))) if r.status >= 400 else None
        ),
    )

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    # -- sign in: a wrong key first ------------------------------------------------------
    page.goto(f"{base}/ui/")
    expect(page).to_have_url(f"{base}/ui/login?next=%2Fui%2F")
    shot("login")
    page.fill("#key", "wrong-key")
    with page.expect_response(lambda r: r.url.endswith("/ui/login")) as answer:
        page.click("button:text('Sign in')")
    assert answer.value.status == 401
    expect(page.locator(".notice.bad")).to_have_text("That key was not accepted.")
    assert "wrong-key" not in page.content()
    page.fill("#key", API_KEY)
    page.click("button:text('Sign in')")
    expect(page).to_have_url(f"{base}/ui/")
    assert API_KEY not in page.content()

    # -- the overview: numbers as the API counts them, the charts drawn ------------------
    expected = Counter(t["status"] for t in api.all_tasks())
    assert expected == {"pending": PENDING_TASKS, "stale": 1, "resolved": 1}
    for status in STATUSES:
        expect(page.locator(f'[data-count="{status}"]')).to_have_text(str(expected[status]))
    stats = api.call("GET", "/stats")
    assert stats["counts"] == {s: expected[s] for s in STATUSES}
    expect(page.locator('[data-stat="due-backlog"]')).to_have_text(f"{stats['dueBacklog']:,}")
    expect(page.locator("[data-chart][data-drawn]")).to_have_count(3)
    expect(page.locator(".plot canvas")).to_have_count(3)
    shot("overview")

    # -- tasks, page by page ----------------------------------------------------------------
    page.click("nav >> text=Tasks")
    rows = page.locator("tr[data-task-id]")
    expect(rows).to_have_count(50)
    first_page = rows.evaluate_all("rows => rows.map(r => r.dataset.taskId)")
    shot("tasks-page-1")
    page.click("text=Next page")
    expect(rows).to_have_count(PENDING_TASKS + 2 - 50)
    second_page = rows.evaluate_all("rows => rows.map(r => r.dataset.taskId)")
    expect(page.locator("text=Next page")).to_have_count(0)
    shot("tasks-page-2")
    assert set(first_page) | set(second_page) == {t["id"] for t in api.all_tasks()}
    assert not set(first_page) & set(second_page)
    page.click("text=First page")
    expect(rows.first).to_have_attribute("data-task-id", first_page[0])
    page.select_option("#status", "stale")
    page.click("button:text('Show')")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", stale["id"])

    # -- retry the stale task from the "Stale & failing" page -----------------------------
    page.click("nav >> text=Stale & failing")
    shot("attention")
    stale_row = page.locator(f'tr[data-task-id="{stale["id"]}"]')
    stale_row.locator("button:text('Retry')").click()
    expect(page.locator(".notice.ok")).to_contain_text("Retried")
    assert api.task(stale["id"])["status"] in ("pending", "running", "resolved")
    wait_until(
        lambda: api.task(stale["id"])["status"] == "resolved",
        timeout=30,
        message="for the retried task to be delivered again",
    )
    assert len(receiver.calls("/flaky")) == 2

    # -- its attempts --------------------------------------------------------------------
    page.goto(f"{base}/ui/tasks/{stale['id']}")
    attempts = page.locator("table.attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("failed")
    expect(attempts.nth(0)).to_contain_text("<b>receiver down</b>")  # shown as text
    expect(attempts.nth(1)).to_contain_text("resolved")
    expect(page.locator("button:text('Retry')")).to_have_count(0)
    shot("task-attempts")

    # -- cancel a pending task from its page ----------------------------------------------
    target = later[-1]["id"]  # the newest: on the first page
    page.goto(f"{base}/ui/tasks?status=pending")
    page.click(f'tr[data-task-id="{target}"] a')
    expect(page).to_have_url(f"{base}/ui/tasks/{target}")
    expect(page.locator("pre.block")).to_contain_text(f'"n": {PENDING_TASKS - 1}')
    page.click("button:text('Cancel')")
    expect(page.locator(".notice.ok")).to_contain_text("Cancelled")
    expect(page.locator("h1 .badge")).to_have_text("cancelled")
    assert api.task(target)["status"] == "cancelled"
    shot("task-cancelled")

    # -- the config: a bad value changes nothing, a good one is saved ----------------------
    before = api.call("GET", "/config")
    page.click("nav >> text=Config")
    page.fill("#f-maxRetries", "9")
    page.fill("#f-retentionHours", "0")
    with page.expect_response(lambda r: r.url.endswith("/ui/config")) as answer:
        page.click("button:text('Save')")
    assert answer.value.status == 400
    expect(page.locator(".field.invalid")).to_have_count(1)
    expect(page.locator(".field.invalid .field-error")).to_have_text("Must be between 1 and 87600.")
    assert api.call("GET", "/config") == before
    shot("config-error")
    page.fill("#f-retentionHours", "48")
    page.click("button:text('Save')")
    expect(page.locator(".notice.ok")).to_contain_text("Configuration saved")
    assert api.call("GET", "/config") == {**before, "maxRetries": 9, "retentionHours": 48}
    shot("config-saved")

    # -- a narrow screen: nothing wider than the screen but the tables' own scroll -------
    page.set_viewport_size(NARROW)
    for name, path in (("overview", "/ui/"), ("tasks", "/ui/tasks"), ("config", "/ui/config")):
        page.goto(f"{base}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a 390px screen"
        shot(f"narrow-{name}")
    page.set_viewport_size(WIDE)

    # -- another site's page posting a form to the dashboard: refused ---------------------
    victim = later[-2]["id"]
    attacker = "http://attacker.test/"
    page.route(
        attacker,
        lambda route: route.fulfill(
            content_type="text/html",
            body=(
                f'<form id="f" method="post" action="{base}/ui/tasks/{victim}/cancel">'
                '<input name="csrf" value="guessed"></form>'
                "<script>document.getElementById('f').submit()</script>"
            ),
        ),
    )
    with page.expect_response(lambda r: r.url.endswith(f"/ui/tasks/{victim}/cancel")) as answer:
        page.goto(attacker)
    assert answer.value.status == 403
    assert api.task(victim)["status"] == "pending"

    # -- a link from another site opens the page, signed in (the Strict cookie) ----------
    page.route(
        "http://elsewhere.test/",
        lambda route: route.fulfill(
            content_type="text/html", body=f'<a id="go" href="{base}/ui/attention">open</a>'
        ),
    )
    page.goto("http://elsewhere.test/")
    page.click("#go")
    expect(page).to_have_url(f"{base}/ui/attention")
    expect(page.locator("h1")).to_have_text("Stale and failing tasks")

    # -- sign out ------------------------------------------------------------------------
    page.click("button:text('Sign out')")
    expect(page).to_have_url(f"{base}/ui/login")
    page.goto(f"{base}/ui/tasks")
    expect(page).to_have_url(f"{base}/ui/login?next=%2Fui%2Ftasks")

    context.close()
    # No script error, no CSP refusal, no missing asset: only the refusals asked for.
    assert [e for e in console_errors if not e.startswith("Failed to load resource")] == []
    assert refusals == [
        (401, "/ui/login"),
        (400, "/ui/config"),
        (403, f"/ui/tasks/{victim}/cancel"),
    ]
    assert len(list(shots.glob("*.png"))) >= 12

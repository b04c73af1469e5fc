"""The dashboard's schedules page: the list with cron, zone and fire times, and Pause,
Resume and Trigger as form POSTs behind the same sign-in and CSRF check as every page."""

from __future__ import annotations

import re

from tests.ui.conftest import Dashboard

BASE = "/api/v1/schedules"


def make(dashboard: Dashboard, name: str, **fields: object) -> None:
    body = {"name": name, "cron": "30 2 * * *", "webhookUrl": "http://u:pw@127.0.0.1:9/h", **fields}
    response = dashboard.api("POST", BASE, json=body)
    assert response.status_code == 201, response.text


def test_the_page_lists_schedules_and_the_nav_links_to_it(dashboard: Dashboard) -> None:
    make(dashboard, "nightly", timezone="Europe/Berlin", webhookAuth="Bearer ui-secret")
    page = dashboard.get("/ui/schedules")
    assert page.status_code == 200
    html = page.text
    assert 'href="/ui/schedules" aria-current="page"' in html
    assert "nightly" in html and "30 2 * * *" in html and "Europe/Berlin" in html
    assert "ui-secret" not in html and "pw@" not in html
    row = re.search(r'<tr data-schedule="nightly".*?</tr>', html, re.S)
    assert row is not None
    assert "/ui/schedules/nightly/pause" in row.group(0)
    assert "/ui/schedules/nightly/trigger" in row.group(0)
    assert "/ui/schedules/nightly/resume" not in row.group(0)
    assert 'name="csrf"' in row.group(0)
    assert 'href="/ui/schedules"' in dashboard.get("/ui/").text


def test_pause_trigger_resume_by_form_post_redirect_back_with_the_outcome(
    dashboard: Dashboard,
) -> None:
    make(dashboard, "nightly")
    paused = dashboard.post("/ui/schedules/nightly/pause")
    assert paused.status_code == 303
    assert paused.headers["Location"] == "/ui/schedules?done=paused"
    assert dashboard.api("GET", f"{BASE}/nightly").json["paused"] is True
    page = dashboard.get("/ui/schedules?done=paused").text
    assert "Paused: it fires nothing until resumed." in page
    assert "/ui/schedules/nightly/resume" in page
    triggered = dashboard.post("/ui/schedules/nightly/trigger")
    assert triggered.status_code == 303
    task_id = re.search(r"task=([0-9a-f-]{36})", triggered.headers["Location"])
    assert task_id is not None
    task = dashboard.api("GET", f"/api/v1/tasks/{task_id.group(1)}").json
    assert task["schedule"] == "nightly"
    shown = dashboard.get(triggered.headers["Location"]).text
    assert "Triggered" in shown and f"/ui/tasks/{task_id.group(1)}" in shown
    resumed = dashboard.post("/ui/schedules/nightly/resume")
    assert resumed.headers["Location"] == "/ui/schedules?done=resumed"
    assert dashboard.api("GET", f"{BASE}/nightly").json["paused"] is False
    assert dashboard.post("/ui/schedules/nope/pause").status_code == 404


def test_a_post_without_the_form_token_changes_nothing(dashboard: Dashboard) -> None:
    make(dashboard, "nightly")
    refused = dashboard.client.post("/ui/schedules/nightly/pause", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert dashboard.api("GET", f"{BASE}/nightly").json["paused"] is False


def test_signed_out_the_page_asks_for_the_key(keyed_app) -> None:  # type: ignore[no-untyped-def]
    response = keyed_app.test_client().get("/ui/schedules")
    assert response.status_code in (302, 303)
    assert "/ui/login" in response.headers["Location"]

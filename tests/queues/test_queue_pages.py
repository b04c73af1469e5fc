"""The dashboard's queues pages through the test client, signed in: every queue with its
counts and pause switch, the per-queue config form, and the guard on every POST."""

from __future__ import annotations

from flask import Flask

from tests.api.helpers import FUTURE, NOWHERE
from tests.ui.conftest import Dashboard


def queue_json(board: Dashboard, name: str) -> dict:
    response = board.api("GET", f"/api/v1/queues/{name}")
    assert response.status_code == 200, response.text
    return response.json


def make_queue(board: Dashboard, name: str, **config: int) -> None:
    assert board.api("PUT", f"/api/v1/queues/{name}", json=config).status_code == 201


def test_the_queues_page_lists_every_queue_with_counts_and_state(dashboard: Dashboard) -> None:
    make_queue(dashboard, "mail", maxDispatchesPerSecond=50)
    make_queue(dashboard, "idle")
    for at in (None, FUTURE):
        body = {"webhookUrl": NOWHERE, "queue": "mail", **({"executeAt": at} if at else {})}
        assert dashboard.api("POST", "/api/v1/tasks", json=body).status_code == 201
    dashboard.api("POST", "/api/v1/queues/idle/pause")

    page = dashboard.get("/ui/queues")

    assert page.status_code == 200
    assert '<a href="/ui/queues" aria-current="page">Queues</a>' in page.text
    rows = {
        name: page.text.split(f'<tr data-queue="{name}">', 1)[1].split("</tr>", 1)[0]
        for name in ("default", "idle", "mail")
    }
    assert '<td class="num" data-count="pending">2</td>' in rows["mail"]
    assert '<td class="num" data-stat="due-backlog">1</td>' in rows["mail"]
    assert "50/s" in rows["mail"]
    assert 'data-state="paused"' in rows["idle"] and ">Resume</button>" in rows["idle"]
    assert 'data-state="running"' in rows["mail"] and ">Pause</button>" in rows["mail"]


def test_pause_and_resume_by_form_post(dashboard: Dashboard) -> None:
    make_queue(dashboard, "mail")
    dashboard.get("/ui/queues")

    paused = dashboard.post("/ui/queues/mail/pause", {"next": "/ui/queues"})
    assert paused.status_code == 303
    assert paused.headers["Location"] == "/ui/queues?done=paused"
    assert queue_json(dashboard, "mail")["paused"] is True
    assert "Paused: its tasks are not claimed" in dashboard.get("/ui/queues?done=paused").text

    resumed = dashboard.post("/ui/queues/mail/resume", {"next": "/ui/queues/mail"})
    assert resumed.headers["Location"] == "/ui/queues/mail?done=resumed"
    assert queue_json(dashboard, "mail")["paused"] is False
    # A `next` off the dashboard is not followed.
    away = dashboard.post("/ui/queues/mail/pause", {"next": "//evil.example/x"})
    assert away.headers["Location"] == "/ui/queues?done=paused"


def test_a_post_without_the_token_or_from_another_origin_changes_nothing(
    dashboard: Dashboard,
) -> None:
    make_queue(dashboard, "mail")
    assert dashboard.client.post("/ui/queues/mail/pause").status_code == 403
    dashboard.get("/ui/queues")
    foreign = dashboard.post("/ui/queues/mail/pause", headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    saved = dashboard.client.post("/ui/queues/mail/config", data={"selectSize": "5"})
    assert saved.status_code == 403
    mail = queue_json(dashboard, "mail")
    assert (mail["paused"], mail["selectSize"]) == (False, 100)


def test_signed_out_visitors_are_sent_to_sign_in(keyed_app: Flask) -> None:
    response = keyed_app.test_client().get("/ui/queues")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/ui/login?next=")


def test_the_config_form_saves_and_names_bad_fields(dashboard: Dashboard) -> None:
    make_queue(dashboard, "mail")
    before = queue_json(dashboard, "mail")
    page = dashboard.get("/ui/queues/mail")
    assert page.status_code == 200
    assert 'action="/ui/queues/mail/config"' in page.text
    keys = [
        k
        for k in before
        if k[0].islower() and isinstance(before[k], int) and k not in ("dueBacklog",)
    ]
    form = {k: str(before[k]) for k in keys}

    bad = dashboard.post(
        "/ui/queues/mail/config",
        {**form, "selectSize": "0", "maxRetries": "x", "retentionHours": "2"},
    )
    assert bad.status_code == 400
    assert "Nothing was changed" in bad.text
    for field in ("selectSize", "maxRetries"):
        block = bad.text.split(f'<label for="f-{field}">', 1)[1].split('<div class="field', 1)[0]
        assert 'aria-invalid="true"' in block and 'class="field-error"' in block
    assert queue_json(dashboard, "mail") == before  # retentionHours=2 too: nothing

    saved = dashboard.post("/ui/queues/mail/config", {**form, "maxConcurrentDispatches": "4"})
    assert saved.status_code == 303
    assert saved.headers["Location"] == "/ui/queues/mail?done=saved"
    after = queue_json(dashboard, "mail")
    assert after["maxConcurrentDispatches"] == 4
    assert dashboard.api("GET", "/api/v1/config").json["maxConcurrentDispatches"] == 0
    same = dashboard.post("/ui/queues/mail/config", {**form, "maxConcurrentDispatches": "4"})
    assert same.headers["Location"] == "/ui/queues/mail?done=unchanged"


def test_a_missing_or_impossible_queue_is_the_dashboards_404(dashboard: Dashboard) -> None:
    for path in ("/ui/queues/nope", "/ui/queues/bad%20name"):
        response = dashboard.get(path)
        assert response.status_code == 404
        assert response.mimetype == "text/html"
    dashboard.get("/ui/queues")
    assert dashboard.post("/ui/queues/nope/pause").status_code == 404

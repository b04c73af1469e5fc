"""The dashboard's pages and buttons through Flask's test client, on every backend: what
they show (escaped, secrets masked), retry and cancel, the config form, paging."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from markupsafe import escape

from scheduler_core.dispatcher import Dispatcher
from scheduler_core.store import Store
from tests.api.helpers import FUTURE, NOWHERE, STATUSES
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until
from tests.ui.conftest import Dashboard

SCRIPT = "<script>alert(1)</script>"


def enqueue(board: Dashboard, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    created = board.api("POST", "/api/v1/tasks", json=items)
    assert created.status_code == 201, created.text
    tasks: list[dict[str, Any]] = created.json["tasks"]
    return tasks


def api_task(board: Dashboard, task_id: str) -> dict[str, Any]:
    task: dict[str, Any] = board.api("GET", f"/api/v1/tasks/{task_id}").json
    return task


def make_stale(board: Dashboard, dispatcher: Dispatcher, receiver: Receiver, **fields: Any) -> str:
    """A task whose only attempt failed with a 500 whose body is a script tag."""
    receiver.behave("/fails", statuses=[500], body=SCRIPT.encode())
    [task] = enqueue(board, [{"webhookUrl": receiver.url("/fails"), "maxRetries": 0, **fields}])
    wait_until(
        lambda: dispatcher.tick() and api_task(board, task["id"])["status"] == "stale",
        timeout=15,
        message="for the task to go stale",
    )
    return str(task["id"])


def rows(html: str) -> list[str]:
    """The task ids of a page's task tables, in order."""
    return re.findall(r'<tr data-task-id="([^"]+)"', html)


def test_a_task_page_shows_the_api_fields_masked_and_escaped(
    dashboard: Dashboard, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    task_id = make_stale(
        dashboard,
        dispatcher,
        receiver,
        payload={"note": SCRIPT},
        webhookAuth="Bearer very-secret-auth",
    )

    page = dashboard.get(f"/ui/tasks/{task_id}")

    assert page.status_code == 200
    assert SCRIPT not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # payload and lastError
    assert "very-secret-auth" not in page.text
    assert "webhookAuth" not in page.text
    assert str(escape(api_task(dashboard, task_id)["lastError"])) in page.text
    assert ">Retry</button>" in page.text and ">Cancel</button>" in page.text
    # The attempt history: one failed attempt with its status code.
    assert re.search(r'<span class="badge o-failed">failed</span>', page.text)
    assert '<td class="num">500</td>' in page.text


def test_a_webhook_url_is_masked_as_the_api_masks_it(dashboard: Dashboard) -> None:
    [task] = enqueue(
        dashboard,
        [
            {
                "webhookUrl": "http://user:pw-secret@127.0.0.1:9/hook?sig=q-secret",
                "executeAt": FUTURE,
            }
        ],
    )
    for path in (f"/ui/tasks/{task['id']}", "/ui/tasks"):
        page = dashboard.get(path)
        assert "pw-secret" not in page.text and "q-secret" not in page.text, path
        assert task["webhookUrl"] in page.text, path


def test_escaping_holds_in_lists_too(
    dashboard: Dashboard, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    make_stale(dashboard, dispatcher, receiver)
    for path in ("/ui/tasks", "/ui/attention", "/ui/tasks?status=stale"):
        page = dashboard.get(path)
        assert SCRIPT not in page.text, path
        assert "&lt;script&gt;" in page.text, path


def test_an_unknown_task_is_a_404_page(dashboard: Dashboard) -> None:
    for task_id in ("00000000-0000-4000-8000-000000000000", "not-an-id", "%3Cscript%3E"):
        page = dashboard.get(f"/ui/tasks/{task_id}")
        assert page.status_code == 404, task_id
        assert page.mimetype == "text/html"
        assert "Not found" in page.text
        assert "<script>" not in page.text.split("</head>", 1)[1].replace(
            '<script src="/ui/static/ui.js" defer></script>', ""
        )
    assert dashboard.post("/ui/tasks/00000000-0000-4000-8000-000000000000/retry").status_code == 404


def test_retry_then_cancel_by_form_post_redirects_back_with_the_outcome(
    dashboard: Dashboard, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    task_id = make_stale(dashboard, dispatcher, receiver)

    retried = dashboard.post(f"/ui/tasks/{task_id}/retry", {"next": "/ui/attention"})

    assert retried.status_code == 303
    assert retried.headers["Location"] == f"/ui/attention?done=retried&task={task_id}"
    assert api_task(dashboard, task_id)["status"] == "pending"
    shown = dashboard.get(retried.headers["Location"])
    assert "Retried: the task is pending again" in shown.text

    again = dashboard.post(f"/ui/tasks/{task_id}/retry")  # pending now: refused
    assert again.headers["Location"] == f"/ui/tasks/{task_id}?refused=retry&task={task_id}"
    assert "Not retried" in dashboard.get(again.headers["Location"]).text

    cancelled = dashboard.post(f"/ui/tasks/{task_id}/cancel", {"next": "https://evil.example/"})
    assert cancelled.headers["Location"] == f"/ui/tasks/{task_id}?done=cancelled&task={task_id}"
    assert api_task(dashboard, task_id)["status"] == "cancelled"


def test_the_attention_page_lists_stale_and_failing_tasks_with_their_buttons(
    dashboard: Dashboard, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    stale_id = make_stale(dashboard, dispatcher, receiver)
    receiver.behave("/flaky", statuses=[503])
    [failing] = enqueue(dashboard, [{"webhookUrl": receiver.url("/flaky"), "maxRetries": 3}])
    [quiet] = enqueue(dashboard, [{"webhookUrl": NOWHERE, "executeAt": FUTURE}])
    wait_until(
        lambda: dispatcher.tick() and api_task(dashboard, failing["id"])["attempts"] >= 1,
        timeout=15,
    )

    page = dashboard.get("/ui/attention")

    stale_section, failing_section = page.text.split("Failing, waiting to retry", 1)
    assert rows(stale_section) == [stale_id]
    assert rows(failing_section) == [failing["id"]]
    assert quiet["id"] not in page.text
    assert f'action="/ui/tasks/{stale_id}/retry"' in stale_section
    assert f'action="/ui/tasks/{failing["id"]}/cancel"' in failing_section
    assert f'action="/ui/tasks/{failing["id"]}/retry"' not in failing_section


def test_tasks_page_by_page_with_the_keyset_cursor(dashboard: Dashboard) -> None:
    created = enqueue(dashboard, [{"webhookUrl": NOWHERE, "executeAt": FUTURE} for _ in range(120)])
    newest_first = [t["id"] for t in reversed(created)]

    seen: list[str] = []
    path = "/ui/tasks"
    pages = 0
    while path:
        page = dashboard.get(path)
        assert page.status_code == 200
        seen += rows(page.text)
        pages += 1
        found = re.search(r'href="(/ui/tasks\?cursor=[^"]+)">Next page', page.text)
        path = found.group(1).replace("&amp;", "&") if found else ""
        assert ("First page" in page.text) == (pages > 1)

    assert pages == 3
    assert seen == newest_first
    assert dashboard.get("/ui/tasks?cursor=bogus").status_code == 400
    assert dashboard.get("/ui/tasks?status=asleep").status_code == 400


def test_the_status_filter_shows_only_that_status(
    dashboard: Dashboard, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    stale_id = make_stale(dashboard, dispatcher, receiver)
    enqueue(dashboard, [{"webhookUrl": NOWHERE, "executeAt": FUTURE}])

    assert rows(dashboard.get("/ui/tasks?status=stale").text) == [stale_id]
    assert len(rows(dashboard.get("/ui/tasks").text)) == 2
    assert rows(dashboard.get("/ui/tasks?status=resolved").text) == []


def test_the_overview_counts_match_the_api(
    dashboard: Dashboard, dispatcher: Dispatcher, receiver: Receiver, store: Store
) -> None:
    make_stale(dashboard, dispatcher, receiver)
    enqueue(dashboard, [{"webhookUrl": NOWHERE, "executeAt": FUTURE} for _ in range(3)])
    [done] = enqueue(dashboard, [{"webhookUrl": receiver.url("/ok")}])
    wait_until(
        lambda: dispatcher.tick() and api_task(dashboard, done["id"])["status"] == "resolved",
        timeout=15,
    )
    listed = dashboard.api("GET", "/api/v1/tasks?limit=1000").json["tasks"]
    expected = Counter(t["status"] for t in listed)

    page = dashboard.get("/ui/")

    shown = dict(re.findall(r'data-count="(\w+)">([\d,]+)<', page.text))
    assert {s: int(shown[s].replace(",", "")) for s in STATUSES} == {
        s: expected.get(s, 0) for s in STATUSES
    }
    stats = dashboard.api("GET", "/api/v1/stats").json
    assert stats["counts"] == {s: expected.get(s, 0) for s in STATUSES}
    assert f'data-stat="due-backlog">{stats["dueBacklog"]}<' in page.text
    assert f'<td class="mono">{stats["queues"][0]["queue"]}</td>' in page.text
    # The charts' figures: the last hour's attempts, the failed one and the resolved one.
    figures = json.loads(page.text.split('id="activity-data">', 1)[1].split("</script>", 1)[0])
    assert len(figures["time"]) == 60
    assert (sum(figures["attempts"]), sum(figures["resolved"]), sum(figures["failed"])) == (2, 1, 1)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"retentionHours": "0"}, "retentionHours", "Must be between 1 and 87600."),
        ({"selectSize": "ten"}, "selectSize", "Must be an integer."),
        ({"selectSize": "1.5"}, "selectSize", "Must be an integer."),
        ({"retryBackoffMs": "5000", "retryBackoffMaxMs": "10"}, "retryBackoffMaxMs", "at least"),
    ],
)
def test_a_bad_config_value_is_shown_by_its_field_and_nothing_changes(
    dashboard: Dashboard, form: dict[str, str], field: str, message: str
) -> None:
    before = dashboard.api("GET", "/api/v1/config").json
    page = dashboard.get("/ui/config")
    assert page.status_code == 200

    response = dashboard.post(
        "/ui/config", {**{k: str(v) for k, v in before.items()}, "maxRetries": "9", **form}
    )

    assert response.status_code == 400
    assert "Nothing was changed" in response.text
    block = response.text.split(f'<label for="f-{field}">', 1)[1].split('<div class="field', 1)[0]
    assert message in block
    assert 'aria-invalid="true"' in block
    assert f'value="{form[field]}"' in block  # what was typed stays, to fix it
    assert dashboard.api("GET", "/api/v1/config").json == before  # maxRetries=9 too: nothing


def test_saving_the_config_changes_what_the_api_shows(dashboard: Dashboard) -> None:
    before = dashboard.api("GET", "/api/v1/config").json
    dashboard.get("/ui/config")
    form = {k: str(v) for k, v in before.items()}

    saved = dashboard.post("/ui/config", {**form, "selectSize": " 50 ", "maxRetries": "7"})

    assert saved.status_code == 303
    assert saved.headers["Location"] == "/ui/config?done=saved"
    assert dashboard.api("GET", "/api/v1/config").json == {
        **before,
        "selectSize": 50,
        "maxRetries": 7,
    }
    page = dashboard.get("/ui/config?done=saved")
    assert "Configuration saved" in page.text
    assert 'value="50"' in page.text

    unchanged = dashboard.post("/ui/config", {**form, "selectSize": "50", "maxRetries": "7"})
    assert unchanged.headers["Location"] == "/ui/config?done=unchanged"

"""/api/v1/queues on each backend: shapes, status codes, validation (a bad request names
its field and changes nothing), removal rules, pause, resume and purge."""

from __future__ import annotations

import pytest

from scheduler_core.runtime_config import BOUNDS, RuntimeConfig, to_camel
from tests.api.helpers import FUTURE, NOWHERE, STATUSES, assert_error, enqueue
from tests.api.test_openapi import assert_conforms
from tests.queues.conftest import QUEUES, get_queue, put_queue

CONFIG_KEYS = [to_camel(column) for column in BOUNDS]
DEFAULTS = RuntimeConfig().as_camel()
QUEUE_KEYS = ["name", "paused", *CONFIG_KEYS, "counts", "dueBacklog", "createdAt", "updatedAt"]
BAD_NAMES = ["a" * 65, "has space", "caf%C3%A9", "semi;colon", "%00", "tab%09", "x%0A"]


@pytest.fixture
def doc(client):
    return client.get("/api/v1/openapi.json").get_json()


def test_a_fresh_server_lists_the_default_queue_only(client, doc):
    response = client.get(QUEUES)
    body = assert_conforms(doc, "get", QUEUES, response)
    assert [q["name"] for q in body["queues"]] == ["default"]
    [default] = body["queues"]
    assert list(default) == QUEUE_KEYS
    assert {k: default[k] for k in CONFIG_KEYS} == DEFAULTS
    assert default["paused"] is False
    assert default["counts"] == dict.fromkeys(STATUSES, 0)


def test_put_creates_with_defaults_then_replaces_the_whole_config(client, doc):
    response = client.put(f"{QUEUES}/mail", json={"selectSize": 7, "maxRetries": 2})
    created = assert_conforms(doc, "put", f"{QUEUES}/{{name}}", response)
    assert response.status_code == 201
    assert response.headers["Location"] == f"{QUEUES}/mail"
    assert {k: created[k] for k in CONFIG_KEYS} == {**DEFAULTS, "selectSize": 7, "maxRetries": 2}

    response = client.put(f"{QUEUES}/mail", json={"maxRetries": 9})
    replaced = assert_conforms(doc, "put", f"{QUEUES}/{{name}}", response)
    assert response.status_code == 200 and "Location" not in response.headers
    assert {k: replaced[k] for k in CONFIG_KEYS} == {**DEFAULTS, "maxRetries": 9}
    assert replaced["createdAt"] == created["createdAt"]
    assert get_queue(client, "mail") == replaced

    blank = put_queue(client, "blank.queue-1_X")  # {}: every default
    assert {k: blank[k] for k in CONFIG_KEYS} == DEFAULTS


def test_the_list_is_sorted_by_name_and_counts_each_queue(client):
    for name in ("zeta", "Alpha", "mail"):
        put_queue(client, name)
    enqueue(client, queue="mail", executeAt=FUTURE)
    enqueue(client, queue="mail")
    enqueue(client, executeAt=FUTURE)
    queues = client.get(QUEUES).get_json()["queues"]
    assert [q["name"] for q in queues] == sorted(["zeta", "Alpha", "mail", "default"])
    by_name = {q["name"]: q for q in queues}
    assert by_name["mail"]["counts"]["pending"] == 2
    assert by_name["mail"]["dueBacklog"] == 1
    assert by_name["default"]["counts"]["pending"] == 1
    assert by_name["zeta"]["counts"] == dict.fromkeys(STATUSES, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"selectSize": 0}, "selectSize"),
        ({"selectSize": "5"}, "selectSize"),
        ({"selectSize": 5.5}, "selectSize"),
        ({"selectSize": None}, "selectSize"),
        ({"selectSize": True}, "selectSize"),
        ({"maxDispatchesPerSecond": 100_001}, "maxDispatchesPerSecond"),
        ({"max_retries": 3}, "max_retries"),
        ({"retryBackoffMs": 10_000, "retryBackoffMaxMs": 5_000}, "retryBackoffMaxMs"),
        ({"retryBackoffMs": 4_000_000}, "retryBackoffMaxMs"),  # above the default cap
        ({"queue": "x"}, "queue"),
    ],
)
@pytest.mark.parametrize("method", ["put", "patch"])
def test_a_bad_key_is_named_and_nothing_changes(client, method, body, field):
    put_queue(client, "mail", selectSize=7)
    before = get_queue(client, "mail")
    if method == "patch" and field == "retryBackoffMaxMs" and "retryBackoffMaxMs" not in body:
        body = {"retryBackoffMs": 4_000_000}  # above the stored cap, as for PUT
    response = getattr(client, method)(f"{QUEUES}/mail", json=body)
    assert_error(response, 400, "validation_error")
    assert field in response.get_json()["error"]["details"]
    assert get_queue(client, "mail") == before
    # A refused creation creates nothing.
    response = client.put(f"{QUEUES}/other", json=body)
    assert_error(response, 400, "validation_error")
    assert client.get(f"{QUEUES}/other").status_code == 404


@pytest.mark.parametrize("body", [[], "text", 5, [{"selectSize": 5}]])
def test_a_body_that_is_not_an_object_is_refused(client, body):
    response = client.put(f"{QUEUES}/mail", json=body)
    assert_error(response, 400, "validation_error")
    assert client.get(f"{QUEUES}/mail").status_code == 404


def test_an_empty_or_broken_body_is_invalid_json(client):
    assert_error(client.put(f"{QUEUES}/mail", data=""), 400, "invalid_json")
    assert_error(client.put(f"{QUEUES}/mail", data="{"), 400, "invalid_json")
    assert client.get(f"{QUEUES}/mail").status_code == 404


def test_patch_changes_some_keys_and_needs_one(client, doc):
    put_queue(client, "mail", selectSize=7)
    response = client.patch(f"{QUEUES}/mail", json={"maxRetries": 1})
    changed = assert_conforms(doc, "patch", f"{QUEUES}/{{name}}", response)
    assert (changed["selectSize"], changed["maxRetries"]) == (7, 1)
    response = client.patch(f"{QUEUES}/mail", json={})
    assert_error(response, 400, "validation_error")
    assert_conforms(doc, "patch", f"{QUEUES}/{{name}}", response)
    response = client.patch(f"{QUEUES}/nope", json={"maxRetries": 1})
    assert_error(response, 404, "not_found")
    assert_conforms(doc, "patch", f"{QUEUES}/{{name}}", response)
    assert "nope" in response.get_json()["error"]["message"]


def test_patching_the_default_queue_is_patching_the_config(client):
    response = client.patch(f"{QUEUES}/default", json={"maxConcurrentDispatches": 4})
    assert response.status_code == 200
    assert client.get("/api/v1/config").get_json()["maxConcurrentDispatches"] == 4


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_name_in_the_path_is_a_400_naming_it(client, name):
    calls = [
        ("get", None),
        ("put", {}),
        ("patch", {"maxRetries": 1}),
        ("delete", None),
    ]
    for method, body in calls:
        kwargs = {"json": body} if body is not None else {}
        response = client.open(f"{QUEUES}/{name}", method=method.upper(), **kwargs)
        assert_error(response, 400, "validation_error")
        assert list(response.get_json()["error"]["details"]) == ["name"]
    for verb in ("pause", "resume", "purge"):
        response = client.post(f"{QUEUES}/{name}/{verb}")
        assert_error(response, 400, "validation_error")
    assert [q["name"] for q in client.get(QUEUES).get_json()["queues"]] == ["default"]


def test_a_slash_in_the_name_matches_no_route(client):
    # An encoded slash is a slash to the router: no such resource, never a 500.
    assert_error(client.get(f"{QUEUES}/sl%2Fash"), 404, "not_found")
    assert_error(client.put(f"{QUEUES}/sl%2Fash", json={}), 404, "not_found")


def test_a_missing_queue_is_404_everywhere(client, doc):
    for method, path in [
        ("get", f"{QUEUES}/nope"),
        ("delete", f"{QUEUES}/nope"),
        ("post", f"{QUEUES}/nope/pause"),
        ("post", f"{QUEUES}/nope/resume"),
        ("post", f"{QUEUES}/nope/purge"),
    ]:
        response = client.open(path, method=method.upper())
        assert_error(response, 404, "not_found")
        assert_conforms(doc, method, path.replace("nope", "{name}"), response)


def test_delete_returns_the_queue_and_keeps_its_finished_tasks(client, doc):
    put_queue(client, "mail", selectSize=3)
    task = enqueue(client, queue="mail", executeAt=FUTURE)
    client.delete(f"/api/v1/tasks/{task['id']}")
    response = client.delete(f"{QUEUES}/mail")
    gone = assert_conforms(doc, "delete", f"{QUEUES}/{{name}}", response)
    assert (gone["name"], gone["selectSize"], gone["counts"]["cancelled"]) == ("mail", 3, 1)
    assert client.get(f"{QUEUES}/mail").status_code == 404
    assert client.get(f"/api/v1/tasks/{task['id']}").get_json()["status"] == "cancelled"
    # Enqueueing into it now names the queue.
    response = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "queue": "mail"})
    assert_error(response, 400, "validation_error")
    assert "queue" in response.get_json()["error"]["details"]


def test_delete_refuses_default_and_a_queue_holding_work(client, doc, store):
    response = client.delete(f"{QUEUES}/default")
    assert_error(response, 409, "conflict")
    assert_conforms(doc, "delete", f"{QUEUES}/{{name}}", response)
    assert response.get_json()["error"]["details"] == {"reason": "default_queue"}

    put_queue(client, "mail")
    enqueue(client, queue="mail", executeAt=FUTURE)
    response = client.delete(f"{QUEUES}/mail")
    assert_error(response, 409, "conflict")
    details = response.get_json()["error"]["details"]
    assert details == {"reason": "tasks", "counts": {"pending": 1, "running": 0, "stale": 0}}
    assert get_queue(client, "mail")["counts"]["pending"] == 1

    assert client.post(f"{QUEUES}/mail/purge").get_json() == {"count": 1}
    assert client.delete(f"{QUEUES}/mail").status_code == 200


def test_pause_and_resume_are_idempotent_and_enqueueing_still_works(client, doc):
    put_queue(client, "mail")
    for _ in range(2):
        response = client.post(f"{QUEUES}/mail/pause")
        assert assert_conforms(doc, "post", f"{QUEUES}/{{name}}/pause", response)["paused"]
    task = enqueue(client, queue="mail")
    assert task["queue"] == "mail" and task["status"] == "pending"
    assert get_queue(client, "mail")["paused"] is True
    for _ in range(2):
        response = client.post(f"{QUEUES}/mail/resume")
        resumed = assert_conforms(doc, "post", f"{QUEUES}/{{name}}/resume", response)
        assert resumed["paused"] is False


def test_purge_cancels_pending_tasks_of_that_queue_only(client, doc):
    put_queue(client, "mail")
    mine = [enqueue(client, queue="mail", executeAt=FUTURE) for _ in range(3)]
    other = enqueue(client, executeAt=FUTURE)
    response = client.post(f"{QUEUES}/mail/purge")
    assert assert_conforms(doc, "post", f"{QUEUES}/{{name}}/purge", response) == {"count": 3}
    for task in mine:
        assert client.get(f"/api/v1/tasks/{task['id']}").get_json()["status"] == "cancelled"
    assert client.get(f"/api/v1/tasks/{other['id']}").get_json()["status"] == "pending"
    assert client.post(f"{QUEUES}/mail/purge").get_json() == {"count": 0}


def test_stats_and_metrics_show_every_queue(client):
    put_queue(client, "mail")
    put_queue(client, "idle")
    enqueue(client, queue="mail")
    enqueue(client, queue="mail", executeAt=FUTURE)
    stats = client.get("/api/v1/stats").get_json()
    assert [q["queue"] for q in stats["queues"]] == ["default", "idle", "mail"]
    mail = stats["queues"][2]
    assert (mail["counts"]["pending"], mail["dueBacklog"]) == (2, 1)
    assert stats["queues"][1]["counts"] == dict.fromkeys(STATUSES, 0)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'scheduler_tasks{queue="idle",status="pending"} 0.0' in text
    assert 'scheduler_tasks{queue="mail",status="pending"} 2.0' in text
    assert 'scheduler_due_backlog{queue="mail"} 1.0' in text
    assert 'scheduler_tasks_enqueued_total{queue="mail"} 2.0' in text
    assert 'scheduler_tasks_enqueued_total{queue="default"} 0.0' in text


def test_an_array_enqueue_counts_each_queue_apart(client):
    put_queue(client, "mail")
    items = [{"webhookUrl": NOWHERE, "queue": q} for q in ("mail", "default", "mail")]
    assert client.post("/api/v1/tasks", json=items).status_code == 201
    text = client.get("/metrics").get_data(as_text=True)
    assert 'scheduler_tasks_enqueued_total{queue="mail"} 2.0' in text
    assert 'scheduler_tasks_enqueued_total{queue="default"} 1.0' in text


def test_the_config_endpoint_stays_the_default_queues(client):
    put_queue(client, "mail", selectSize=3)
    config = client.get("/api/v1/config").get_json()
    assert config == DEFAULTS
    assert list(config) == CONFIG_KEYS

"""GET /api/v1/tasks with several statuses and a queue; the store's TaskFilter."""

from datetime import timedelta

import pytest

from scheduler_core.models import TaskFilter, TaskStatus
from tests.api.helpers import FUTURE, NOWHERE, STATUSES, assert_error, enqueue, parse_time
from tests.support.waiting import wait_until


def list_page(client, query=""):
    response = client.get(f"/api/v1/tasks{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def ids(page):
    return [t["id"] for t in page["tasks"]]


def walk(client, query, limit, cursor=None):
    seen = []
    for _ in range(1000):
        page = list_page(client, f"?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert page["tasks"] or not seen, "an empty page after a full one"
        seen.extend(page["tasks"])
        cursor = page["nextCursor"]
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ends")


def enqueue_array(client, count, **fields):
    body = [{"webhookUrl": NOWHERE, "executeAt": FUTURE, **fields} for _ in range(count)]
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["tasks"]


def test_several_statuses_return_those_newest_first(client, tasks_by_status):
    page = list_page(client, "?status=stale,pending,cancelled")
    everything = list_page(client)["tasks"]  # newest first
    assert ids(page) == [
        t["id"] for t in everything if t["status"] in {"stale", "pending", "cancelled"}
    ]
    assert sorted(t["status"] for t in page["tasks"]) == ["cancelled", "pending", "stale"]
    assert page["nextCursor"] is None


def test_every_status_named_is_the_same_as_none(client, tasks_by_status):
    assert list_page(client, "?status=" + ",".join(STATUSES)) == list_page(client)
    assert len(list_page(client)["tasks"]) == len(STATUSES)


def test_a_repeated_status_parameter_adds_its_statuses(client, tasks_by_status):
    """`status=a&status=b` (what requests sends for a list) is `status=a,b`: keeping only
    one value would hide the other status's tasks."""
    repeated = list_page(client, "?status=pending&status=stale&status=")
    assert repeated == list_page(client, "?status=pending,stale")
    assert sorted(t["status"] for t in repeated["tasks"]) == ["pending", "stale"]
    bad = client.get("/api/v1/tasks?status=pending&status=bogus")
    assert "status" in assert_error(bad, 400, "validation_error")["details"]


@pytest.mark.parametrize(
    "query, named",
    [
        ("?limit=1&limit=3", "limit"),
        ("?queue=default&queue=other", "queue"),
        ("?cursor=djE6NQ&cursor=djE6Ng", "cursor"),
    ],
)
def test_another_parameter_given_twice_with_different_values_is_refused(
    client, tasks_by_status, query, named
):
    details = assert_error(client.get(f"/api/v1/tasks{query}"), 400, "validation_error")["details"]
    assert set(details) == {named}
    assert "once" in details[named][0]


def test_a_parameter_repeated_with_the_same_value_is_that_value(client, tasks_by_status):
    assert list_page(client, "?limit=2&limit=2") == list_page(client, "?limit=2")


def test_a_status_named_twice_is_listed_once(client, tasks_by_status):
    assert ids(list_page(client, "?status=stale,stale")) == [tasks_by_status["stale"]["id"]]


@pytest.mark.parametrize(
    ("status", "named"),
    [("pending,done", "'done'"), ("Stale", "'Stale'"), ("pending,", "empty"), (",", "empty")],
)
def test_a_bad_status_is_named(client, status, named):
    error = assert_error(client.get(f"/api/v1/tasks?status={status}"), 400, "validation_error")
    assert any(named in message for message in error["details"]["status"])
    assert named in error["message"]  # a client that shows only the message sees it too


def test_an_empty_status_parameter_is_no_filter(client, tasks_by_status):
    assert list_page(client, "?status=") == list_page(client)


def test_the_default_queue_holds_every_task(client, tasks_by_status):
    page = list_page(client, "?queue=default")
    assert page == list_page(client)
    assert {t["queue"] for t in page["tasks"]} == {"default"}
    assert ids(list_page(client, "?queue=default&status=stale")) == [tasks_by_status["stale"]["id"]]


@pytest.mark.parametrize("queue", ["x", "Default", "a" * 64])
def test_a_queue_that_does_not_exist_is_refused_by_name(client, queue):
    enqueue(client)
    error = assert_error(client.get(f"/api/v1/tasks?queue={queue}"), 400, "validation_error")
    [message] = error["details"]["queue"]
    assert message.startswith("No queue named '")
    if queue == "x":
        assert message == "No queue named 'x'."
        assert "No queue named 'x'." in error["message"]


@pytest.mark.parametrize("queue", ["default ", "%00", "a" * 65, "a/b", "%C3%A9"])
def test_a_queue_name_outside_the_rule_is_refused_with_the_rule(client, queue):
    enqueue(client)
    error = assert_error(client.get(f"/api/v1/tasks?queue={queue}"), 400, "validation_error")
    [message] = error["details"]["queue"]
    assert "1..64 characters" in message


def test_every_problem_of_a_query_is_named_at_once(client):
    response = client.get("/api/v1/tasks?status=nope&queue=q&limit=0&cursor=zz")
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"status", "queue", "limit", "cursor"}


def test_unknown_query_parameters_are_ignored(client, tasks_by_status):
    assert list_page(client, "?_=12345&foo=bar") == list_page(client)


@pytest.mark.parametrize("statuses", ["pending,cancelled", "cancelled,resolved,stale"])
def test_paging_with_several_statuses_visits_each_match_once(client, statuses):
    """Matches spread between tasks of other statuses, in small pages."""
    wanted = set(statuses.split(","))
    created = enqueue_array(client, 30)
    for task in created[::4]:
        assert client.delete(f"/api/v1/tasks/{task['id']}").status_code == 200
    everything = list_page(client, "?limit=1000")["tasks"]
    expected = [t["id"] for t in everything if t["status"] in wanted]
    seen = walk(client, f"&status={statuses}", 4)
    assert [t["id"] for t in seen] == expected
    assert {t["status"] for t in seen} <= wanted


def test_paging_with_a_filter_is_stable_while_tasks_change_and_arrive(client):
    created = enqueue_array(client, 12)  # oldest first
    first = list_page(client, "?limit=4&status=pending,cancelled")
    assert ids(first) == [t["id"] for t in created[::-1][:4]]
    # Meanwhile: a task of the next page is cancelled (still matches), one is enqueued.
    assert client.delete(f"/api/v1/tasks/{created[6]['id']}").status_code == 200
    newer = enqueue(client, executeAt=FUTURE)
    rest = walk(client, "&status=pending,cancelled", 4, cursor=first["nextCursor"])
    assert [t["id"] for t in rest] == [t["id"] for t in created[::-1][4:]]
    assert newer["id"] not in [t["id"] for t in rest]
    assert {t["status"] for t in rest} == {"pending", "cancelled"}


def test_a_task_leaving_the_filter_between_pages_is_not_shown_later(client):
    created = enqueue_array(client, 6)
    first = list_page(client, "?limit=3&status=pending")
    assert client.delete(f"/api/v1/tasks/{created[1]['id']}").status_code == 200
    second = list_page(client, f"?limit=3&status=pending&cursor={first['nextCursor']}")
    assert ids(second) == [created[2]["id"], created[0]["id"]]
    assert second["nextCursor"] is None


# -- the store's filter -----------------------------------------------------------------


def test_store_filter_by_creation_time(client, store, db):
    early = enqueue(client, executeAt=FUTURE)
    middle_at = db.now() + timedelta(milliseconds=5)
    wait_until(lambda: db.now() > middle_at, timeout=5, message="for the clock to move on")
    late = enqueue(client, executeAt=FUTURE)
    assert parse_time(early["createdAt"]) < middle_at <= parse_time(late["createdAt"])

    def listed(**fields):
        return [t.id for t in store.list_tasks(TaskFilter(**fields), 10, None)[0]]

    assert listed(created_after=middle_at) == [late["id"]]
    assert listed(created_before=middle_at) == [early["id"]]
    assert listed(created_after=parse_time(late["createdAt"])) == [late["id"]]  # inclusive
    assert listed(created_before=parse_time(late["createdAt"])) == [early["id"]]  # exclusive
    assert listed(created_before=middle_at, statuses=frozenset({TaskStatus.PENDING})) == [
        early["id"]
    ]
    assert listed(statuses=frozenset()) == []
    assert listed(queue="other") == []
    assert listed(queue="default") == [late["id"], early["id"]]

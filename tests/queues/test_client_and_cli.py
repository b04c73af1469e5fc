"""The client's queue methods and `scheduler queues ...` / `scheduler config --queue`: the
real API served by waitress on loopback (each backend), the real command in a subprocess."""

from __future__ import annotations

import json

import pytest

from scheduler_core.client import Client, Conflict, NotFound, Queue, ValidationError
from tests.api.helpers import FUTURE, NOWHERE
from tests.cli.test_migrate_and_config import table_rows
from tests.client.test_cli_remote import scheduler
from tests.support.processes import run_cli


def test_the_client_creates_reads_changes_pauses_purges_and_removes(api: Client) -> None:
    put = api.put_queue("mail", select_size=7, max_dispatches_per_second=50)
    assert put.created
    assert isinstance(put.queue, Queue)
    assert put.queue.config["select_size"] == 7
    assert put.queue.config["max_dispatches_per_second"] == 50
    assert not api.put_queue("mail", select_size=8).created
    assert api.get_queue("mail").config["max_dispatches_per_second"] == 0  # replaced
    assert [q.name for q in api.list_queues()] == ["default", "mail"]
    assert api.update_queue("mail", max_retries=1).config["max_retries"] == 1
    assert api.pause_queue("mail").paused
    task = api.enqueue(NOWHERE, execute_at=FUTURE, queue="mail")
    assert task.queue == "mail"
    assert api.get_queue("mail").counts["pending"] == 1
    with pytest.raises(Conflict) as conflict:
        api.delete_queue("mail")
    assert conflict.value.details["counts"]["pending"] == 1
    assert api.purge_queue("mail") == 1
    assert not api.resume_queue("mail").paused
    gone = api.delete_queue("mail")
    assert gone.counts["cancelled"] == 1
    with pytest.raises(NotFound):
        api.get_queue("mail")
    with pytest.raises(ValidationError) as refused:
        api.put_queue("mail", select_size=0, bogus=1)
    assert set(refused.value.details) == {"selectSize", "bogus"}
    with pytest.raises(ValidationError) as bad_name:
        api.get_queue("bad name")
    assert list(bad_name.value.details) == ["name"]
    with pytest.raises(Conflict):
        api.delete_queue("default")


def test_cli_queue_commands(base_url: str, api: Client) -> None:
    created = scheduler(base_url, "queues", "create", "mail", "max_dispatches_per_second=50")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created queue mail"
    again = scheduler(base_url, "queues", "create", "mail")
    assert again.returncode == 1 and "exists already" in again.stderr

    listed = scheduler(base_url, "queues", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {row["NAME"]: row for row in table_rows(listed.stdout)}
    assert set(rows) == {"default", "mail"}
    assert (rows["mail"]["STATE"], rows["mail"]["RATE/S"]) == ("running", "50")

    changed = scheduler(base_url, "queues", "set", "mail", "select_size=20", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["selectSize"] == 20

    refused = scheduler(base_url, "queues", "set", "mail", "select_size=0", "max_retries=x")
    assert refused.returncode == 1
    assert "selectSize:" in refused.stderr and "maxRetries:" in refused.stderr
    assert api.get_queue("mail").config["select_size"] == 20
    unknown = scheduler(base_url, "queues", "set", "mail", "bogus=1")
    assert unknown.returncode == 2 and "unknown key 'bogus'" in unknown.stderr

    assert scheduler(base_url, "queues", "pause", "mail").stdout.strip() == "mail  paused"
    shown = scheduler(base_url, "queues", "show", "mail")
    assert "state                      paused" in shown.stdout
    assert "select_size                20" in shown.stdout

    enqueued = scheduler(base_url, "enqueue", NOWHERE, "--at", FUTURE, "--queue", "mail")
    assert enqueued.returncode == 0, enqueued.stderr
    missing = scheduler(base_url, "enqueue", NOWHERE, "--queue", "nope")
    assert missing.returncode == 1 and "No queue named 'nope'" in missing.stderr

    busy = scheduler(base_url, "queues", "delete", "mail")
    assert busy.returncode == 1 and "holds tasks" in busy.stderr
    purged = scheduler(base_url, "queues", "purge", "mail")
    assert purged.stdout.strip() == "cancelled 1 task of mail"
    assert scheduler(base_url, "queues", "resume", "mail").stdout.strip() == "mail  running"
    removed = scheduler(base_url, "queues", "delete", "mail", "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["counts"]["cancelled"] == 1
    nothing = scheduler(base_url, "queues", "show", "mail")
    assert nothing.returncode == 1 and "(not_found)" in nothing.stderr


def test_config_show_and_set_take_a_queue(clean_database: str, store) -> None:
    store.put_queue("mail", {"select_size": 7})
    shown = run_cli(clean_database, "config", "show", "--queue", "mail", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["select_size"] == 7
    changed = run_cli(clean_database, "config", "set", "--queue", "mail", "max_retries=2")
    assert changed.returncode == 0, changed.stderr
    assert "max_retries=2" in changed.stdout.splitlines()
    assert store.get_config("mail").max_retries == 2
    assert store.get_config().max_retries == 5  # the default queue is left alone

    refused = run_cli(clean_database, "config", "set", "--queue", "mail", "select_size=0")
    assert refused.returncode == 2 and "select_size" in refused.stderr
    assert store.get_config("mail").select_size == 7

    for args in (("show",), ("set", "max_retries=1")):
        missing = run_cli(clean_database, "config", *args, "--queue", "nope")
        assert missing.returncode == 1
        assert "no queue named 'nope'" in missing.stderr

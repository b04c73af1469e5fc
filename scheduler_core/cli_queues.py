"""`scheduler queues ...`: named queues on a running server, over its REST API, with the
options, tables, `--json` and error reporting of `scheduler tasks` (cli_remote.py).

Config keys are written as `scheduler config set` takes them (`select_size=50`); the
server validates the values and names every one it refuses (nothing changes then).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from scheduler_core.cli_remote import (
    NAME,
    json_text,
    remote_options,
    safe_text,
    short_time,
    table,
)
from scheduler_core.client import Client, NotFound, Queue
from scheduler_core.client.results import STATUSES
from scheduler_core.runtime_config import BOUNDS

QUEUE_HEADER = ("NAME", "STATE", "PENDING", "RUNNING", "STALE", "DUE", "RATE/S", "CONCURRENCY")


def _limit(value: int) -> str:
    return "-" if value == 0 else str(value)


def _queue_rows(queues: Sequence[Queue]) -> list[list[str]]:
    return [
        [
            q.name,
            "paused" if q.paused else "running",
            str(q.counts.get("pending", 0)),
            str(q.counts.get("running", 0)),
            str(q.counts.get("stale", 0)),
            str(q.due_backlog),
            _limit(int(q.config.get("max_dispatches_per_second", 0))),
            _limit(int(q.config.get("max_concurrent_dispatches", 0))),
        ]
        for q in queues
    ]


def _queue_details(queue: Queue) -> str:
    rows: list[tuple[str, str]] = [
        ("name", queue.name),
        ("state", "paused" if queue.paused else "running"),
        *((key, str(value)) for key, value in queue.config.items()),
        ("tasks", ", ".join(f"{queue.counts.get(s, 0)} {s}" for s in STATUSES)),
        ("due backlog", str(queue.due_backlog)),
        ("created", short_time(queue.created_at)),
        ("updated", short_time(queue.updated_at)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {safe_text(value)}" for name, value in rows)


def _assignments(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE arguments as config changes: known keys only (the error lists them); a
    value that is not an integer is sent as it is, so the server names it and says why."""
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="ASSIGNMENTS")
        if key not in BOUNDS:
            raise click.BadParameter(
                f"unknown key {key!r}; known keys: {', '.join(BOUNDS)}", param_hint="ASSIGNMENTS"
            )
        try:
            changes[key] = int(raw.strip(), 10)
        except ValueError:
            changes[key] = raw
    return changes


def _show(queue: Queue, as_json: bool, line: str | None = None) -> None:
    if as_json:
        click.echo(json_text(queue.raw))
    elif line is not None:
        click.echo(line)
    else:
        click.echo(_queue_details(queue))


@click.group()
def queues() -> None:
    """List, create, configure, pause, resume, purge and remove queues on a running server."""


@queues.command("list")
@remote_options
def queues_list(client: Client, as_json: bool) -> None:
    """Every queue: state, tasks waiting, due backlog and limits (- = none)."""
    found = client.list_queues()
    if as_json:
        click.echo(json_text({"queues": [dict(q.raw) for q in found]}))
    else:
        click.echo(table(QUEUE_HEADER, _queue_rows(found)))


@queues.command("show")
@click.argument("name", type=NAME)
@remote_options
def queues_show(client: Client, as_json: bool, name: str) -> None:
    """Show one queue: its config, state and tasks."""
    _show(client.get_queue(name), as_json)


@queues.command("create")
@click.argument("name", type=NAME)
@click.argument("assignments", nargs=-1)
@remote_options
def queues_create(client: Client, as_json: bool, name: str, assignments: tuple[str, ...]) -> None:
    """Create a queue: scheduler queues create mail max_dispatches_per_second=50

    Keys left out take their defaults. An existing queue is left alone (change it with
    `scheduler queues set`)."""
    config = _assignments(assignments)
    try:
        client.get_queue(name)
    except NotFound:
        pass
    else:
        raise click.ClickException(
            f"queue {safe_text(name)!r} exists already; `scheduler queues set` changes it"
        )
    put = client.put_queue(name, **config)
    _show(put.queue, as_json, f"created queue {safe_text(put.queue.name)}")


@queues.command("set")
@click.argument("name", type=NAME)
@click.argument("assignments", nargs=-1, required=True)
@remote_options
def queues_set(client: Client, as_json: bool, name: str, assignments: tuple[str, ...]) -> None:
    """Change some config keys: scheduler queues set mail select_size=20 max_retries=3"""
    _show(client.update_queue(name, **_assignments(assignments)), as_json)


def _one_queue_command(
    name: str, act: Callable[[Client, str], Queue], done: str, help_text: str
) -> click.Command:
    @click.argument("queue_name", metavar="NAME", type=NAME)
    @remote_options
    def command(client: Client, as_json: bool, queue_name: str) -> None:
        queue = act(client, queue_name)
        _show(queue, as_json, f"{safe_text(queue.name)}  {done}")

    return queues.command(name, help=help_text)(command)


_one_queue_command(
    "pause",
    Client.pause_queue,
    "paused",
    "Pause a queue: its tasks are not claimed (those in flight finish); enqueueing still works.",
)
_one_queue_command("resume", Client.resume_queue, "running", "Resume a paused queue.")
_one_queue_command(
    "delete",
    Client.delete_queue,
    "removed",
    "Remove an empty queue (not `default`, not one holding pending, running or stale "
    "tasks, not one a schedule enqueues into).",
)


@queues.command("purge")
@click.argument("name", type=NAME)
@remote_options
def queues_purge(client: Client, as_json: bool, name: str) -> None:
    """Cancel every pending and stale task of a queue (running ones finish). Sent once."""
    count = client.purge_queue(name)
    if as_json:
        click.echo(json_text({"count": count}))
    else:
        click.echo(f"cancelled {count} task{'s' if count != 1 else ''} of {safe_text(name)}")

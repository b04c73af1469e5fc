"""`scheduler schedules ...`: recurring tasks on a running server, through the REST API
(`scheduler_core.client`), with the options, output and errors of `cli_remote`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from scheduler_core.cli_remote import (
    NAME,
    _parse_payload,
    _print_json,
    _task_details,
    remote_options,
    safe_text,
    short_time,
    table,
)
from scheduler_core.client import Client
from scheduler_core.client.schedules import UNSET, Schedule

SCHEDULE_HEADER = ("NAME", "CRON", "TIME ZONE", "STATE", "NEXT FIRE", "LAST FIRE", "QUEUE", "URL")


def _rows(schedules: list[Schedule]) -> list[list[str]]:
    return [
        [
            s.name,
            s.cron,
            s.timezone,
            "paused" if s.paused else "active",
            short_time(s.next_fire_at),
            short_time(s.last_fire_at),
            s.queue,
            s.webhook_url,
        ]
        for s in schedules
    ]


def _details(schedule: Schedule) -> str:
    rows = [
        ("name", schedule.name),
        ("cron", schedule.cron),
        ("time zone", schedule.timezone),
        ("catch up", schedule.catch_up),
        ("state", "paused" if schedule.paused else "active"),
        ("next fire", short_time(schedule.next_fire_at)),
        ("last fire", short_time(schedule.last_fire_at)),
        ("webhook url", schedule.webhook_url),
        ("queue", schedule.queue),
        (
            "max retries",
            "the config" if schedule.max_retries is None else str(schedule.max_retries),
        ),
        ("created", short_time(schedule.created_at)),
        ("updated", short_time(schedule.updated_at)),
        ("payload", json.dumps(schedule.payload, ensure_ascii=False)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {safe_text(value)}" for name, value in rows)


def _auth(auth: str | None, auth_file: Path | None) -> str | None:
    if auth is not None and auth_file is not None:
        raise click.UsageError("give --auth or --auth-file, not both")
    if auth_file is not None:
        return auth_file.read_text().strip()
    return auth


def _show(schedule: Schedule, as_json: bool, headline: str | None = None) -> None:
    if as_json:
        _print_json(schedule.raw)
    elif headline is not None:
        click.echo(headline)
    else:
        click.echo(_details(schedule))


_AUTH_HELP = "Sent as each callback's Authorization header. Visible in `ps`: prefer --auth-file."
_CATCH_UP = click.Choice(["latest", "none"])


@click.group()
def schedules() -> None:
    """Recurring tasks kept by the server: cron expressions in a time zone."""


@schedules.command("list")
@remote_options
def schedules_list(client: Client, as_json: bool) -> None:
    """List schedules, by name."""
    found = client.list_schedules()
    if as_json:
        _print_json({"schedules": [dict(s.raw) for s in found]})
        return
    if not found:
        click.echo("no schedules", err=True)
        return
    click.echo(table(SCHEDULE_HEADER, _rows(found)))


@schedules.command("show")
@click.argument("name", type=NAME)
@remote_options
def schedules_show(client: Client, as_json: bool, name: str) -> None:
    """Show one schedule."""
    _show(client.get_schedule(name), as_json)


@schedules.command("create")
@click.argument("name", type=NAME)
@click.argument("cron")
@click.argument("webhook_url")
@click.option("--timezone", help="IANA time zone the cron is read in [default: UTC].")
@click.option("--catch-up", type=_CATCH_UP, help="After downtime [default: latest].")
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.option("--auth", help=_AUTH_HELP)
@click.option(
    "--auth-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the Authorization value from this file.",
)
@click.option("--payload", help="JSON delivered in each callback; @file.json or - for stdin.")
@click.option("--queue", help="The queue of its tasks [default: default].")
@click.option("--max-retries", type=click.IntRange(0, 1000), help="Each task's retry budget.")
@remote_options
def schedules_create(
    client: Client,
    as_json: bool,
    name: str,
    cron: str,
    webhook_url: str,
    timezone: str | None,
    catch_up: str | None,
    paused: bool,
    auth: str | None,
    auth_file: Path | None,
    payload: str | None,
    queue: str | None,
    max_retries: int | None,
) -> None:
    """Create schedule NAME: POST WEBHOOK_URL at every fire time of CRON (five fields,
    quoted: '0 3 * * *')."""
    schedule = client.create_schedule(
        name,
        cron,
        webhook_url,
        timezone=timezone,
        catch_up=catch_up,
        paused=paused,
        auth=_auth(auth, auth_file),
        payload=_parse_payload(payload) if payload is not None else UNSET,
        queue=queue,
        max_retries=max_retries,
    )
    _show(
        schedule,
        as_json,
        f"{safe_text(schedule.name)}  created, next fire {short_time(schedule.next_fire_at)}",
    )


@schedules.command("set")
@click.argument("name", type=NAME)
@click.option("--cron", help="A new cron expression (nextFireAt moves to its next time).")
@click.option("--timezone", help="A new IANA time zone.")
@click.option("--catch-up", type=_CATCH_UP, help="latest or none.")
@click.option("--webhook-url", help="A new webhook URL.")
@click.option("--auth", help=_AUTH_HELP)
@click.option(
    "--auth-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the Authorization value from this file.",
)
@click.option("--no-auth", is_flag=True, help="Remove the Authorization value.")
@click.option("--payload", help="JSON delivered in each callback; @file.json or - for stdin.")
@click.option("--queue", help="The queue of its tasks.")
@click.option("--max-retries", type=click.IntRange(0, 1000), help="Each task's retry budget.")
@remote_options
def schedules_set(
    client: Client,
    as_json: bool,
    name: str,
    cron: str | None,
    timezone: str | None,
    catch_up: str | None,
    webhook_url: str | None,
    auth: str | None,
    auth_file: Path | None,
    no_auth: bool,
    payload: str | None,
    queue: str | None,
    max_retries: int | None,
) -> None:
    """Change some fields of schedule NAME."""
    new_auth: Any = _auth(auth, auth_file)
    if no_auth:
        if new_auth is not None:
            raise click.UsageError("give --no-auth or a new value, not both")
    elif new_auth is None:
        new_auth = UNSET
    given = [cron, timezone, catch_up, webhook_url, payload, queue, max_retries]
    if all(v is None for v in given) and new_auth is UNSET and not no_auth:
        raise click.UsageError(
            "name something to change: --cron, --timezone, --catch-up, --webhook-url, --auth, "
            "--no-auth, --payload, --queue or --max-retries"
        )
    schedule = client.update_schedule(
        name,
        cron=cron,
        timezone=timezone,
        catch_up=catch_up,
        webhook_url=webhook_url,
        auth=None if no_auth else new_auth,
        payload=_parse_payload(payload) if payload is not None else UNSET,
        queue=queue,
        max_retries=max_retries if max_retries is not None else UNSET,
    )
    _show(
        schedule,
        as_json,
        f"{safe_text(schedule.name)}  changed, next fire {short_time(schedule.next_fire_at)}",
    )


def _one_schedule_command(
    name: str, act: Callable[[Client, str], Schedule], done: str, help_text: str
) -> click.Command:
    @click.argument("name", type=NAME)
    @remote_options
    def command(client: Client, as_json: bool, name: str) -> None:
        schedule = act(client, name)
        _show(
            schedule,
            as_json,
            f"{safe_text(schedule.name)}  {done}, next fire {short_time(schedule.next_fire_at)}",
        )

    return schedules.command(name, help=help_text)(command)


_one_schedule_command("delete", Client.delete_schedule, "deleted", "Delete a schedule.")
_one_schedule_command("pause", Client.pause_schedule, "paused", "Pause a schedule.")
_one_schedule_command(
    "resume",
    Client.resume_schedule,
    "resumed",
    "Resume a paused schedule from its next fire time (paused time is not caught up).",
)


@schedules.command("trigger")
@click.argument("name", type=NAME)
@remote_options
def schedules_trigger(client: Client, as_json: bool, name: str) -> None:
    """Enqueue one run of schedule NAME's task now. Sent once."""
    task = client.trigger_schedule(name)
    if as_json:
        _print_json(task.raw)
    else:
        click.echo(_task_details(task))

"""`scheduler export` and `scheduler import`: move tasks, queues (with their runtime
config) and schedules from one database to another (SQLite to PostgreSQL, say), ids and
idempotency keys kept.

The file format is scheduler_core.transfer's. It holds every webhookAuth in clear (the two
databases may seal them with different SCHEDULER_ENCRYPTION_KEY keys), so export creates it
readable by its owner only, and says so.

What import does with what is there already: a task with the same id, a queue or a
schedule with the same name is left as it is and counted (so an interrupted import can be
run again); `--config` replaces the config of the queues already here with the exported
one. A pending, running or stale task, or a schedule, whose queue is neither in the file
nor in this database is refused before anything is written: creating that queue with the
defaults (no rate limit, say) could let loose what its source held back. A resolved or
cancelled task may name a queue that no longer exists (deleting a queue keeps them): it
comes in as it is.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

import click

from scheduler_core.encryption import AuthCipher, reveal
from scheduler_core.models import TaskStatus
from scheduler_core.runtime_config import ConfigError
from scheduler_core.settings import Settings
from scheduler_core.store import Store, StoreError
from scheduler_core.transfer import (
    FINISHED_STATUSES,
    LIVE_STATUSES,
    ExportedSchedule,
    ExportedTask,
    ExportFileError,
    ExportHeader,
    ImportResult,
    header_line,
    read_header,
    read_tasks,
    task_line,
    trailer_line,
)

DEFAULT_BATCH = 500
_STATUS_ORDER = [s for s in TaskStatus]

database_url_option = click.option(
    "--database-url",
    envvar="SCHEDULER_DATABASE_URL",
    default=None,
    help="postgresql://user@host/db or sqlite:///path.db [env SCHEDULER_DATABASE_URL]",
)
batch_size_option = click.option(
    "--batch-size",
    default=DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Tasks read or written per database round trip.",
)


def _open(database_url: str | None, create: bool) -> tuple[Settings, Store]:
    """The settings, and the database they name, migrated; never a new SQLite file unless
    `create` (cli.open_database prints which database it is)."""
    from scheduler_core.cli import _settings, open_database

    settings = _settings(database_url)
    return settings, open_database(settings, create, pool_size=2)


def _quantity(count: int, noun: str, plural: str | None = None) -> str:
    """`1 task`, `2 tasks`: `count` with `noun` in the number it takes."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _counts_text(
    counts: Counter[TaskStatus] | dict[TaskStatus, int],
    statuses: frozenset[TaskStatus] | None = None,
) -> str:
    """`3 pending, 0 running, ...`: every status, or those in `statuses`."""
    shown = [s for s in _STATUS_ORDER if statuses is None or s in statuses]
    return ", ".join(f"{counts.get(s, 0)} {s.value}" for s in shown)


# -- export ----------------------------------------------------------------------------------


@click.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="File to create (mode 0600; an existing file is not overwritten); - for stdout.",
)
@click.option(
    "--include-finished",
    is_flag=True,
    help="Export resolved and cancelled tasks too (by default: pending, running and stale).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Export even while tasks are running (they are imported pending: delivered again).",
)
@batch_size_option
@database_url_option
def export_command(
    output: str, include_finished: bool, force: bool, batch_size: int, database_url: str | None
) -> None:
    """Write every queue (its runtime config and pause state), every schedule and every
    pending, running and stale task to a file, as JSON Lines, for `scheduler import` into
    another database.

    Stop `scheduler serve` and every `scheduler worker` on this database first: export
    refuses while tasks are running (a dispatcher is delivering them) unless --force. The
    file holds each task's webhookAuth in clear: keep it private and delete it after the
    import."""
    settings, store = _open(database_url, create=False)
    try:
        statuses = LIVE_STATUSES | (FINISHED_STATUSES if include_finished else frozenset())
        _drain_check(store, force)
        cipher = AuthCipher(settings.encryption_keys) if settings.encryption_keys else None
        with _output(output) as (stream, shown_name):
            written = _write_export(store, stream, statuses, cipher, batch_size)
            if written.unreadable_tasks or written.unreadable_schedules:
                raise _Unreadable(written.unreadable_tasks, written.unreadable_schedules)
    except _Unreadable as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"exported {_quantity(sum(written.tasks.values()), 'task')} "
        f"({_counts_text(written.tasks, statuses)}), {_quantity(written.queues, 'queue')} "
        f"with their runtime config and {_quantity(written.schedules, 'schedule')} "
        f"to {shown_name}",
        err=True,
    )
    click.echo(
        "The export holds every webhookAuth in clear"
        + (" (the file is readable by its owner only)" if output != "-" else "")
        + ": move it privately, and delete it once imported.",
        err=True,
    )


class _Unreadable(Exception):
    def __init__(self, ids: list[str], schedules: list[str]):
        which = [
            f"{'task' if len(names) == 1 else kind + 's'} {_first_ten(names)}"
            for kind, names in (("task", ids), ("schedule", schedules))
            if names
        ]
        values = _quantity(len(ids) + len(schedules), "stored webhookAuth value")
        super().__init__(
            f"nothing exported: {values} cannot be opened with SCHEDULER_ENCRYPTION_KEY "
            f"({'; '.join(which)}); set it to the key list the server on this database uses"
        )


def _first_ten(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _drain_check(store: Store, force: bool) -> None:
    """Print the tasks by status; refuse while some are running, unless `force`."""
    counts = store.export_counts()
    click.echo(f"tasks: {_counts_text(dict(counts.by_status))}", err=True)
    running = counts.by_status.get(TaskStatus.RUNNING, 0)
    if not running:
        return
    expired = ""
    if counts.expired_leases and running == 1:
        expired = " (its lease has expired: its dispatcher is gone)"
    elif counts.expired_leases:
        gone = "its dispatcher is" if counts.expired_leases == 1 else "their dispatchers are"
        expired = f" ({counts.expired_leases} of them with an expired lease: {gone} gone)"
    if not force:
        one = running == 1
        raise click.ClickException(
            f"{_quantity(running, 'task')} {'is' if one else 'are'} running{expired}: a server "
            "or worker may still be delivering on this database. Stop `scheduler serve` and "
            "every `scheduler worker` (SIGTERM lets deliveries in flight finish) and export "
            f"again. --force exports {'it' if one else 'them'} anyway: "
            f"{'it comes' if one else 'they come'} in pending and "
            f"{'is' if one else 'are'} delivered again "
            f"({'its' if one else 'their'} attempt counts as lost)."
        )
    click.echo(
        f"warning: exporting {_quantity(running, 'running task')}{expired} (--force): "
        f"{'it is' if running == 1 else 'they are'} imported pending and will be delivered "
        "again",
        err=True,
    )


@contextmanager
def _output(path: str) -> Iterator[tuple[IO[str], str]]:
    """The stream to write, and its name for messages. A file is created 0600 and must not
    exist; it is removed again when the export fails."""
    if path == "-":
        yield sys.stdout, "stdout"
        sys.stdout.flush()
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(
            f"{path} exists already: remove it or choose another file"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot create {path}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # whatever the umask said
    ok = False
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as stream:
            yield stream, path
            stream.flush()
            os.fsync(stream.fileno())
        ok = True
    finally:
        if not ok:
            os.unlink(path)


@dataclass
class _Written:
    tasks: Counter[TaskStatus] = field(default_factory=Counter)
    queues: int = 0
    schedules: int = 0
    unreadable_tasks: list[str] = field(default_factory=list)  # ids no configured key opens
    unreadable_schedules: list[str] = field(default_factory=list)  # names


def _write_export(
    store: Store,
    stream: IO[str],
    statuses: frozenset[TaskStatus],
    cipher: AuthCipher | None,
    batch_size: int,
) -> _Written:
    """Write header (queues, schedules), tasks and trailer; say what was written and which
    webhookAuth values no configured key opens."""
    written = _Written()
    queues = store.export_queues()
    schedules: list[tuple[ExportedSchedule, str | None]] = []
    for schedule in store.export_schedules():
        auth, problem = reveal(schedule.webhook_auth, cipher)
        if problem is not None:
            written.unreadable_schedules.append(schedule.name)
            continue
        schedules.append((schedule, auth))
    stream.write(header_line(store.dialect, statuses, queues, schedules))
    written.queues, written.schedules = len(queues), len(schedules)
    for task in store.export_tasks(statuses, batch_size):
        auth, problem = reveal(task.webhook_auth, cipher)
        if problem is not None:
            written.unreadable_tasks.append(task.id)
            continue
        stream.write(task_line(task, auth))
        written.tasks[task.status] += 1
    stream.write(trailer_line(sum(written.tasks.values())))
    return written


# -- import ----------------------------------------------------------------------------------


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--config",
    "replace_config",
    is_flag=True,
    help="Replace the runtime config of the queues already in this database (default "
    "included) with the exported one. Queues this database lacks are created with theirs.",
)
@click.option("--create", is_flag=True, help="Create the SQLite file if it does not exist.")
@batch_size_option
@database_url_option
def import_command(
    file: str, replace_config: bool, create: bool, batch_size: int, database_url: str | None
) -> None:
    """Load a `scheduler export` file into this database (SCHEDULER_DATABASE_URL).

    The whole file is checked first: a bad line or a file cut short imports nothing. Queues
    and schedules this database lacks are created as exported (config, pause state, fire
    times); those here already are left as they are (--config replaces the queues' config).
    A live task or a schedule whose queue is neither in the file nor here is refused, and
    nothing is imported. Tasks keep their ids, queues and idempotency keys; a task already
    here (same id) is skipped and counted, so an interrupted import can be run again. Tasks
    exported running come in pending. webhookAuth is sealed with this process's
    SCHEDULER_ENCRYPTION_KEY, if set. Each batch of --batch-size tasks is one transaction.
    Files written by earlier versions (format 1, before queues) import into `default`."""
    with _input(file) as stream:
        header, contents = _check_file(stream)
        settings, store = _open(database_url, create=create)
        try:
            _check_queues(store, header, contents)
            created_queues = store.import_queues(header.queues)
            created_schedules = store.import_schedules(header.schedules)
            stream.seek(0)
            stream.readline()  # the header, read already
            result = _import_batches(store, stream, batch_size)
            kept = [q for q in header.queues if q.name not in created_queues]
            if replace_config:
                for queue in kept:
                    store.update_config(dict(queue.columns), queue=queue.name)
        except ExportFileError as exc:
            raise click.ClickException(f"{file}: {exc}") from None
        except ConfigError as exc:
            raise click.ClickException(f"the config was not replaced: {exc}") from None
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            store.close()
    _report_import(result, contents.by_status, settings)
    _report_setup(
        header,
        created_queues,
        [q.name for q in kept],
        created_schedules,
        replace_config,
    )


@dataclass
class _FileContents:
    by_status: Counter[TaskStatus] = field(default_factory=Counter)
    # queue -> (line of its first live task, live tasks in it): the queues that must exist
    live_queues: dict[str, tuple[int, int]] = field(default_factory=dict)


def _check_queues(store: Store, header: ExportHeader, contents: _FileContents) -> None:
    """Refuse, before anything is written, live tasks and schedules whose queue is neither
    in the file nor in this database."""
    in_file = {q.name for q in header.queues}
    wanted: dict[str, list[str]] = {}
    for name, (line, count) in contents.live_queues.items():
        if name not in in_file:
            wanted.setdefault(name, []).append(
                f"{_quantity(count, 'live task')}, the first on line {line}"
            )
    for schedule in header.schedules:
        if schedule.queue not in in_file:
            wanted.setdefault(schedule.queue, []).append(f"schedule {schedule.name}")
    missing = sorted(set(wanted) - store.existing_queues(set(wanted))) if wanted else []
    if missing:
        shown = "; ".join(f"{name!r} ({', '.join(wanted[name])})" for name in missing)
        raise click.ClickException(
            f"nothing imported: {_quantity(len(missing), 'queue')} neither in the file nor "
            f"in this database: {shown}. Create {'it' if len(missing) == 1 else 'them'} here "
            "first (PUT /api/v1/queues/NAME, or `scheduler queues`), then import again"
        )


@contextmanager
def _input(path: str) -> Iterator[IO[str]]:
    """The file, seekable: standard input is copied to a private temporary file first."""
    if path != "-":
        try:
            stream = open(path, encoding="utf-8", newline="\n")  # noqa: SIM115
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
        with stream:
            yield stream
        return
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n") as spool:  # 0600
        shutil.copyfileobj(sys.stdin, spool)
        spool.seek(0)
        yield spool


def _check_file(stream: IO[str]) -> tuple[ExportHeader, _FileContents]:
    """Read the whole file once: header, every task line, the end line. Nothing is written
    unless all of it is sound."""
    contents = _FileContents()
    try:
        header = read_header(stream.readline())
        for number, task in read_tasks(stream):
            contents.by_status[task.status] += 1
            if task.status in LIVE_STATUSES:
                line, count = contents.live_queues.get(task.queue, (number, 0))
                contents.live_queues[task.queue] = (line, count + 1)
    except ExportFileError as exc:
        raise click.ClickException(f"nothing imported: {exc}") from None
    except UnicodeDecodeError:
        raise click.ClickException("nothing imported: the file is not UTF-8 text") from None
    by_status = contents.by_status
    click.echo(
        f"file: {_quantity(sum(by_status.values()), 'task')} ({_counts_text(by_status)}), "
        f"{_quantity(len(header.queues), 'queue')} and "
        f"{_quantity(len(header.schedules), 'schedule')} exported from {header.dialect}"
        + (" (format version 1: every task in `default`)" if header.version == 1 else ""),
        err=True,
    )
    return header, contents


def _import_batches(store: Store, stream: IO[str], batch_size: int) -> ImportResult:
    total = ImportResult()
    batch: list[ExportedTask] = []
    batches = 0

    def flush() -> None:
        nonlocal batches
        result = store.import_tasks(batch)
        total.created += result.created
        total.present += result.present
        total.key_taken += result.key_taken
        batch.clear()
        batches += 1
        if batches % 20 == 0:
            done = len(total.created) + len(total.present) + len(total.key_taken)
            click.echo(f"... {_quantity(done, 'task')} written", err=True)

    for _number, task in read_tasks(stream):
        batch.append(task)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return total


def _report_import(
    result: ImportResult,
    by_status: Counter[TaskStatus],
    settings: Settings,
) -> None:
    click.echo(
        f"imported {_quantity(len(result.created), 'task')}; {len(result.present)} already here "
        "(same id), skipped",
        err=True,
    )
    moved = by_status.get(TaskStatus.RUNNING, 0)
    if moved:
        click.echo(
            f"{_quantity(moved, 'task')} exported running came in pending: "
            f"{'it' if moved == 1 else 'they'} will be delivered again",
            err=True,
        )
    taken = len(result.key_taken)
    if taken:
        shown = ", ".join(result.key_taken[:10])
        more = f" and {taken - 10} more" if taken > 10 else ""
        click.echo(
            f"warning: {_quantity(taken, 'task')} skipped: another task here holds "
            f"{'its' if taken == 1 else 'their'} idempotency key "
            f"({'task' if taken == 1 else 'tasks'} {shown}{more})",
            err=True,
        )
    if not settings.encryption_keys and result.created:
        click.echo(
            "note: SCHEDULER_ENCRYPTION_KEY is not set: webhookAuth values are stored as "
            "given, unencrypted",
            err=True,
        )


def _names(names: list[str]) -> str:
    return f" ({_first_ten(names)})" if names else ""


def _report_setup(
    header: ExportHeader,
    created_queues: list[str],
    kept_queues: list[str],
    created_schedules: list[str],
    replaced_config: bool,
) -> None:
    click.echo(
        f"queues: {len(created_queues)} created{_names(created_queues)}, "
        f"{len(kept_queues)} already here{_names(kept_queues)}",
        err=True,
    )
    if kept_queues:
        click.echo(
            "runtime config replaced with the exported one for the queues already here"
            if replaced_config
            else "runtime config of the queues already here left as it is (--config replaces "
            "it with the exported one)",
            err=True,
        )
    if header.schedules:
        kept = [s.name for s in header.schedules if s.name not in created_schedules]
        click.echo(
            f"schedules: {len(created_schedules)} created{_names(created_schedules)}, "
            f"{len(kept)} already here{_names(kept)}, left as "
            f"{'it is' if len(kept) == 1 else 'they are'}",
            err=True,
        )

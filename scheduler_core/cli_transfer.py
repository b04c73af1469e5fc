"""`scheduler export` and `scheduler import`: move tasks and the runtime config from one
database to another (SQLite to PostgreSQL, say), ids and idempotency keys kept.

The file format is scheduler_core.transfer's. It holds every webhookAuth in clear (the two
databases may seal them with different SCHEDULER_ENCRYPTION_KEY keys), so export creates it
readable by its owner only, and says so.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
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
    ExportedTask,
    ExportFileError,
    ExportHeader,
    ImportResult,
    config_columns,
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
    """Write the runtime config and every pending, running and stale task to a file, as
    JSON Lines, for `scheduler import` into another database.

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
            exported, unreadable = _write_export(store, stream, statuses, cipher, batch_size)
            if unreadable:
                raise _Unreadable(unreadable)
    except _Unreadable as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"exported {_quantity(sum(exported.values()), 'task')} "
        f"({_counts_text(exported, statuses)}) and "
        f"the runtime config to {shown_name}",
        err=True,
    )
    click.echo(
        "The export holds every webhookAuth in clear"
        + (" (the file is readable by its owner only)" if output != "-" else "")
        + ": move it privately, and delete it once imported.",
        err=True,
    )


class _Unreadable(Exception):
    def __init__(self, ids: list[str]):
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        values = _quantity(len(ids), "stored webhookAuth value")
        super().__init__(
            f"nothing exported: {values} cannot be opened with SCHEDULER_ENCRYPTION_KEY "
            f"({'task' if len(ids) == 1 else 'tasks'} {shown}); set it to the key list the "
            "server on this database uses"
        )


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


def _write_export(
    store: Store,
    stream: IO[str],
    statuses: frozenset[TaskStatus],
    cipher: AuthCipher | None,
    batch_size: int,
) -> tuple[Counter[TaskStatus], list[str]]:
    """Write header, tasks and trailer; return the tasks written by status and the ids of
    those whose webhookAuth no configured key opens."""
    stream.write(header_line(store.dialect, statuses, store.get_config()))
    exported: Counter[TaskStatus] = Counter()
    unreadable: list[str] = []
    for task in store.export_tasks(statuses, batch_size):
        auth, problem = reveal(task.webhook_auth, cipher)
        if problem is not None:
            unreadable.append(task.id)
            continue
        stream.write(task_line(task, auth))
        exported[task.status] += 1
    stream.write(trailer_line(sum(exported.values())))
    return exported, unreadable


# -- import ----------------------------------------------------------------------------------


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--config",
    "replace_config",
    is_flag=True,
    help="Replace this database's runtime config with the exported one.",
)
@click.option("--create", is_flag=True, help="Create the SQLite file if it does not exist.")
@batch_size_option
@database_url_option
def import_command(
    file: str, replace_config: bool, create: bool, batch_size: int, database_url: str | None
) -> None:
    """Load a `scheduler export` file into this database (SCHEDULER_DATABASE_URL).

    The whole file is checked first: a bad line or a file cut short imports nothing. Tasks
    keep their ids and idempotency keys; a task already here (same id) is skipped and
    counted, so an interrupted import can be run again. Tasks exported running come in
    pending. webhookAuth is sealed with this process's SCHEDULER_ENCRYPTION_KEY, if set.
    Each batch of --batch-size tasks is one transaction."""
    with _input(file) as stream:
        header, by_status = _check_file(stream)
        settings, store = _open(database_url, create=create)
        try:
            columns = config_columns(header, store.get_config()) if replace_config else None
            stream.seek(0)
            stream.readline()  # the header, read already
            result = _import_batches(store, stream, batch_size)
            if columns is not None:
                store.update_config(columns)
        except ExportFileError as exc:
            raise click.ClickException(f"{file}: {exc}") from None
        except ConfigError as exc:
            raise click.ClickException(f"the config was not replaced: {exc}") from None
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            store.close()
    _report_import(result, by_status, replace_config, settings)


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


def _check_file(stream: IO[str]) -> tuple[ExportHeader, Counter[TaskStatus]]:
    """Read the whole file once: header, every task line, the end line. Nothing is written
    unless all of it is sound."""
    try:
        header = read_header(stream.readline())
        by_status: Counter[TaskStatus] = Counter()
        for _number, task in read_tasks(stream):
            by_status[task.status] += 1
    except ExportFileError as exc:
        raise click.ClickException(f"nothing imported: {exc}") from None
    except UnicodeDecodeError:
        raise click.ClickException("nothing imported: the file is not UTF-8 text") from None
    click.echo(
        f"file: {_quantity(sum(by_status.values()), 'task')} ({_counts_text(by_status)}) "
        "exported from "
        f"{header.dialect}",
        err=True,
    )
    return header, by_status


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
    replaced_config: bool,
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
    click.echo(
        "runtime config replaced with the exported one"
        if replaced_config
        else "runtime config left as it is (--config replaces it with the exported one)",
        err=True,
    )
    if not settings.encryption_keys and result.created:
        click.echo(
            "note: SCHEDULER_ENCRYPTION_KEY is not set: webhookAuth values are stored as "
            "given, unencrypted",
            err=True,
        )

"""The `scheduler` command: serve, worker, migrate, config, plugins."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import click

from scheduler_core import __version__, cli_queues, cli_remote
from scheduler_core.logs import setup_logging
from scheduler_core.models import DEFAULT_QUEUE
from scheduler_core.plugin_manager import PluginLoadError, PluginManager
from scheduler_core.redaction import MASK, masked_url
from scheduler_core.runtime_config import BOUNDS, ConfigError, RuntimeConfig, validate_changes
from scheduler_core.serving import create_server, drain, stop_listening
from scheduler_core.settings import (
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_DELIVERY_THREADS,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_METRICS_HOST,
    DEFAULT_READ_TIMEOUT_S,
    MAX_CONNECTION_LIMIT,
    MAX_DELIVERY_THREADS,
    MAX_TIMEOUT_S,
    Settings,
    listening_url,
    public_url_is_set,
)
from scheduler_core.store import Store, StoreError, open_store
from scheduler_core.store.base import QueueNotFound

log = logging.getLogger("scheduler_core.cli")

API_DRAIN_SECONDS = 5.0

delivery_threads_option = click.option(
    "--delivery-threads",
    type=click.IntRange(1, MAX_DELIVERY_THREADS),
    default=None,
    help=f"Callbacks in flight at once, at most [env SCHEDULER_DELIVERY_THREADS; "
    f"default {DEFAULT_DELIVERY_THREADS}]",
)

database_url_option = click.option(
    "--database-url",
    envvar="SCHEDULER_DATABASE_URL",
    default=None,
    help="postgresql://user@host/db or sqlite:///path.db [env SCHEDULER_DATABASE_URL]",
)


def _settings(database_url: str | None, delivery_threads: int | None = None) -> Settings:
    try:
        settings = Settings.from_env(database_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if delivery_threads is not None:  # a flag overrides the environment
        settings = dataclasses.replace(settings, delivery_threads=delivery_threads)
    return settings


def _plugins(settings: Settings) -> PluginManager:
    try:
        return PluginManager(settings)
    except PluginLoadError as exc:
        raise click.ClickException(str(exc)) from None


def _open_migrated_store(
    settings: Settings, pool_size: int, applied: list[str] | None = None
) -> Store:
    """The store, migrated; the names of the migrations this applied are added to
    `applied` when given."""
    try:
        store = open_store(
            settings.database_url, pool_size=pool_size, encryption_keys=settings.encryption_keys
        )
        names = store.migrate()
    except (StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if applied is not None:
        applied.extend(names)
    return store


def open_database(
    settings: Settings, create: bool, pool_size: int = 1, applied: list[str] | None = None
) -> Store:
    """The migrated store for commands that open the database themselves (`migrate`,
    `config`, `rotate-key`, `export`/`import`), where a wrong working directory or a
    missing SCHEDULER_DATABASE_URL would otherwise go unnoticed.

    A SQLite file that does not exist is created only when `create` is True (the
    command's `--create`); otherwise nothing is created and click.ClickException says
    which file was looked for and how to go on. Once the database is open and migrated,
    prints ``database: <URL, password masked>`` to stderr, so every successful run says
    which database it used (an error stays one line). ClickException for a database
    that cannot be opened, as `_open_migrated_store`; the migrations applied are added
    to `applied` when given.
    """
    url = settings.database_url
    if url.lower().startswith("sqlite"):
        from scheduler_core.store.sqlite import sqlite_path

        try:
            path = os.path.abspath(sqlite_path(url))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        if not os.path.exists(path) and not create:
            folder = os.path.dirname(path)
            missing = "" if os.path.isdir(folder) else f" (and {folder} is missing)"
            raise click.ClickException(
                f"no SQLite database at {path}{missing}; nothing was created. Point "
                "SCHEDULER_DATABASE_URL or --database-url at the server's database, or "
                "add --create to make a new one there."
            )
    store = _open_migrated_store(settings, pool_size=pool_size, applied=applied)
    click.echo(f"database: {shown_database_url(url)}", err=True)
    return store


def shown_database_url(url: str) -> str:
    """`url` for an operator's eyes: the password and query values masked, the user kept;
    a SQLite URL followed by the absolute path of its file."""
    if url.lower().startswith("sqlite"):
        from scheduler_core.store.sqlite import sqlite_path

        return f"{masked_url(url)} ({os.path.abspath(sqlite_path(url))})"
    shown = masked_url(url)
    userinfo = url.partition("://")[2].split("/", 1)[0].rpartition("@")[0]
    if userinfo:
        user, colon, _password = userinfo.partition(":")
        shown = shown.replace(f"{MASK}@", f"{user}:{MASK}@" if colon else f"{user}@", 1)
    return shown


class _StopRequested(KeyboardInterrupt):
    """Raised in the main thread by the first SIGTERM/SIGINT to leave the server loop.

    A KeyboardInterrupt because waitress's loop lets only that and SystemExit out of its
    socket handlers: any other exception raised while it is serving a request is logged
    and swallowed, and the server would go on serving with its dispatcher stopped.
    """


def _install_signal_handlers(on_first_signal: Callable[[int], None]) -> None:
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            log.warning("second signal: exiting at once; unfinished leases will expire")
            os._exit(128 + signum)
        log.info(
            "signal %s: no new claims, finishing deliveries in flight", signal.Signals(signum).name
        )
        on_first_signal(signum)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group()
@click.version_option(__version__, prog_name="scheduler")
@click.option(
    "--log-level",
    envvar="SCHEDULER_LOG_LEVEL",
    default="INFO",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def cli(log_level: str) -> None:
    """scheduler-core: a self-hosted HTTP callback scheduler."""
    setup_logging(log_level)


@cli.command()
@click.option("--host", envvar="SCHEDULER_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    envvar="SCHEDULER_PORT",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
)
@click.option(
    "--threads",
    envvar="SCHEDULER_THREADS",
    default=8,
    show_default=True,
    type=click.IntRange(1, 512),
    help="HTTP worker threads",
)
@click.option(
    "--connection-limit",
    type=click.IntRange(1, MAX_CONNECTION_LIMIT),
    default=None,
    help="Open client connections at most; when full, the longest-idle or slowest one is "
    f"closed for a newcomer [env SCHEDULER_CONNECTION_LIMIT; default {DEFAULT_CONNECTION_LIMIT}]",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0, MAX_TIMEOUT_S, min_open=True),
    default=None,
    help="Seconds before a connection with nothing in progress is closed "
    f"[env SCHEDULER_IDLE_TIMEOUT_S; default {DEFAULT_IDLE_TIMEOUT_S:g}]",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(0, MAX_TIMEOUT_S, min_open=True),
    default=None,
    help="Seconds a client may take to send one request, head and body, from its first "
    f"byte; then 408 [env SCHEDULER_READ_TIMEOUT_S; default {DEFAULT_READ_TIMEOUT_S:g}]",
)
@click.option("--no-dispatcher", is_flag=True, help="Serve the API only; deliver nothing.")
@delivery_threads_option
@database_url_option
def serve(
    host: str,
    port: int,
    threads: int,
    connection_limit: int | None,
    idle_timeout: float | None,
    read_timeout: float | None,
    no_dispatcher: bool,
    delivery_threads: int | None,
    database_url: str | None,
) -> None:
    """Serve the HTTP API, with the dispatcher in the same process."""
    from scheduler_core.api import create_app
    from scheduler_core.dispatcher import Dispatcher

    settings = _settings(database_url, delivery_threads)
    settings = dataclasses.replace(  # flags override the environment
        settings,
        connection_limit=connection_limit or settings.connection_limit,
        idle_timeout_s=idle_timeout or settings.idle_timeout_s,
        read_timeout_s=read_timeout or settings.read_timeout_s,
    )
    plugins = _plugins(settings)
    # API threads, plus the dispatcher's loop, recorder and retention.
    store = _open_migrated_store(settings, pool_size=threads + 4)
    app = create_app(settings, store=store, plugins=plugins, listen_host=host)
    dispatcher = (
        None
        if no_dispatcher
        else Dispatcher(store, plugins, delivery_threads=settings.delivery_threads)
    )
    try:
        server: Any = create_server(
            app, settings, host, port, threads, ident=f"scheduler-core/{__version__}"
        )
    except (OSError, ValueError) as exc:  # port taken, host not an address of this machine
        store.close()
        reason = getattr(exc, "strerror", None) or exc
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None

    def first_signal(_signum: int) -> None:
        if dispatcher is not None:
            dispatcher.request_stop()
        raise _StopRequested

    _install_signal_handlers(first_signal)
    if not settings.api_keys and not _is_loopback(host):
        log.warning(
            "SCHEDULER_API_KEYS is not set and the API listens on %s: anyone who "
            "can reach it can enqueue callbacks",
            host,
        )
    if not public_url_is_set():  # the completion URLs lead back here: --host, --port, 0
        plugins.public_url = listening_url(host, server.effective_port)
    if dispatcher is not None:
        dispatcher.start()
    log.info("listening on http://%s:%s", host, server.effective_port)
    try:
        server.run()
    except _StopRequested:
        pass
    finally:
        stop_listening(server)  # new clients are refused rather than left waiting
        drain(server, timeout=API_DRAIN_SECONDS)
        if dispatcher is not None:
            dispatcher.stop(wait=True)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=API_DRAIN_SECONDS)
        server.close()
        store.close()
        log.info("stopped")


@cli.command()
@delivery_threads_option
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus /metrics on this port (0: any free one, logged) "
    "[env SCHEDULER_METRICS_PORT; default: none]",
)
@click.option(
    "--metrics-host",
    default=None,
    help="The address /metrics listens on [env SCHEDULER_METRICS_HOST; "
    f"default {DEFAULT_METRICS_HOST}]",
)
@database_url_option
def worker(
    delivery_threads: int | None,
    metrics_port: int | None,
    metrics_host: str | None,
    database_url: str | None,
) -> None:
    """Run the dispatcher alone, to scale delivery out."""
    from scheduler_core.dispatcher import Dispatcher
    from scheduler_core.metrics_server import MetricsServer

    settings = _settings(database_url, delivery_threads)
    settings = dataclasses.replace(  # flags override the environment
        settings,
        metrics_port=settings.metrics_port if metrics_port is None else metrics_port,
        metrics_host=metrics_host or settings.metrics_host,
    )
    plugins = _plugins(settings)
    # The dispatcher's loop, recorder and retention, and a scrape's read.
    store = _open_migrated_store(settings, pool_size=5)
    metrics_server = None
    if settings.metrics_port is not None:
        plugins.metrics.read_database(store)
        try:
            metrics_server = MetricsServer(
                plugins.metrics, settings, settings.metrics_host, settings.metrics_port
            )
        except (OSError, ValueError) as exc:
            store.close()
            reason = getattr(exc, "strerror", None) or exc
            raise click.ClickException(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: {reason}"
            ) from None
    dispatcher = Dispatcher(store, plugins, delivery_threads=settings.delivery_threads)
    stop = threading.Event()

    def first_signal(_signum: int) -> None:
        dispatcher.request_stop()
        stop.set()

    _install_signal_handlers(first_signal)
    if metrics_server is not None:
        metrics_server.start()
        log.info("metrics on %s", metrics_server.url)
    dispatcher.start()
    log.info("worker running")
    while not stop.wait(0.5):
        pass
    dispatcher.stop(wait=True)
    if metrics_server is not None:  # scraped until the last delivery is counted
        metrics_server.close()
    store.close()
    log.info("stopped")


create_option = click.option(
    "--create",
    is_flag=True,
    help="Create the SQLite database file when there is none (else: refuse).",
)


@cli.command()
@create_option
@database_url_option
def migrate(create: bool, database_url: str | None) -> None:
    """Bring the database schema up to date."""
    settings = _settings(database_url)
    applied: list[str] = []
    store = open_database(settings, create, applied=applied)
    store.close()
    if applied:
        count = f"{len(applied)} migration{'s' if len(applied) != 1 else ''}"
        click.echo(f"applied {count}: {', '.join(applied)}; schema is up to date")
    else:
        click.echo("schema is up to date")


@cli.group()
def config() -> None:
    """Read and change the runtime configuration."""


queue_option = click.option(
    "--queue",
    default=DEFAULT_QUEUE,
    show_default=True,
    help="The queue whose row to read or change.",
)


def _queue_config(store: Store, queue: str) -> RuntimeConfig:
    try:
        return store.get_config(queue)
    except QueueNotFound:
        raise click.ClickException(
            f"no queue named {queue!r}; `scheduler queues list` shows them, "
            "`scheduler queues create` makes one"
        ) from None


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@queue_option
@create_option
@database_url_option
def config_show(as_json: bool, queue: str, create: bool, database_url: str | None) -> None:
    """Print the runtime configuration (the default queue's, or --queue's), one
    KEY=VALUE a line."""
    store = open_database(_settings(database_url), create)
    try:
        _print_config(_queue_config(store, queue).as_dict(), as_json)
    finally:
        store.close()


@config.command("set")
@click.argument("assignments", nargs=-1, required=True)
@queue_option
@create_option
@database_url_option
def config_set(
    assignments: tuple[str, ...], queue: str, create: bool, database_url: str | None
) -> None:
    """Change settings: scheduler config set base_interval_ms=500 select_size=50
    (of the default queue, or of --queue)."""
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="ASSIGNMENTS")
        try:
            changes[key.strip()] = int(raw.strip(), 10)
        except ValueError:
            changes[key.strip()] = raw  # validation names the key and says why
    store = open_database(_settings(database_url), create)
    try:
        columns = validate_changes(_queue_config(store, queue), changes, camel=False)
        updated = store.update_config(columns, queue=queue)
    except ConfigError as exc:
        lines = [f"  {key}: {' '.join(reasons)}" for key, reasons in exc.details.items()]
        raise click.UsageError("nothing changed:\n" + "\n".join(lines)) from None
    except QueueNotFound:  # removed since it was read
        raise click.ClickException(f"no queue named {queue!r}; nothing changed") from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    _print_config(updated.as_dict(), as_json=False)


def _print_config(values: dict[str, int], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    for key in BOUNDS:
        click.echo(f"{key}={values[key]}")


@cli.command("rotate-key")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Rows re-encrypted per transaction.",
)
@database_url_option
def rotate_key(batch_size: int, database_url: str | None) -> None:
    """Encrypt every stored webhookAuth, of tasks and of schedules, with the first
    SCHEDULER_ENCRYPTION_KEY key.

    Values sealed with another configured key are re-encrypted, plaintext ones (stored
    before a key was set) encrypted. Safe while servers and workers run, once every one of
    them holds the same key list."""
    from scheduler_core.encryption import AuthCipher, RotationResult, rotate, rotate_schedules

    settings = _settings(database_url)
    if not settings.encryption_keys:
        raise click.ClickException("SCHEDULER_ENCRYPTION_KEY is not set: no key to encrypt with")
    store = open_database(settings, create=False)
    last_report = [0]

    def progress(result: RotationResult) -> None:
        if result.seen - last_report[0] >= 10 * batch_size:
            last_report[0] = result.seen
            click.echo(f"... {result.seen} values read", err=True)

    cipher = AuthCipher(settings.encryption_keys)
    try:
        result = rotate(store, cipher, batch_size, progress)
        schedules = rotate_schedules(store, cipher, batch_size)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"{result.seen} stored webhookAuth values: {result.encrypted} plaintext encrypted, "
        f"{result.reencrypted} re-encrypted with the first key, {result.current} already "
        f"current, {result.changed_meanwhile} changed or deleted meanwhile (left alone), "
        f"{len(result.unreadable)} no configured key opens"
    )
    if schedules.seen:  # a line of its own, when a schedule holds one
        click.echo(
            f"{schedules.seen} stored schedule webhookAuth values: {schedules.encrypted} "
            f"plaintext encrypted, {schedules.reencrypted} re-encrypted with the first key, "
            f"{schedules.current} already current, {schedules.changed_meanwhile} changed or "
            f"deleted meanwhile (left alone), {len(schedules.unreadable)} no configured key opens"
        )
    unreadable = (
        [f"{'task' if len(result.unreadable) == 1 else 'tasks'} {_first_ten(result.unreadable)}"]
        if result.unreadable
        else []
    )
    if schedules.unreadable:
        noun = "schedule" if len(schedules.unreadable) == 1 else "schedules"
        unreadable.append(f"{noun} {_first_ten(schedules.unreadable)}")
    if unreadable:
        count = len(result.unreadable) + len(schedules.unreadable)
        raise click.ClickException(
            f"{count} values were encrypted with a key "
            f"SCHEDULER_ENCRYPTION_KEY does not hold; left as they are ({'; '.join(unreadable)}). "
            "Their attempts fail until that key is configured again."
        )


def _first_ten(names: list[str]) -> str:
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return ", ".join(names[:10]) + more


@cli.command("generate-key")
def generate_key() -> None:
    """Print a new key for SCHEDULER_ENCRYPTION_KEY."""
    from scheduler_core.encryption import generate_key as new_key

    click.echo(new_key())


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print what GET /api/v1/plugins answers, as JSON."
)
@database_url_option
def plugins(as_json: bool, database_url: str | None) -> None:
    """List the loaded plugins: distribution, version, URL schemes and hooks of each."""
    rows = _plugins(_settings(database_url)).describe()
    if as_json:
        click.echo(json.dumps({"plugins": rows}, indent=2))
        return
    click.echo(_plugin_table(rows))


def _plugin_table(rows: list[dict[str, Any]]) -> str:
    header = ("NAME", "DISTRIBUTION", "VERSION", "SCHEMES", "HOOKS")
    lines = [header] + [
        (
            row["name"],
            row["distribution"] or "-",  # registered in code, not installed
            row["version"] or "-",
            ", ".join(row["schemes"]) or "-",
            ", ".join(row["hooks"]) or "-",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[-1]]
        )
        for line in lines
    )


# Commands kept in modules of their own, attached here.
from scheduler_core.cli_transfer import export_command, import_command  # noqa: E402

cli.add_command(export_command)
cli.add_command(import_command)

# Commands that talk to a running server over the REST API, one line each.
cli.add_command(cli_remote.enqueue)
cli.add_command(cli_remote.tasks)
cli.add_command(cli_remote.stats)
cli.add_command(cli_queues.queues)

from scheduler_core.cli_schedules import schedules  # noqa: E402

cli.add_command(schedules)


def main() -> None:
    cli(prog_name="scheduler")


if __name__ == "__main__":
    main()

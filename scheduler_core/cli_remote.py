"""`scheduler enqueue`, `scheduler tasks ...` and `scheduler stats`: commands that talk to a
running server over its REST API, through `scheduler_core.client` (one code path).

Every command takes `--url` (env SCHEDULER_URL, default http://127.0.0.1:8080) and
`--json` (print the API's JSON answer, for scripts); the API key comes from
SCHEDULER_API_KEY or `--api-key-file`, never from a flag's value, since a command line
is visible to every user of the machine (`ps`). Tables are aligned, times in UTC.

What the server sends is shown safely: in tables and text, control and format characters
(ANSI escapes, CR, bidi overrides) are written as escapes like ``\\x1b``, so a stored
value cannot recolour the terminal or forge a line; ``--json`` prints exact JSON with
those characters as ``\\uXXXX`` escapes.

An error the server answers with is ``Error: <message> (<code>)`` on stderr (a 400 adds a
line per refused field) and exit status 1, as is a server that does not answer. Bad input
caught before anything is sent is a usage error, click's: a usage hint, ``Error: Invalid
value for '--at': ...`` and exit status 2.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from scheduler_core.client import (
    ApiError,
    Attempt,
    Client,
    Stats,
    Task,
    TransportError,
    ValidationError,
)
from scheduler_core.client.results import STATUSES, BadResponse
from scheduler_core.names import name_problem

DEFAULT_URL = "http://127.0.0.1:8080"
F = TypeVar("F", bound=Callable[..., Any])

# -- shared options ---------------------------------------------------------------------------


class NameParam(click.ParamType):
    """A queue's or a schedule's name on the command line: the API's rule, checked before
    anything is sent, so a bad one is a usage error (exit 2) naming the rule."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = name_problem(str(value))
        if problem:
            self.fail(f"{safe_text(str(value))!r}: {problem}", param, ctx)
        return str(value)


NAME = NameParam()


def remote_options(command: F) -> F:
    """--url, --api-key-file, --timeout and --json, and a `client` argument built from them."""

    @click.option(
        "--url",
        envvar="SCHEDULER_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The server's base URL [env SCHEDULER_URL].",
    )
    @click.option(
        "--api-key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Read the API key from this file (default: env SCHEDULER_API_KEY).",
    )
    @click.option(
        "--timeout",
        type=click.FloatRange(0, 3600, min_open=True),
        default=10.0,
        show_default=True,
        help="Seconds to wait for each answer.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
    @functools.wraps(command)
    def wrapper(
        url: str, api_key_file: Path | None, timeout: float, as_json: bool, **kwargs: Any
    ) -> Any:
        api_key = _api_key(api_key_file)
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # A retry is news to a library's log, noise before a command's one-line answer.
            logging.getLogger("scheduler_core.client").setLevel(logging.WARNING)
        try:
            client = Client(url, api_key, timeout=timeout)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=["--url"]) from None
        with client, _reported():
            return command(client=client, as_json=as_json, **kwargs)

    return wrapper  # type: ignore[return-value]


def _api_key(path: Path | None) -> str | None:
    if path is None:
        return os.environ.get("SCHEDULER_API_KEY", "").strip() or None
    key = path.read_text().strip()
    if not key:
        raise click.BadParameter(f"{path} is empty", param_hint=["--api-key-file"])
    return key


@contextmanager
def _reported() -> Iterator[None]:
    """Client errors as one `Error: ...` line and exit status 1 (click's ClickException)."""
    try:
        yield
    except ValidationError as exc:
        lines = [safe_text(exc), *_detail_lines(exc.details)]
        raise click.ClickException("\n".join(lines)) from None
    except ApiError as exc:
        raise click.ClickException(safe_text(exc)) from None
    except TransportError as exc:
        raise click.ClickException(
            f"{safe_text(exc.message)} (is the server running? --url or SCHEDULER_URL names it)"
        ) from None
    except BadResponse as exc:
        raise click.ClickException(
            f"unexpected answer: {safe_text(exc)} (is --url the scheduler?)"
        ) from None


def _detail_lines(details: Any, prefix: str = "  ") -> list[str]:
    """The API's field-by-field details as indented `field: reason` lines."""
    lines: list[str] = []
    if not isinstance(details, dict):
        return [f"{prefix}{safe_text(details)}"]
    for key, value in details.items():
        name = safe_text(key)
        if isinstance(value, dict):
            lines.append(f"{prefix}{name}:")
            lines.extend(_detail_lines(value, prefix + "  "))
        elif isinstance(value, list):
            lines.append(f"{prefix}{name}: {' '.join(safe_text(v) for v in value)}")
        else:
            lines.append(f"{prefix}{name}: {safe_text(value)}")
    return lines


# -- showing what the server sent ---------------------------------------------------------------

# Characters a terminal acts on or that change how a line reads, rather than showing a
# glyph: C0 and C1 controls and DEL (Cc: ESC starts ANSI sequences, CR rewrites the line),
# format characters (Cf: bidi overrides and isolates, zero-width joiners), lone surrogates
# (Cs: cannot even be encoded) and the line and paragraph separators (Zl, Zp).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(value: object) -> str:
    """`value` as text for a terminal: every control, format or separator character
    (`_UNSAFE_CATEGORIES`) written as a visible escape: `\\x1b`, `\\r`, `\\u202e`."""
    text = str(value)
    if text.isprintable():  # the usual case, checked in C: nothing to escape
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)  # JSON spells these as a surrogate pair
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def json_text(value: Any) -> str:
    """`value` as indented JSON, UTF-8 letters kept, and every character `safe_text`
    escapes written as a JSON `\\uXXXX` escape: the same value for a JSON reader, nothing
    for a terminal to act on. (json.dumps escapes C0 controls in strings already; a raw
    newline in its output is the indentation's.)"""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if all(line.isprintable() for line in text.split("\n")):
        return text
    return "".join(_json_escape(c) if c != "\n" and _unsafe(c) else c for c in text)


def _print_json(value: Any) -> None:
    click.echo(json_text(value))


# -- reading the user's values ------------------------------------------------------------------

_RELATIVE = re.compile(r"\+(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, option: str = "--at") -> datetime:
    """`now`, `+90s` / `+5m` / `+2h` / `+1d` (from this machine's clock), or an RFC 3339
    time with `Z` or an offset."""
    text = text.strip()
    if text.lower() == "now":
        return datetime.now(UTC)
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) + timedelta(**{_UNITS[unit]: float(amount)})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time: use 2026-12-01T10:00:00Z, +30s, +5m, +2h, +1d or now",
            param_hint=[option],
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no time zone: add Z for UTC, or an offset like +02:00",
            param_hint=[option],
        )
    return moment


def _parse_payload(text: str) -> Any:
    """--payload: JSON text, `@file.json`, or `-` for standard input. The error never
    quotes the payload."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {text[1:]}: {exc.strerror}", param_hint=["--payload"]
            ) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint=["--payload"]) from None


def _statuses(text: str | None) -> list[str] | None:
    if text is None:
        return None
    statuses = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown or not statuses:
        raise click.BadParameter(
            f"unknown status {', '.join(unknown) or repr(text)}: use one or more of "
            f"{', '.join(STATUSES)}, comma-separated",
            param_hint=["--status"],
        )
    return statuses


# -- printing ---------------------------------------------------------------------------------


def short_time(moment: datetime | None) -> str:
    """UTC to the second: `2026-12-01 10:00:05Z`; `-` for none."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _cut(text: str | None, width: int) -> str:
    """`text` on one line (white space folded), made safe, cut to `width`."""
    if not text:
        return "-"
    text = safe_text(" ".join(str(text).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell; the last column is not padded. Every cell is
    shown through `safe_text`."""
    lines = [list(header), *([safe_text(cell) for cell in r] for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]]).rstrip()
        for line in lines
    )


def _task_rows(tasks: Sequence[Task]) -> list[list[str]]:
    return [
        [
            t.id,
            t.status,
            t.queue,
            short_time(t.next_attempt_at),
            str(t.attempts),
            _cut(t.webhook_url, 48),
            _cut(t.last_error, 60),
        ]
        for t in tasks
    ]


TASK_HEADER = ("ID", "STATUS", "QUEUE", "DUE", "ATTEMPTS", "URL", "LAST ERROR")


def _task_details(task: Task) -> str:
    rows = [
        ("id", task.id),
        ("status", task.status),
        ("queue", task.queue),
        ("webhook url", task.webhook_url),
        ("execute at", short_time(task.execute_at)),
        ("next attempt", short_time(task.next_attempt_at)),
        (
            "attempts",
            f"{task.attempts} (max retries: "
            f"{'the config' if task.max_retries is None else task.max_retries})",
        ),
        ("idempotency key", task.idempotency_key or "-"),
        ("last status", "-" if task.last_status_code is None else str(task.last_status_code)),
        ("last error", task.last_error or "-"),
        ("created", short_time(task.created_at)),
        ("updated", short_time(task.updated_at)),
        ("resolved", short_time(task.resolved_at)),
        ("payload", json.dumps(task.payload, ensure_ascii=False)),
    ]
    if task.not_after is not None:
        rows.insert(5, ("not after", short_time(task.not_after)))
    if task.schedule is not None:
        rows.append(("schedule", task.schedule))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {safe_text(value)}" for name, value in rows)


def _attempt_rows(attempts: Sequence[Attempt]) -> list[list[str]]:
    return [
        [
            str(a.attempt),
            short_time(a.started_at),
            "-" if a.duration_ms is None else f"{a.duration_ms} ms",
            "-" if a.status_code is None else str(a.status_code),
            a.outcome or "in flight",
            "-" if a.lateness_ms is None else f"{a.lateness_ms} ms",
            _cut(a.error, 80),
        ]
        for a in attempts
    ]


def _stats_text(stats: Stats) -> str:
    header = ("QUEUE", *(s.upper() for s in STATUSES), "DUE", "OLDEST DUE")
    rows = [
        [
            q.queue,
            *(str(q.counts.get(s, 0)) for s in STATUSES),
            str(q.due_backlog),
            f"{q.oldest_due_age_seconds:.1f} s",
        ]
        for q in stats.queues
    ]
    if len(stats.queues) != 1:
        rows.append(
            [
                "(all)",
                *(str(stats.counts.get(s, 0)) for s in STATUSES),
                str(stats.due_backlog),
                f"{stats.oldest_due_age_seconds:.1f} s",
            ]
        )
    late = stats.lateness

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    return (
        table(header, rows)
        + f"\nlateness over the last {late.window_seconds} s: p50 {ms(late.p50_ms)}, "
        f"p99 {ms(late.p99_ms)}"
    )


def _status_rules(text: str | None, option: str) -> list[int | str] | None:
    """`200,409,4xx` as the API's list of rules (codes as numbers); the server checks
    them. An empty list (`""`) is sent as []."""
    if text is None:
        return None
    rules: list[int | str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.isascii() and item.isdigit():
            rules.append(int(item))
        elif len(item) == 3 and item[1:].lower() == "xx":
            rules.append(item.lower())
        else:
            raise click.BadParameter(f"{item!r} is not a status code or class", param_hint=option)
    return rules


# -- commands ---------------------------------------------------------------------------------


@click.command()
@click.argument("webhook_url")
@click.option("--at", "at", help="When: 2026-12-01T10:00:00Z, +30s, +5m, +2h, +1d [default: now]")
@click.option(
    "--auth",
    help="Sent as the callback's Authorization header. Visible in `ps`: prefer --auth-file.",
)
@click.option(
    "--auth-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the Authorization value from this file.",
)
@click.option("--payload", help="JSON delivered in the callback; @file.json or - for stdin.")
@click.option("--queue", help="The queue [default: default].")
@click.option("--idempotency-key", help="A second enqueue with this key creates nothing.")
@click.option("--max-retries", type=click.IntRange(0, 1000), help="This task's retry budget.")
@click.option(
    "--not-after", help="Never called after this: 2026-12-01T10:05:00Z, +5m... [default: none]"
)
@click.option(
    "--success-codes",
    help="Codes that resolve it, comma-separated: 200,409 or 2xx [default: 2xx].",
)
@click.option(
    "--stale-codes",
    help="Codes that end it stale at once, no retry: 400,404,410 or 4xx [default: none].",
)
@remote_options
def enqueue(
    client: Client,
    as_json: bool,
    webhook_url: str,
    at: str | None,
    auth: str | None,
    auth_file: Path | None,
    payload: str | None,
    queue: str | None,
    idempotency_key: str | None,
    max_retries: int | None,
    not_after: str | None,
    success_codes: str | None,
    stale_codes: str | None,
) -> None:
    """Enqueue a callback: POST WEBHOOK_URL at --at (or now)."""
    if auth is not None and auth_file is not None:
        raise click.UsageError("give --auth or --auth-file, not both")
    if auth_file is not None:
        auth = auth_file.read_text().strip()
    extra: dict[str, Any] = {}
    if payload is not None:
        extra["payload"] = _parse_payload(payload)
    task = client.enqueue(
        webhook_url,
        execute_at=parse_when(at) if at is not None else None,
        auth=auth,
        idempotency_key=idempotency_key,
        max_retries=max_retries,
        queue=queue,
        not_after=parse_when(not_after, "--not-after") if not_after is not None else None,
        success_codes=_status_rules(success_codes, "--success-codes"),
        stale_codes=_status_rules(stale_codes, "--stale-codes"),
        **extra,
    )
    if as_json:
        _print_json(task.raw)
    else:
        click.echo(
            f"{safe_text(task.id)}  {safe_text(task.status)}, "
            f"due {short_time(task.next_attempt_at)}"
        )


@click.group()
def tasks() -> None:
    """List, read, retry, cancel and reschedule tasks on a running server."""


@tasks.command("list")
@click.option("--status", help="One or more statuses, comma-separated: pending,stale")
@click.option("--queue", help="Only this queue's tasks.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="The next page: the cursor the previous page printed.")
@remote_options
def tasks_list(
    client: Client,
    as_json: bool,
    status: str | None,
    queue: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """List tasks, newest first, a page at a time."""
    page = client.list_tasks(_statuses(status), queue, limit, cursor)
    if as_json:
        _print_json(page.raw)
        return
    if not page.tasks:
        click.echo("no tasks", err=True)
        return
    click.echo(table(TASK_HEADER, _task_rows(page.tasks)))
    if page.next_cursor:
        click.echo(f"more: --cursor {safe_text(page.next_cursor)}", err=True)


@tasks.command("show")
@click.argument("task_id")
@remote_options
def tasks_show(client: Client, as_json: bool, task_id: str) -> None:
    """Show one task."""
    task = client.get_task(task_id)
    if as_json:
        _print_json(task.raw)
    else:
        click.echo(_task_details(task))


@tasks.command("attempts")
@click.argument("task_id")
@remote_options
def tasks_attempts(client: Client, as_json: bool, task_id: str) -> None:
    """Show a task's delivery attempts, first first."""
    attempts = client.attempts(task_id)
    if as_json:
        _print_json({"attempts": [dict(a.raw) for a in attempts]})
        return
    if not attempts:
        click.echo("no attempts yet", err=True)
        return
    header = ("#", "STARTED", "DURATION", "STATUS", "OUTCOME", "LATENESS", "ERROR")
    click.echo(table(header, _attempt_rows(attempts)))


def _one_task_command(
    name: str, act: Callable[[Client, str], Task], help_text: str
) -> click.Command:
    @click.argument("task_id")
    @remote_options
    def command(client: Client, as_json: bool, task_id: str) -> None:
        task = act(client, task_id)
        if as_json:
            _print_json(task.raw)
        else:
            click.echo(f"{safe_text(task.id)}  now {safe_text(task.status)}")

    return tasks.command(name, help=help_text)(command)


_one_task_command(
    "retry",
    Client.retry,
    "Make a stale or cancelled task pending again, due now. Sent once, never repeated.",
)
_one_task_command("cancel", Client.cancel, "Cancel a task.")


@tasks.command("reschedule")
@click.argument("task_id")
@click.option("--at", "at", required=True, help="2026-12-01T10:00:00Z, +30s, +5m, +2h, +1d, now")
@remote_options
def tasks_reschedule(client: Client, as_json: bool, task_id: str, at: str) -> None:
    """Move a pending task to another time."""
    task = client.reschedule(task_id, parse_when(at))
    if as_json:
        _print_json(task.raw)
    else:
        click.echo(f"{safe_text(task.id)}  rescheduled: due {short_time(task.next_attempt_at)}")


def _bulk_command(name: str, verb: str, past: str, help_text: str) -> click.Command:
    @click.option("--status", help="One or more statuses, comma-separated: stale,cancelled")
    @click.option("--queue", help="Only this queue's tasks.")
    @click.option("--created-before", help="Tasks created before this time.")
    @click.option("--created-after", help="Tasks created at or after this time.")
    @remote_options
    def command(
        client: Client,
        as_json: bool,
        status: str | None,
        queue: str | None,
        created_before: str | None,
        created_after: str | None,
    ) -> None:
        if status is None and queue is None and created_before is None and created_after is None:
            raise click.UsageError(
                f"name the tasks to {verb}: --status, --queue, --created-before or "
                "--created-after (--status stale,cancelled, say)"
            )
        act = client.bulk_retry if verb == "retry" else client.bulk_cancel
        count = act(
            status=_statuses(status),
            queue=queue,
            created_before=parse_when(created_before, "--created-before")
            if created_before
            else None,
            created_after=parse_when(created_after, "--created-after") if created_after else None,
        )
        if as_json:
            _print_json({"count": count})
        else:
            click.echo(f"{past} {safe_text(count)} task{'s' if count != 1 else ''}")

    return tasks.command(name, help=help_text)(command)


_bulk_command(
    "retry-all",
    "retry",
    "retried",
    "Retry every task that matches the filter (stale or cancelled ones). Sent once.",
)
_bulk_command(
    "cancel-all",
    "cancel",
    "cancelled",
    "Cancel every task that matches the filter (pending ones). Sent once.",
)


@click.command()
@remote_options
def stats(client: Client, as_json: bool) -> None:
    """Tasks by status and queue, the due backlog and lateness."""
    result = client.stats()
    if as_json:
        _print_json(result.raw)
    else:
        click.echo(_stats_text(result))

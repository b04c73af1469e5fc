"""How the dashboard writes times, durations and JSON: Jinja filters."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint

# A payload may be up to the body limit (1 MiB by default): the page shows its start.
MAX_SHOWN_PAYLOAD = 64 * 1024


def short_time(value: str | None) -> str:
    """An API timestamp (`2026-11-30T21:56:03.123456Z`) as `2026-11-30 21:56:03Z`."""
    if not value:
        return "—"
    day, _, clock = value.partition("T")
    return f"{day} {clock[:8]}Z" if clock else value


def age(seconds: float | None) -> str:
    """A span of seconds in the two largest units: `4 min 2 s`, `3 d 4 h`."""
    if seconds is None:
        return "—"
    whole = int(round(seconds))
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    for unit, size, small, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size} {unit} {rest} {small}" if rest else f"{whole // size} {unit}"
    return f"{whole} s"  # unreachable: whole >= 60 matched above


def millis(value: float | None) -> str:
    """Milliseconds, to a tenth below 10 ms unless whole: `3.2 ms`, `41 ms`; `—` when
    unknown."""
    if value is None:
        return "—"
    if isinstance(value, int) or value >= 10:
        return f"{value:,.0f} ms"
    return f"{value:.1f} ms"


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading, cut at MAX_SHOWN_PAYLOAD characters."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > MAX_SHOWN_PAYLOAD:
        return text[:MAX_SHOWN_PAYLOAD] + "\n… (cut here; the API returns all of it)"
    return text


def short_id(task_id: str) -> str:
    """The first block of a task id, enough to tell tasks apart on a page."""
    return task_id.split("-", 1)[0]


def names_status(error: str | None, status_code: int | None) -> bool:
    """Whether `error` (a lastError) starts by naming `status_code` (`HTTP 500: ...`, as
    the core writes it), so that a page does not show the code in front of it again."""
    if not error or status_code is None:
        return False
    return re.match(rf"HTTP {re.escape(str(status_code))}\b", error) is not None


def register(bp: Blueprint) -> None:
    for name, function in (
        ("short_time", short_time),
        ("age", age),
        ("millis", millis),
        ("pretty_json", pretty_json),
        ("short_id", short_id),
        ("names_status", names_status),
    ):
        bp.add_app_template_filter(function, name)

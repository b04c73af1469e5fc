"""Cron expressions and their fire times.

Five fields, standard (Vixie/Debian) syntax: minute, hour, day of month, month, day of
week; each a `*`, a value, a range `a-b`, any of these with a step `/n`, or a
comma-separated list of them; months and days of the week also by their English
three-letter names (`JAN`, `MON`), day of week 0 or 7 for Sunday. When both day fields
are restricted, a day matching either runs (cron's OR rule). Extensions some crons add
(`L`, `W`, `#`, `?`, `@daily`, a seconds field) are refused.

Fire times are computed in the schedule's IANA time zone by `cronsim`, which follows
Debian cron at daylight-saving changes:
- a job at a fixed time (no `*` at the start of the minute or the hour field) whose time
  falls in a spring-forward gap runs once, at the first valid moment after it (02:30 on
  a day that skips 02:00-03:00 runs at 03:00); one whose time comes twice in a fall-back
  repeat runs once, the first time;
- a job with a wildcard minute or hour (`*/15 * * * *`, `0 * * * *`) runs by the new
  wall clock: every 15 minutes of real time, through the gap and through both passes of
  the repeated hour.
Every time leaves here in UTC.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES: dict[int, tuple[str, ...]] = {3: _MONTHS, 4: _DAYS}
SYNTAX = "a value, a range a-b, * or either with a step /n, or a comma-separated list"
# A DST fixup may hand back a time at or before the one asked about: look this far on.
_MAX_SKIPS = 8


class CronError(ValueError):
    """A cron expression or a time zone that cannot be used; the message says why."""


def _value_problem(index: int, text: str) -> str | None:
    low, high = _BOUNDS[index]
    names = _NAMES.get(index, ())
    if text.isascii() and text.isdigit():
        if not low <= int(text) <= high:
            return f"{text} is out of range {low}-{high}"
        return None
    if text.upper() in names:
        return None
    if text == "":
        return "a value is missing"
    spelled = f"a number {low}-{high}" + (f" or a name ({names[0]}-{names[-1]})" if names else "")
    return f"{text!r} is not {spelled}"


def _term_problem(index: int, term: str) -> str | None:
    if term == "":
        return "an empty item (two commas, or a comma at an end)"
    base, slash, step = term.partition("/")
    if slash and not (step.isascii() and step.isdigit() and int(step) > 0):
        return f"the step in {term!r} must be a whole number of 1 or more"
    if base == "*":
        return None
    if "-" in base:
        start, _, end = base.partition("-")
        problem = _value_problem(index, start) or _value_problem(index, end)
        if problem:
            return problem
        if _number(index, start) > _number(index, end):
            return f"the range {base!r} runs backwards"
        return None
    return _value_problem(index, base)


def _number(index: int, text: str) -> int:
    if text.isdigit():
        return int(text)
    return _NAMES[index].index(text.upper()) + (1 if index == 3 else 0)


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a five-field cron expression this scheduler runs, naming the
    field and the reason; None when it is one."""
    if not isinstance(expr, str) or not expr.strip():
        return "Must be five fields: minute hour day-of-month month day-of-week."
    if expr.strip().startswith("@"):
        return (
            "Macros like @daily are not supported: write the five fields "
            "(@hourly is '0 * * * *', @daily '0 0 * * *')."
        )
    parts = expr.split()
    if len(parts) != 5:
        return (
            f"Must be five fields (minute hour day-of-month month day-of-week); got {len(parts)}."
        )
    for index, part in enumerate(parts):
        for term in part.split(","):
            problem = _term_problem(index, term)
            if problem:
                return (
                    f"The {FIELDS[index]} field (field {index + 1} of 5) {part!r} is not "
                    f"valid: {problem}. Use {SYNTAX}."
                )
    try:
        first = next(CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC)), None)
    except CronSimError:
        first = None
    if first is None:
        return (
            f"The day-of-month field {parts[2]!r} never occurs in the months "
            f"{parts[3]!r}: the schedule would never fire."
        )
    return None


# Files a zone directory holds that are no IANA zone: what they mean depends on the host
# (Debian's `localtime` is a link to /etc/localtime), so a schedule must not name them.
NOT_ZONES = frozenset(("localtime", "posixrules", "Factory"))


@functools.cache
def _zone_names() -> dict[str, str]:
    """Every IANA zone name this machine knows, by its lowercase spelling."""
    return {name.lower(): name for name in zoneinfo.available_timezones() if name not in NOT_ZONES}


def timezone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone name (`Europe/Berlin`, `UTC`), or None."""
    if not isinstance(name, str) or name == "":
        return "Must be an IANA time zone name, like Europe/Berlin or UTC."
    if name in _zone_names().values():
        return None
    suggestion = _zone_names().get(name.lower())
    shown = name if len(name) <= 64 else name[:64] + "..."
    if suggestion:
        return f"Unknown time zone {shown!r}; did you mean {suggestion!r}?"
    return f"Unknown time zone {shown!r}: use an IANA name, like Europe/Berlin or UTC."


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The time zone `name`; CronError when it is not an IANA name."""
    problem = timezone_problem(name)
    if problem:
        raise CronError(problem)
    return zoneinfo.ZoneInfo(name)


class CronSchedule:
    """A cron expression in a time zone: its fire times, as aware UTC datetimes."""

    def __init__(self, expr: str, timezone: str = "UTC"):
        problem = cron_problem(expr)
        if problem:
            raise CronError(problem)
        self.expr = expr
        self.zone = zone(timezone)

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, {self.zone.key!r})"

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment`; None if there is none within
        fifty years."""
        found = CronSim(self.expr, moment.astimezone(self.zone))
        for _ in range(_MAX_SKIPS):
            candidate = next(found, None)
            if candidate is None:
                return None
            fire = candidate.astimezone(UTC)
            # In a fall-back repeat cronsim reads a time of the second pass as wall
            # clock time and may answer the first pass's: that one has gone.
            if fire > moment:
                return fire
        return None

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last fire time at or before `moment`; None if there is none within fifty
        years before it."""
        start = moment.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        found = CronSim(self.expr, start, reverse=True)
        latest = None
        for _ in range(_MAX_SKIPS):
            candidate = next(found, None)
            if candidate is None:
                return None
            if candidate.astimezone(UTC) <= moment:
                latest = candidate.astimezone(UTC)
                break
        if latest is None:
            return None
        # Walking backwards through a DST change can land before a fire time the forward
        # walk has: step forward to the last one at or before `moment`.
        for _ in range(_MAX_SKIPS):
            following = self.next_after(latest)
            if following is None or following > moment:
                break
            latest = following
        return latest

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Every fire time in (start, end], in order (for tests and previews)."""
        times: list[datetime] = []
        moment: datetime | None = start
        while moment is not None:
            moment = self.next_after(moment)
            if moment is None or moment > end:
                break
            times.append(moment)
        return times

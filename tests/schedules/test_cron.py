"""Cron expressions and fire times: exact UTC instants across daylight-saving changes
(Debian cron's rules), and refusals that name the field and the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler_core.schedules import (
    MISSED_AFTER,
    CatchUp,
    CronError,
    CronSchedule,
    cron_problem,
    fire_key,
    plan_fire,
    timezone_problem,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def fires_on(cron: str, zone: str, start: datetime, days: int = 3) -> list[datetime]:
    return CronSchedule(cron, zone).fire_times(start, start + timedelta(days=days))


# -- a daily job at a fixed time: exactly once on each change day, at the right instant --


def test_berlin_spring_forward_runs_0230_once_at_0300_cest() -> None:
    # 2026-03-29 02:00 CET becomes 03:00 CEST: 02:30 does not exist that night.
    assert fires_on("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12)) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # the first valid moment after the gap: 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_berlin_fall_back_runs_0230_once_the_first_time() -> None:
    # 2026-10-25 03:00 CEST becomes 02:00 CET: 02:30 comes twice that night.
    assert fires_on("30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12)) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first pass; not again at 01:30Z
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


def test_new_york_spring_forward_runs_0230_once_at_0300_edt() -> None:
    # 2026-03-08 02:00 EST becomes 03:00 EDT.
    assert fires_on("30 2 * * *", "America/New_York", utc(2026, 3, 6, 12)) == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]


def test_new_york_fall_back_runs_0230_once_and_0130_once() -> None:
    # 2026-11-01 02:00 EDT becomes 01:00 EST: 01:00-01:59 comes twice, 02:30 once.
    start = utc(2026, 10, 30, 12)
    assert fires_on("30 2 * * *", "America/New_York", start) == [
        utc(2026, 10, 31, 6, 30),  # 02:30 EDT
        utc(2026, 11, 1, 7, 30),  # 02:30 EST
        utc(2026, 11, 2, 7, 30),
    ]
    assert fires_on("30 1 * * *", "America/New_York", start) == [
        utc(2026, 10, 31, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first pass; not again at 06:30Z
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]


def test_a_fixed_time_asked_about_from_inside_the_repeat_is_not_fired_again() -> None:
    rule = CronSchedule("30 2 * * *", "Europe/Berlin")
    # 01:10Z is 02:10 CET, the second pass: 02:30 CEST (00:30Z) has gone already.
    assert rule.next_after(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)
    assert rule.latest_at_or_before(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 0, 30)


# -- wildcard jobs run by the new wall clock: every real hour / quarter hour ---------------


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", (2026, 3, 29), 23),
        ("Europe/Berlin", (2026, 10, 25), 25),
        ("America/New_York", (2026, 3, 8), 23),
        ("America/New_York", (2026, 11, 1), 25),
    ],
)
def test_hourly_and_quarter_hourly_jobs_fire_every_real_interval_of_the_local_day(
    zone: str, day: tuple[int, int, int], hours: int
) -> None:
    rule = CronSchedule("0 * * * *", zone)
    local_midnight = datetime(*day, tzinfo=rule.zone)
    next_midnight = (local_midnight + timedelta(days=1)).replace(tzinfo=rule.zone)
    start = local_midnight.astimezone(UTC) - timedelta(seconds=1)
    end = next_midnight.astimezone(UTC) - timedelta(seconds=1)
    hourly = rule.fire_times(start, end)
    assert len(hourly) == hours
    assert all(b - a == timedelta(hours=1) for a, b in zip(hourly, hourly[1:], strict=False))
    quarter = CronSchedule("*/15 * * * *", zone).fire_times(start, end)
    assert len(quarter) == hours * 4
    assert all(b - a == timedelta(minutes=15) for a, b in zip(quarter, quarter[1:], strict=False))


def test_berlin_hourly_across_spring_forward_exact_instants() -> None:
    times = CronSchedule("0 * * * *", "Europe/Berlin").fire_times(
        utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 2, 30)
    )
    # 01:00 CET, then 03:00 CEST (02:00 does not exist), then 04:00 CEST
    assert times == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]
    local = [t.astimezone(CronSchedule("0 * * * *", "Europe/Berlin").zone).hour for t in times]
    assert local == [1, 3, 4]


def test_utc_is_the_default_zone_and_every_time_is_utc() -> None:
    rule = CronSchedule("0 3 * * *")
    fire = rule.next_after(utc(2026, 3, 29, 0))
    assert fire == utc(2026, 3, 29, 3)
    assert fire is not None and fire.tzinfo is UTC


# -- what a due schedule fires --------------------------------------------------------------


def test_a_fire_time_a_little_late_is_fired_and_the_next_follows_it() -> None:
    rule = CronSchedule("* * * * *")
    plan = plan_fire(rule, utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 0, 30), CatchUp.NONE)
    assert (plan.fire, plan.next_fire_at) == (utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 1))


@pytest.mark.parametrize("catch_up", list(CatchUp))
def test_after_downtime_latest_fires_the_most_recent_missed_time_and_none_nothing(
    catch_up: CatchUp,
) -> None:
    rule = CronSchedule("0 * * * *")
    plan = plan_fire(rule, utc(2026, 1, 1, 3), utc(2026, 1, 1, 5, 30), catch_up)
    assert plan.fire == (utc(2026, 1, 1, 5) if catch_up is CatchUp.LATEST else None)
    assert plan.next_fire_at == utc(2026, 1, 1, 6)
    assert plan.skipped_missed


def test_after_downtime_a_recent_fire_time_is_fired_whatever_catch_up_says() -> None:
    rule = CronSchedule("* * * * *")
    now = utc(2026, 1, 1, 11, 0, 20)
    plan = plan_fire(rule, utc(2026, 1, 1, 10, 0), now, CatchUp.NONE)
    assert plan.fire == utc(2026, 1, 1, 11, 0)  # 20 s late: not missed
    assert now - utc(2026, 1, 1, 11, 0) < MISSED_AFTER


def test_the_idempotency_key_names_the_schedule_and_the_fire_time_in_utc() -> None:
    assert fire_key("nightly", utc(2026, 3, 29, 1)) == "schedule:nightly:2026-03-29T01:00:00Z"


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("* * * *", ["five fields", "got 4"]),
        ("* * * * * *", ["five fields", "got 6"]),
        ("60 * * * *", ["minute field (field 1 of 5)", "60 is out of range 0-59"]),
        ("0 24 * * *", ["hour field (field 2 of 5)", "24 is out of range 0-23"]),
        ("0 0 0 * *", ["day-of-month field (field 3 of 5)", "out of range 1-31"]),
        ("0 0 * 13 *", ["month field (field 4 of 5)", "out of range 1-12"]),
        ("0 0 * * 8", ["day-of-week field (field 5 of 5)", "out of range 0-7"]),
        ("0 0 * FOO *", ["month field", "'FOO' is not a number 1-12 or a name (JAN-DEC)"]),
        ("5-1 * * * *", ["minute field", "range '5-1' runs backwards"]),
        ("*/0 * * * *", ["minute field", "step in '*/0' must be a whole number of 1 or more"]),
        ("1,,2 * * * *", ["minute field", "empty item"]),
        ("0 0 L * *", ["day-of-month field", "'L' is not a number"]),
        ("0 0 * * MON#2", ["day-of-week field"]),
        ("0 0 30 2 *", ["never occurs", "never fire"]),
        ("@daily", ["@daily", "0 0 * * *"]),
        ("", ["five fields"]),
    ],
)
def test_a_bad_expression_is_refused_naming_the_field_and_why(expr: str, words: list[str]) -> None:
    problem = cron_problem(expr)
    assert problem is not None
    for word in words:
        assert word in problem, (word, problem)
    with pytest.raises(CronError):
        CronSchedule(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * *",
        "*/15 * * * *",
        "0 9 * * MON-FRI",
        "30 2 1,15 * *",
        "0 0 * jan-mar 7",
        "5/10 1-5/2 * * 0",
    ],
)
def test_standard_expressions_are_accepted(expr: str) -> None:
    assert cron_problem(expr) is None


def test_time_zones_are_iana_names_checked_with_a_suggestion_for_the_case() -> None:
    assert timezone_problem("Europe/Berlin") is None
    assert timezone_problem("UTC") is None
    assert "did you mean 'Europe/Berlin'" in (timezone_problem("europe/berlin") or "")
    for bad in ("Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "Europe/Berlin "):
        assert timezone_problem(bad), bad

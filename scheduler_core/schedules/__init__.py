"""Schedules: recurring tasks kept by the server.

- `cron.py`: five-field cron expressions checked field by field, IANA time zones, and
  fire times in UTC under Debian cron's daylight-saving rules (through `cronsim`).
- `model.py`: a schedule as stored (`Schedule`), one to create (`NewSchedule`), and the
  decision of what one due schedule fires (`plan_fire`), written once for every store.
"""

from scheduler_core.schedules.cron import (
    CronError,
    CronSchedule,
    cron_problem,
    timezone_problem,
)
from scheduler_core.schedules.model import (
    CHANGEABLE,
    MISSED_AFTER,
    CatchUp,
    FirePlan,
    NewSchedule,
    Schedule,
    fire_key,
    plan_fire,
)

__all__ = [
    "CHANGEABLE",
    "MISSED_AFTER",
    "CatchUp",
    "CronError",
    "CronSchedule",
    "FirePlan",
    "NewSchedule",
    "Schedule",
    "cron_problem",
    "fire_key",
    "plan_fire",
    "timezone_problem",
]

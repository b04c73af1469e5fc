"""The dashboard at /ui: server-rendered pages over the same store verbs and validation as
the API, for operators who would otherwise need SQL.

- `blueprint.py`: the blueprint, and what every page shares (the store, rendering).
- `guard.py`: the Host check, the login cookie checked through `scheduler_authorize`, the
  CSRF token and same-origin check of every POST, the login and logout pages.
- `pages.py`: what an operator reads (overview, tasks, a task, failing tasks, config).
- `queue_pages.py`: the queues, each with its pause switch and config form.
- `schedule_pages.py`: the schedules page and its Pause, Resume and Trigger buttons.
- `host_pages.py`: the hosts under per-host backpressure (429/503), with their limits.
- `actions.py`: what an operator presses (retry, cancel, save the config), each a plain
  form POST answered with a redirect (Post/Redirect/Get), so the pages work with
  JavaScript off; `static/ui.js` only draws the charts and asks before cancelling.

Its templates and static files ship in the package (pyproject.toml's package-data); the
chart library is vendored under `static/vendor/`: nothing is fetched from elsewhere.
"""

from __future__ import annotations

from flask import Flask

from scheduler_core.http_guard import HostPolicy
from scheduler_core.ui import actions, guard, host_pages, pages, queue_pages, schedule_pages
from scheduler_core.ui.blueprint import POLICY_EXTENSION, bp

__all__ = [
    "actions",
    "bp",
    "guard",
    "host_pages",
    "install",
    "pages",
    "queue_pages",
    "schedule_pages",
]


def install(app: Flask, policy: HostPolicy) -> None:
    """Serve the dashboard under /ui on `app`, with the Host policy the API applies."""
    app.extensions[POLICY_EXTENSION] = policy
    app.register_blueprint(bp)

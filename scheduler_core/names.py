"""The names of queues and schedules (SPEC.md: 1..64 characters of [A-Za-z0-9_.-]).

`.` and `..` are refused too: they fit the characters, but a URL path normalises them
away (`/api/v1/queues/..` is `/api/v1/`), so such a queue or schedule could be made
and never be read, paused or removed again.
"""

from __future__ import annotations

import re

NAME = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9_.-]{1,64}")
NAME_RULE = "1..64 characters of A-Z, a-z, 0-9, '_', '.', '-' (not '.' or '..')."


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a queue or a schedule, or None."""
    if not NAME.fullmatch(name):
        return f"Must be {NAME_RULE}"
    return None

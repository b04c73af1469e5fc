"""Built-in auth: `Authorization: Bearer <key>` against SCHEDULER_API_KEYS."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from scheduler_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from flask import Request

    from scheduler_core.settings import Settings


@hookimpl(trylast=True)
def scheduler_authorize(request: Request, settings: Settings) -> bool:
    if not settings.api_keys:
        return True  # an open API is the documented default; `serve` warns off loopback
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    presented = token.strip().encode()
    # Compare against every key so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(presented, key.encode()) for key in settings.api_keys]
    return any(matches)

"""The schedules' side of `scheduler rotate-key`: their stored webhookAuth read page by
page and replaced by compare and set, as `webhook_auth_page` / `replace_webhook_auth` do
for tasks (SQL in sql/<dialect>.schedule_auth.sql)."""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from scheduler_core.store.base import StoreError

if TYPE_CHECKING:
    from scheduler_core.store.sql_store import Cursor


class ScheduleAuthVerbs:
    """Mixed into SqlStore."""

    q: dict[str, str]
    statement_error: type[Exception]

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    def schedule_auth_page(self, after: str, limit: int) -> list[tuple[str, str]]:
        with self._read() as cur:
            cur.execute(self.q["schedule_auth_page"], {"after": after, "limit": limit})
            rows = cur.fetchall()
        return [(r["name"], r["webhook_auth"]) for r in rows]

    def replace_schedule_auth(self, changes: Sequence[tuple[str, str, str]]) -> list[str]:
        # sql_store imports this module: its constants are read when first needed.
        from scheduler_core.store.sql_store import RETRYABLE_SQLSTATES, ROTATE_TRIES

        rows = [{"name": name, "old": old, "new": new} for name, old, new in changes]
        for attempt in range(1, ROTATE_TRIES + 1):
            try:
                with self._tx() as cur:
                    cur.execute(self.q["replace_schedule_auth"], {"rows": json.dumps(rows)})
                    return [r["name"] for r in cur.fetchall()]
            except self.statement_error as exc:
                retryable = getattr(exc, "pgcode", None) in RETRYABLE_SQLSTATES
                if not retryable or attempt == ROTATE_TRIES:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise StoreError(f"re-encrypting schedules failed: {first}") from exc
                time.sleep(0.05 * attempt)  # a deadlock's victim, rolled back: try again
        raise AssertionError("unreachable")

"""The client's queue methods (`/api/v1/queues`), mixed into `Client`, and their results.

Config keys are given and read in snake_case, as `scheduler config set` and
`Client.update_config` spell them (``put_queue("mail", select_size=50)``); the API's
camelCase stays on the wire. Errors: ValidationError (400, `details` names each refused
key or the bad name), NotFound (404, no such queue), Conflict (409, `details["reason"]`:
``default_queue``, ``tasks`` with `details["counts"]`, or ``schedules`` with
`details["schedules"]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from scheduler_core.client.results import (
    BadResponse,
    _counts,
    _object,
    _required_time,
    camel_case,
    snake_case,
)
from scheduler_core.client.transport import Transport

QUEUES = "/api/v1/queues"
# The keys of a queue that are not its config.
_NOT_CONFIG = frozenset({"name", "paused", "counts", "dueBacklog", "createdAt", "updatedAt"})


@dataclass(frozen=True)
class Queue:
    """A queue: `config` in snake_case (``{"select_size": 100, ...}``), whether it is
    `paused`, its tasks by status (`counts`), its `due_backlog`, and its times (aware,
    UTC). `raw` is the JSON it was read from (what ``--json`` prints)."""

    name: str
    paused: bool
    config: Mapping[str, int]
    counts: Mapping[str, int]
    due_backlog: int
    created_at: datetime
    updated_at: datetime
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> Queue:
        data = _object(value, "a queue")
        name = data.get("name")
        if not isinstance(name, str):
            raise BadResponse("a queue without a name")
        return cls(
            name=name,
            paused=bool(data.get("paused")),
            config={snake_case(k): v for k, v in data.items() if k not in _NOT_CONFIG},
            counts=_counts(data.get("counts")),
            due_backlog=int(data.get("dueBacklog") or 0),
            created_at=_required_time(data, "createdAt"),
            updated_at=_required_time(data, "updatedAt"),
            raw=data,
        )


@dataclass(frozen=True)
class QueuePut:
    """What `put_queue` did: the queue as stored, and whether it was `created` (201)
    rather than replaced (200)."""

    queue: Queue
    created: bool


class QueueMethods:
    """Mixed into `Client` (which sets `_http`)."""

    _http: Transport

    def list_queues(self) -> list[Queue]:
        """Every queue, sorted by name."""
        response = self._http.request("GET", QUEUES, retry=True)
        return [Queue.from_json(q) for q in response.json().get("queues") or ()]

    def get_queue(self, name: str) -> Queue:
        """One queue. NotFound (404)."""
        return Queue.from_json(self._http.request("GET", _queue_path(name), retry=True).json())

    def put_queue(self, name: str, **config: Any) -> QueuePut:
        """Create the queue `name`, or replace its whole config: a key left out takes its
        default. Safe to retry (the same request gives the same config)."""
        body = {camel_case(key): value for key, value in config.items()}
        response = self._http.request("PUT", _queue_path(name), body=body, retry=True)
        return QueuePut(Queue.from_json(response.json()), response.status_code == 201)

    def update_queue(self, name: str, **changes: Any) -> Queue:
        """Change some config keys of a queue (at least one); the queue after the change.
        Safe to retry (absolute values)."""
        body = {camel_case(key): value for key, value in changes.items()}
        response = self._http.request("PATCH", _queue_path(name), body=body, retry=True)
        return Queue.from_json(response.json())

    def delete_queue(self, name: str) -> Queue:
        """Remove an empty queue; the queue as it was. Conflict (409) for `default`, a
        queue holding pending, running or stale tasks, or one a schedule enqueues into.
        Sent once: a retry after a lost answer would say 404."""
        response = self._http.request("DELETE", _queue_path(name), retry=False)
        return Queue.from_json(response.json())

    def pause_queue(self, name: str) -> Queue:
        """Stop claiming the queue's tasks (those in flight finish). Idempotent."""
        return self._switch(name, "pause")

    def resume_queue(self, name: str) -> Queue:
        """Claim the queue's tasks again. Idempotent."""
        return self._switch(name, "resume")

    def purge_queue(self, name: str) -> int:
        """Cancel every pending and stale task of the queue; how many. Sent once."""
        response = self._http.request("POST", _queue_path(name) + "/purge", retry=False)
        count = response.json().get("count")
        if not isinstance(count, int):
            raise BadResponse(f"the answer to {QUEUES}/.../purge has no count")
        return count

    def _switch(self, name: str, verb: str) -> Queue:
        response = self._http.request("POST", f"{_queue_path(name)}/{verb}", retry=True)
        return Queue.from_json(response.json())


def _queue_path(name: str) -> str:
    if not name:
        raise ValueError("a queue name is required")
    return f"{QUEUES}/{quote(name, safe='')}"

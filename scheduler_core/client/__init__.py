"""A Python client for the scheduler's REST API: a method per endpoint, typed results,
errors raised as exceptions that carry the API's error code.

::

    from datetime import UTC, datetime, timedelta
    from scheduler_core.client import Client, NotFound

    with Client("http://127.0.0.1:8080", api_key=os.environ.get("SCHEDULER_API_KEY")) as api:
        task = api.enqueue(
            "https://example.com/hooks/report",
            execute_at=datetime.now(UTC) + timedelta(minutes=5),
            payload={"report": 7},
            idempotency_key="report-7",
        )
        api.get_task(task.id).status          # "pending"
        for stale in api.iter_tasks(status="stale"):
            api.retry(stale.id)

Queues: `list_queues`, `get_queue`, `put_queue`, `update_queue`, `delete_queue`,
`pause_queue`, `resume_queue`, `purge_queue` (`scheduler_core.client.queues`).

Results are frozen dataclasses (`Task`, `TaskPage`, `Attempt`, `Stats`, `Queue`) with times as
aware UTC datetimes. Errors: `ApiError` and its subclasses per status (`ValidationError`
400, `Unauthorized` 401, `Forbidden` 403, `NotFound` 404, `Conflict` 409, `Gone` 410,
`PayloadTooLarge` 413, `ServerError` 5xx, `Unavailable` 503), `TransportError` when no
answer came. Retries: see `scheduler_core.client.transport` (only where a second try
cannot act twice). The API key goes in ``Authorization: Bearer`` and appears in no repr,
message or log line. Not thread-safe (a `requests.Session`): one Client per thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

from scheduler_core.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from scheduler_core.client.queues import Queue, QueueMethods, QueuePut
from scheduler_core.client.results import (
    Attempt,
    BadResponse,
    Lateness,
    QueueStats,
    Stats,
    Task,
    TaskPage,
    camel_case,
    format_time,
    snake_case,
)
from scheduler_core.client.schedules import Schedule, ScheduleMethods
from scheduler_core.client.transport import Transport
from scheduler_core.redaction import masked_url

__all__ = [
    "ApiError",
    "Attempt",
    "BadResponse",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Lateness",
    "NewTask",
    "NotFound",
    "PayloadTooLarge",
    "Queue",
    "QueuePut",
    "QueueStats",
    "Schedule",
    "ServerError",
    "Stats",
    "Task",
    "TaskPage",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
]

TASKS = "/api/v1/tasks"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "no payload given", apart from a payload of None (JSON null)


@dataclass(frozen=True)
class NewTask:
    """One item for `Client.enqueue_many`; the fields are `Client.enqueue`'s arguments."""

    webhook_url: str
    execute_at: datetime | str | None = None
    auth: str | None = None
    payload: Any = UNSET
    idempotency_key: str | None = None
    max_retries: int | None = None
    queue: str | None = None
    not_after: datetime | str | None = None
    success_codes: Sequence[int | str] | None = None
    stale_codes: Sequence[int | str] | None = None

    def __repr__(self) -> str:  # the auth value is a credential
        auth = "<set>" if self.auth is not None else None
        return (
            f"NewTask(webhook_url={masked_url(self.webhook_url)!r}, "
            f"execute_at={self.execute_at!r}, auth={auth}, "
            f"idempotency_key={self.idempotency_key!r})"
        )

    def body(self) -> dict[str, Any]:
        """The task as the API reads it (camelCase; fields not given are left out)."""
        body: dict[str, Any] = {"webhookUrl": self.webhook_url}
        if self.execute_at is not None:
            body["executeAt"] = format_time(self.execute_at)
        if self.auth is not None:
            body["webhookAuth"] = self.auth
        if self.payload is not UNSET:
            body["payload"] = self.payload
        if self.idempotency_key is not None:
            body["idempotencyKey"] = self.idempotency_key
        if self.max_retries is not None:
            body["maxRetries"] = self.max_retries
        if self.queue is not None:
            body["queue"] = self.queue
        if self.not_after is not None:
            body["notAfter"] = format_time(self.not_after)
        if self.success_codes is not None:
            body["successCodes"] = list(self.success_codes)
        if self.stale_codes is not None:
            body["staleCodes"] = list(self.stale_codes)
        return body


class Client(QueueMethods, ScheduleMethods):
    """The scheduler's REST API at `base_url` (``http://host:port``, no path).

    `api_key`: sent as ``Authorization: Bearer <key>`` (one of SCHEDULER_API_KEYS).
    `timeout`: seconds for each HTTP exchange (connect, and each wait for the answer).
    `retries`: further tries after the first, for requests that may be retried (see the
    module docstring). `backoff_s`: the first pause between tries (doubles each time).

    Raises ValueError at once for a base URL that is not http(s)://host[:port].
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.25,
    ) -> None:
        self._http = Transport(
            base_url, api_key, timeout=timeout, retries=retries, backoff_s=backoff_s
        )
        self.base_url = self._http.base_url

    def __repr__(self) -> str:
        key = "<set>" if self._http.has_api_key else None
        return f"Client({masked_url(self.base_url)!r}, api_key={key})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- tasks ------------------------------------------------------------------------------

    def enqueue(
        self,
        webhook_url: str,
        *,
        execute_at: datetime | str | None = None,
        auth: str | None = None,
        payload: Any = UNSET,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
        queue: str | None = None,
        not_after: datetime | str | None = None,
        success_codes: Sequence[int | str] | None = None,
        stale_codes: Sequence[int | str] | None = None,
        traceparent: str | None = None,
    ) -> Task:
        """Enqueue one callback: POST `webhook_url` at `execute_at` (an aware datetime or
        an RFC 3339 string; default now), with ``Authorization: <auth>`` and `payload`
        (any JSON value) in the body. With `idempotency_key`, a second enqueue with the
        same key returns the first task and creates nothing, which also makes this call
        safe to retry; without one it is sent once.

        Delivery rules: `not_after` (never called after it), `success_codes` and
        `stale_codes` (codes like 410 or classes like "4xx"). `traceparent` (W3C Trace
        Context) is sent as the request's header: the task keeps it and sends it with
        every callback (a malformed one is ignored by the server).

        Raises ValidationError (400, `details` per field), ValueError for a naive
        datetime, and the errors every call may raise.
        """
        task = NewTask(
            webhook_url,
            execute_at,
            auth,
            payload,
            idempotency_key,
            max_retries,
            queue,
            not_after,
            success_codes,
            stale_codes,
        )
        response = self._http.request(
            "POST",
            TASKS,
            body=task.body(),
            retry=idempotency_key is not None,
            extra_headers={"traceparent": traceparent} if traceparent is not None else None,
        )
        return Task.from_json(response.json())

    def enqueue_many(self, items: Iterable[NewTask | Mapping[str, Any]]) -> list[Task]:
        """Enqueue 1..1000 tasks in one transaction, all or nothing; the tasks come back
        in the same order. An item is a `NewTask` or a mapping of `enqueue`'s argument
        names (``{"webhook_url": ..., "payload": ...}``). Retried only when every item
        has an idempotency key. A refused item is named by its index in
        ``ValidationError.details``.
        """
        tasks = [item if isinstance(item, NewTask) else NewTask(**item) for item in items]
        response = self._http.request(
            "POST",
            TASKS,
            body=[t.body() for t in tasks],
            retry=bool(tasks) and all(t.idempotency_key is not None for t in tasks),
        )
        return [Task.from_json(t) for t in response.json().get("tasks") or ()]

    def get_task(self, task_id: str) -> Task:
        """One task. NotFound (404) when there is no such task."""
        return Task.from_json(self._http.request("GET", _task_path(task_id), retry=True).json())

    def list_tasks(
        self,
        status: str | Iterable[str] | None = None,
        queue: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks, newest first. `status`: one status or several (a list, or
        ``"pending,stale"``); `limit`: 1..1000 (server default 100); `cursor`: a previous
        page's `next_cursor`."""
        params: dict[str, str] = {}
        if status is not None:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if queue is not None:
            params["queue"] = queue
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        response = self._http.request("GET", TASKS, params=params, retry=True)
        return TaskPage.from_json(response.json())

    def iter_tasks(
        self,
        status: str | Iterable[str] | None = None,
        queue: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Task]:
        """Every matching task, newest first, fetching page after page as it is read."""
        if not isinstance(status, str | None):
            status = ",".join(status)  # an iterator would be used up by the first page
        cursor = None
        while True:
            page = self.list_tasks(status, queue, page_size, cursor)
            yield from page.tasks
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def attempts(self, task_id: str) -> list[Attempt]:
        """Every delivery attempt of a task, first first. NotFound (404)."""
        response = self._http.request("GET", _task_path(task_id) + "/attempts", retry=True)
        return [Attempt.from_json(a) for a in response.json().get("attempts") or ()]

    def reschedule(
        self,
        task_id: str,
        execute_at: datetime | str | None = None,
        *,
        not_after: Any = UNSET,
        success_codes: Any = UNSET,
        stale_codes: Any = UNSET,
    ) -> Task:
        """Move a pending task to `execute_at` (a past time: due at once), and/or change
        its delivery rules (None: back to the rule's default; left out: unchanged).
        Conflict (409) when it is not pending, NotFound (404), ValidationError (400).
        Safe to retry: the values are absolute."""
        body: dict[str, Any] = {}
        if execute_at is not None:
            body["executeAt"] = format_time(execute_at)
        if not_after is not UNSET:
            body["notAfter"] = None if not_after is None else format_time(not_after)
        if success_codes is not UNSET:
            body["successCodes"] = None if success_codes is None else list(success_codes)
        if stale_codes is not UNSET:
            body["staleCodes"] = None if stale_codes is None else list(stale_codes)
        response = self._http.request("PATCH", _task_path(task_id), body=body, retry=True)
        return Task.from_json(response.json())

    def cancel(self, task_id: str) -> Task:
        """Cancel a task: it is returned `cancelled`. Cancelling a cancelled task changes
        nothing. Conflict (409) when it resolved or is running; NotFound (404)."""
        return Task.from_json(self._http.request("DELETE", _task_path(task_id), retry=True).json())

    def retry(self, task_id: str) -> Task:
        """Make a stale or cancelled task pending again, due now, with a fresh retry
        budget. Conflict (409) for other states. Sent once: never retried."""
        response = self._http.request("POST", _task_path(task_id) + "/retry", retry=False)
        return Task.from_json(response.json())

    def bulk_retry(
        self,
        status: str | Iterable[str] | None = None,
        queue: str | None = None,
        created_before: datetime | str | None = None,
        created_after: datetime | str | None = None,
    ) -> int:
        """Retry every task matching the filter (at least one field); the number of tasks
        that changed. Sent once: never retried."""
        return self._bulk("retry", status, queue, created_before, created_after)

    def bulk_cancel(
        self,
        status: str | Iterable[str] | None = None,
        queue: str | None = None,
        created_before: datetime | str | None = None,
        created_after: datetime | str | None = None,
    ) -> int:
        """Cancel every task matching the filter (at least one field); the number of
        tasks that changed. Sent once: never retried."""
        return self._bulk("cancel", status, queue, created_before, created_after)

    def _bulk(
        self,
        verb: str,
        status: str | Iterable[str] | None,
        queue: str | None,
        created_before: datetime | str | None,
        created_after: datetime | str | None,
    ) -> int:
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status.split(",") if isinstance(status, str) else list(status)
        if queue is not None:
            body["queue"] = queue
        if created_before is not None:
            body["createdBefore"] = format_time(created_before)
        if created_after is not None:
            body["createdAfter"] = format_time(created_after)
        if not body:
            raise ValueError(f"bulk_{verb} needs a filter: status, queue or a creation time")
        response = self._http.request("POST", f"{TASKS}:{verb}", body=body, retry=False)
        count = response.json().get("count")
        if not isinstance(count, int):
            raise BadResponse(f"the answer to {TASKS}:{verb} has no count")
        return count

    # -- the rest ---------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Counts by status and queue, the due backlog, the oldest due task's age and
        lateness percentiles over the last 5 minutes."""
        return Stats.from_json(self._http.request("GET", "/api/v1/stats", retry=True).json())

    def get_config(self) -> dict[str, int]:
        """The runtime configuration (the default queue's), keys in snake_case as
        `scheduler config show` prints them: ``{"base_interval_ms": 1000, ...}``."""
        response = self._http.request("GET", "/api/v1/config", retry=True)
        return {snake_case(k): v for k, v in response.json().items()}

    def update_config(self, **changes: int) -> dict[str, int]:
        """Change some keys, given in snake_case as `scheduler config set` takes them
        (``update_config(base_interval_ms=500)``); the whole configuration after the
        change. ValidationError (400) names each refused key; then nothing changed.
        Safe to retry (absolute values)."""
        body = {camel_case(key): value for key, value in changes.items()}
        response = self._http.request("PATCH", "/api/v1/config", body=body, retry=True)
        return {snake_case(k): v for k, v in response.json().items()}

    def plugins(self) -> list[dict[str, Any]]:
        """The server's loaded plugins: name, builtin, distribution, version, hooks,
        schemes (as `scheduler plugins --json`)."""
        plugins: list[dict[str, Any]] = (
            self._http.request("GET", "/api/v1/plugins", retry=True).json().get("plugins", [])
        )
        return plugins

    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI document."""
        document: dict[str, Any] = self._http.request(
            "GET", "/api/v1/openapi.json", retry=True
        ).json()
        return document

    def health(self) -> bool:
        """Whether the process answers ``/healthz`` with 200; False when it does not, or
        cannot be reached. One try: a health check answers for now."""
        return self._probe("/healthz")

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (the server reaches its database); False on a
        503, another error, or no answer. One try."""
        return self._probe("/readyz")

    def _probe(self, path: str) -> bool:
        try:
            self._http.request("GET", path, retry=False, expect_json=False)
        except (ApiError, TransportError):
            return False
        return True


def _task_path(task_id: str) -> str:
    if not task_id:
        raise ValueError("a task id is required")
    return f"{TASKS}/{quote(task_id, safe='')}"

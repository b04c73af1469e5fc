"""The enqueue path without the schema machinery: a task body read, and a task written.

`TaskInputSchema` and `TaskOutputSchema` (schemas.py) are the contract: they validate,
they name every error, they document the API. Running marshmallow's generic machinery for
each of 500 array items costs more than storing them, so the enqueue route first tries
these hand-written equivalents, which call the same checks:

- `read_task(item, schemes)` returns the `NewTask` the schema would produce, or None when
  the item is anything but plainly valid; the route then loads the whole body with the
  schema, which names the errors. It never accepts what the schema refuses.
- `task_json(task)` is `TaskOutputSchema().dump(task)`, key for key.

tests/api/test_fast_path.py checks both against the schemas on generated inputs.
"""

from __future__ import annotations

from typing import Any

from scheduler_core.api.schemas import (
    EARLIEST,
    LATEST,
    MAX_AUTH_LENGTH,
    MAX_KEY_LENGTH,
    header_value_problem,
    timestamp_text,
    webhook_url_problem,
)
from scheduler_core.marshmallow_base import parse_rfc3339
from scheduler_core.models import DEFAULT_QUEUE, NewTask, Task
from scheduler_core.names import NAME
from scheduler_core.redaction import masked_url

# The delivery rules are left to the schema (their checks relate fields to each other).
RULE_FIELDS = ("notAfter", "successCodes", "staleCodes")
INPUT_FIELDS = frozenset(
    ("webhookUrl", "webhookAuth", "executeAt", "payload", "idempotencyKey", "maxRetries", "queue")
    + RULE_FIELDS
)


def read_task(item: Any, schemes: frozenset[str]) -> NewTask | None:
    """`item` (one parsed JSON task) as a NewTask when TaskInputSchema accepts it as is;
    None when it might not (unknown fields, wrong types, a value a check refuses)."""
    if type(item) is not dict or not item.keys() <= INPUT_FIELDS:
        return None
    if any(item.get(name) is not None for name in RULE_FIELDS):
        return None
    url = item.get("webhookUrl")
    if type(url) is not str or webhook_url_problem(url, schemes) is not None:
        return None
    auth = item.get("webhookAuth")
    if auth is not None and (
        type(auth) is not str or len(auth) > MAX_AUTH_LENGTH or header_value_problem(auth)
    ):
        return None
    key = item.get("idempotencyKey")
    if key is not None and (
        type(key) is not str or not 1 <= len(key) <= MAX_KEY_LENGTH or "\x00" in key
    ):
        return None
    retries = item.get("maxRetries")
    if retries is not None and (type(retries) is not int or not 0 <= retries <= 1000):
        return None
    queue = item.get("queue")
    if queue is not None and (type(queue) is not str or not NAME.fullmatch(queue)):
        return None  # (whether it exists is the route's check, after either path)
    execute_at = item.get("executeAt")
    if execute_at is not None:
        if type(execute_at) is not str:
            return None
        try:
            execute_at = parse_rfc3339(execute_at)  # what the schema's Rfc3339DateTime calls
        except ValueError:
            return None
        if execute_at.tzinfo is None or execute_at.utcoffset() is None:
            return None
        if not EARLIEST <= execute_at <= LATEST:
            return None
    return NewTask(
        webhook_url=url,
        webhook_auth=auth,
        execute_at=execute_at,
        payload=item.get("payload"),
        idempotency_key=key,
        max_retries=retries,
        queue=queue or DEFAULT_QUEUE,
    )


def read_tasks(items: list[Any], schemes: frozenset[str]) -> list[NewTask] | None:
    """Every item read by `read_task`, or None as soon as one needs the schema."""
    tasks = []
    for item in items:
        task = read_task(item, schemes)
        if task is None:
            return None
        tasks.append(task)
    return tasks


def task_json(task: Task) -> dict[str, Any]:
    """The task as the API shows it: TaskOutputSchema's fields, in its order."""
    return {
        "id": task.id,
        "queue": task.queue,
        "webhookUrl": masked_url(task.webhook_url),  # no userinfo, no query values
        "executeAt": timestamp_text(task.execute_at),
        "status": task.status.value,
        "attempts": task.attempts,
        "maxRetries": task.max_retries,
        "nextAttemptAt": timestamp_text(task.next_attempt_at),
        "payload": task.payload,
        "idempotencyKey": task.idempotency_key,
        "notAfter": timestamp_text(task.not_after),
        "successCodes": None if task.success_codes is None else list(task.success_codes),
        "staleCodes": None if task.stale_codes is None else list(task.stale_codes),
        "lastError": task.last_error,
        "lastStatusCode": task.last_status_code,
        "createdAt": timestamp_text(task.created_at),
        "updatedAt": timestamp_text(task.updated_at),
        "resolvedAt": timestamp_text(task.resolved_at),
        "schedule": task.schedule,
    }

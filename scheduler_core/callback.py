"""The callback: the request every attempt sends, whatever the transport.

SPEC.md, "The callback": `POST webhookUrl` with Content-Type, User-Agent,
X-Scheduler-Task-Id, X-Scheduler-Attempt, traceparent (the W3C Trace Context the enqueue
carried, when it had one; the same on every attempt), Authorization (the task's
webhookAuth, when it has one), X-Scheduler-Complete-Url and X-Scheduler-Fail-Url (the
attempt's one-time completion URLs, for a receiver that answers 202 with Scheduler-Async),
and the JSON body `{"taskId", "executeAt", "attempt", "payload"}`. Delivery plugins send
this as built; they never build their own.

With SCHEDULER_SIGNING_SECRET set, the callback is signed in the Standard Webhooks format
(``scheduler_core.signing``): `webhook-id` is the task id (the same on every retry, as the
spec asks of a retried message), `webhook-timestamp` the Unix second the attempt's request
was built (just before it is sent), and `webhook-signature` one `v1,...` per secret over
exactly these body bytes. Every transport carries them, since they are built here.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from types import MappingProxyType

from scheduler_core import __version__
from scheduler_core.models import Callback, ClaimedTask
from scheduler_core.signing import Signer

USER_AGENT = f"scheduler-core/{__version__}"


def build_callback(
    task: ClaimedTask,
    timeout_ms: int,
    signer: Signer | None = None,
    now: float | None = None,
    completion_urls: tuple[str, str] | None = None,
) -> Callback:
    """The callback for `task`'s current attempt; `timeout_ms` is the attempt's budget.

    With a `signer`, the Standard Webhooks headers follow the others; `now` (Unix time,
    default the clock) gives their timestamp. `completion_urls` (complete, fail) are this
    attempt's one-time URLs, sent as X-Scheduler-Complete-Url and X-Scheduler-Fail-Url.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Scheduler-Task-Id": task.id,
        "X-Scheduler-Attempt": str(task.attempt),
    }
    if task.traceparent is not None:
        headers["traceparent"] = task.traceparent
    if task.webhook_auth is not None:
        headers["Authorization"] = task.webhook_auth
    if completion_urls is not None:  # for a 202 with Scheduler-Async (completion.py)
        headers["X-Scheduler-Complete-Url"], headers["X-Scheduler-Fail-Url"] = completion_urls
    body = callback_body(task)
    if signer is not None:
        timestamp = int(time.time() if now is None else now)
        headers.update(signer.headers(task.id, timestamp, body))
    return Callback(
        url=task.webhook_url,
        headers=MappingProxyType(headers),
        body=body,
        task_id=task.id,
        attempt=task.attempt,
        timeout_ms=timeout_ms,
    )


def callback_body(task: ClaimedTask) -> bytes:
    """The envelope as bytes. The payload is spliced in as stored: no second parse, so
    its key order and number spellings reach the receiver unchanged."""
    return (
        f'{{"taskId": {json.dumps(task.id)}, '
        f'"executeAt": {json.dumps(format_timestamp(task.execute_at))}, '
        f'"attempt": {task.attempt}, "payload": {task.payload_json}}}'
    ).encode()


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as the API shows times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

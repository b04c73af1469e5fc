"""The client's schedule methods (`Client` inherits them) and the `Schedule` result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from scheduler_core.client.results import (
    BadResponse,
    Task,
    _codes,
    _object,
    _required_time,
    format_time,
    parse_time,
)

if TYPE_CHECKING:
    from scheduler_core.client.transport import Transport

SCHEDULES = "/api/v1/schedules"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave as it is", apart from None (JSON null)


@dataclass(frozen=True)
class Schedule:
    """A schedule as the API returns it. `webhook_auth` is write-only: never here."""

    name: str
    cron: str
    timezone: str
    catch_up: str
    paused: bool
    webhook_url: str
    queue: str
    created_at: datetime
    updated_at: datetime
    payload: Any = None
    max_retries: int | None = None
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    not_after: datetime | None = None
    success_codes: tuple[int | str, ...] | None = None
    stale_codes: tuple[int | str, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> Schedule:
        data = _object(value, "a schedule")
        try:
            return cls(
                name=data["name"],
                cron=data["cron"],
                timezone=data.get("timezone") or "UTC",
                catch_up=data.get("catchUp") or "latest",
                paused=bool(data.get("paused")),
                webhook_url=data["webhookUrl"],
                queue=data.get("queue") or "default",
                created_at=_required_time(data, "createdAt"),
                updated_at=_required_time(data, "updatedAt"),
                payload=data.get("payload"),
                max_retries=data.get("maxRetries"),
                next_fire_at=parse_time(data.get("nextFireAt")),
                last_fire_at=parse_time(data.get("lastFireAt")),
                not_after=parse_time(data.get("notAfter")),
                success_codes=_codes(data.get("successCodes")),
                stale_codes=_codes(data.get("staleCodes")),
                raw=data,
            )
        except KeyError as exc:
            raise BadResponse(f"the schedule has no {exc.args[0]}") from None


def _path(name: str, verb: str = "") -> str:
    if not name:
        raise ValueError("a schedule name is required")
    return f"{SCHEDULES}/{quote(name, safe='')}{verb}"


def _template(
    body: dict[str, Any],
    *,
    webhook_url: str | None,
    auth: str | None,
    payload: Any,
    queue: str | None,
    max_retries: int | None,
) -> dict[str, Any]:
    if webhook_url is not None:
        body["webhookUrl"] = webhook_url
    if auth is not UNSET:
        body["webhookAuth"] = auth
    if payload is not UNSET:
        body["payload"] = payload
    if queue is not None:
        body["queue"] = queue
    if max_retries is not UNSET:
        body["maxRetries"] = max_retries
    return body


class ScheduleMethods:
    """`/api/v1/schedules`: create, list, read, change, delete, pause, resume, trigger."""

    _http: Transport

    def create_schedule(
        self,
        name: str,
        cron: str,
        webhook_url: str,
        *,
        timezone: str | None = None,
        catch_up: str | None = None,
        paused: bool = False,
        auth: str | None = None,
        payload: Any = UNSET,
        queue: str | None = None,
        max_retries: int | None = None,
        not_after: datetime | str | None = None,
        success_codes: Sequence[int | str] | None = None,
        stale_codes: Sequence[int | str] | None = None,
    ) -> Schedule:
        """Create a schedule: every fire time of `cron` (five fields) in `timezone`
        (IANA, default UTC) enqueues a task POSTing `webhook_url` with `payload`, and
        the delivery rules given (`not_after`, `success_codes`, `stale_codes`).
        `catch_up`: ``latest`` (default) or ``none``. Conflict (409) when the name is
        taken, ValidationError (400) naming the refused fields. Sent once: a retry would
        meet its own creation."""
        body: dict[str, Any] = {"name": name, "cron": cron}
        if timezone is not None:
            body["timezone"] = timezone
        if catch_up is not None:
            body["catchUp"] = catch_up
        if paused:
            body["paused"] = True
        _template(
            body,
            webhook_url=webhook_url,
            auth=UNSET if auth is None else auth,
            payload=payload,
            queue=queue,
            max_retries=UNSET if max_retries is None else max_retries,
        )
        if not_after is not None:
            body["notAfter"] = format_time(not_after)
        if success_codes is not None:
            body["successCodes"] = list(success_codes)
        if stale_codes is not None:
            body["staleCodes"] = list(stale_codes)
        response = self._http.request("POST", SCHEDULES, body=body, retry=False)
        return Schedule.from_json(response.json())

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        response = self._http.request("GET", SCHEDULES, retry=True)
        return [Schedule.from_json(s) for s in response.json().get("schedules") or ()]

    def get_schedule(self, name: str) -> Schedule:
        """One schedule. NotFound (404)."""
        return Schedule.from_json(self._http.request("GET", _path(name), retry=True).json())

    def update_schedule(
        self,
        name: str,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        catch_up: str | None = None,
        webhook_url: str | None = None,
        auth: str | None = UNSET,
        payload: Any = UNSET,
        queue: str | None = None,
        max_retries: int | None = UNSET,
    ) -> Schedule:
        """Change the fields given (`auth=None` removes the webhookAuth, `max_retries=None`
        the override). A new cron or timezone moves nextFireAt to the first fire time
        from now. Safe to retry: the values are absolute."""
        body: dict[str, Any] = {}
        if cron is not None:
            body["cron"] = cron
        if timezone is not None:
            body["timezone"] = timezone
        if catch_up is not None:
            body["catchUp"] = catch_up
        _template(
            body,
            webhook_url=webhook_url,
            auth=auth,
            payload=payload,
            queue=queue,
            max_retries=max_retries,
        )
        if not body:
            raise ValueError("update_schedule needs at least one field to change")
        response = self._http.request("PATCH", _path(name), body=body, retry=True)
        return Schedule.from_json(response.json())

    def delete_schedule(self, name: str) -> Schedule:
        """Delete a schedule; it is returned as it was. NotFound (404)."""
        return Schedule.from_json(self._http.request("DELETE", _path(name), retry=False).json())

    def pause_schedule(self, name: str) -> Schedule:
        """Pause: nothing fires until resumed. Idempotent, so retried."""
        response = self._http.request("POST", _path(name, "/pause"), retry=True)
        return Schedule.from_json(response.json())

    def resume_schedule(self, name: str) -> Schedule:
        """Resume from the next fire time after now. Idempotent, so retried."""
        response = self._http.request("POST", _path(name, "/resume"), retry=True)
        return Schedule.from_json(response.json())

    def trigger_schedule(self, name: str) -> Task:
        """Enqueue one run of the schedule's task now; the task. Sent once."""
        response = self._http.request("POST", _path(name, "/trigger"), retry=False)
        return Task.from_json(response.json())

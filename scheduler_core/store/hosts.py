"""The store's per-host backpressure verbs, over `scheduler_hosts` (one row per throttled
host, shared by every dispatcher): which hosts' tasks a claim leaves alone, how limited
hosts are claimed within their limits, and the feedback of answers (AIMD, host_limits.py).
Mixed into SqlStore.

The normal path costs nothing: `dispatch_state` learns at every wake-up whether any host
row exists (one EXISTS in its query); while none does, claims run `claim_due` exactly as
before. Otherwise a claim reads the host rows, skips the tasks of blocked hosts and of
limited ones, then takes each limited host's share under that host's row lock (taken
after the queue's, the one lock order of every claim).
"""

from __future__ import annotations

import json
import math
import threading
import time
from abc import abstractmethod
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from scheduler_core.store.host_limits import (
    OBSERVED_RATE_WINDOW_S,
    RECOVERY_STEP_S,
    HostInfo,
    HostLimits,
    forgotten,
    halved,
    host_tokens,
    raised,
)

if TYPE_CHECKING:
    from scheduler_core.store.sql_store import Cursor, Row

# A host at its concurrency limit is looked at again this soon (another dispatcher's
# callback ending sends no notice).
HOST_RECHECK_S = 0.05
# A throttled host heard from neither by a 429/503 nor by a success for this long (seconds)
# is forgotten: unlimited again, and no cost to any claim.
HOST_IDLE_FORGET_S = 60.0


def with_host_claims(queries: dict[str, str]) -> dict[str, str]:
    """The backend's queries with claim_due's `{host_filter}` filled: TRUE in claim_due
    (the normal path), the host filter in claim_due_hosts."""
    claim = queries["claim_due"]
    lines = queries["host_filter"].splitlines()
    host_filter = "(" + " ".join(x.strip() for x in lines if not x.lstrip().startswith("--")) + ")"
    return {
        **queries,
        "claim_due": claim.replace("{host_filter}", "TRUE"),
        "claim_due_hosts": claim.replace("{host_filter}", host_filter),
    }


@dataclass(frozen=True)
class HostHolds:
    """What the host rows mean for a claim now: `held`, the hosts whose tasks may not
    start (blocked, or at a limit); `limited`, the unblocked hosts with limits (claimed
    one by one); `reopen_at`, the database time the earliest hold may end; `known`,
    every host with a row."""

    held: frozenset[str] = frozenset()
    limited: tuple[str, ...] = ()
    reopen_at: datetime | None = None
    known: frozenset[str] = frozenset()


@dataclass
class _LocalHolds:
    """Hosts this process saw throttle, held until their feedback is stored (monotonic
    deadlines), so this process's next claim skips them before any write commits."""

    until: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self) -> dict[str, float]:
        now = time.monotonic()
        with self.lock:
            for host in [h for h, t in self.until.items() if t <= now]:
                del self.until[host]
            return {h: t - now for h, t in self.until.items()}


class HostVerbs:
    q: dict[str, str]
    # Whether the last look found a host row (True until a first look: safe).
    _hosts_seen: bool = True
    _known_hosts: frozenset[str] = frozenset()

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]: ...

    @abstractmethod
    def _time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _held_param(self, hosts: Collection[str]) -> Any:
        """A list of host keys as host_filter / next_due_unheld take it (None: none)."""

    def _local_holds(self) -> _LocalHolds:
        holds = self.__dict__.get("_local_holds_state")
        if holds is None:
            holds = self.__dict__.setdefault("_local_holds_state", _LocalHolds())
        return holds

    # -- what a dispatcher reads -------------------------------------------------------

    def known_hosts(self) -> frozenset[str]:
        """The hosts that had a row at this store's last look (a dispatcher's wake-up)."""
        return self._known_hosts

    def _note_hosts_exist(self, exist: bool) -> None:
        self._hosts_seen = exist
        if not exist:
            self._known_hosts = frozenset()

    def _hosts_in_play(self) -> bool:
        return self._hosts_seen or bool(self._local_holds().current())

    def _host_holds(self, cur: Cursor) -> HostHolds:
        cur.execute(self.q["host_states"])
        rows = list(cur.fetchall())
        local = self._local_holds().current()
        held, limited, reopen = set(local), [], []
        db_now = self._time(rows[0]["db_now"]) if rows else None
        for row in rows:
            host = row["host"]
            if host in local:
                continue
            now = self._time(row["db_now"])
            if row["blocked"]:
                held.add(host)
                reopen.append(self._time(row["blocked_until"]))
                continue
            concurrency, rate = row["max_concurrent"], row["max_per_second"]
            if concurrency is None and rate is None:
                continue
            limited.append(host)
            if concurrency is not None and int(row["running"]) >= concurrency:
                held.add(host)
                reopen.append(now + timedelta(seconds=HOST_RECHECK_S))
            elif rate:
                elapsed = (now - self._time(row["bucket_at"])).total_seconds()
                tokens = host_tokens(float(row["bucket_tokens"]), elapsed, float(rate))
                if tokens < 1.0 - 1e-9:
                    held.add(host)
                    reopen.append(now + timedelta(seconds=(1.0 - tokens) / float(rate)))
        if local and db_now is not None:
            reopen.extend(db_now + timedelta(seconds=left) for left in local.values())
        self._known_hosts = frozenset(row["host"] for row in rows)
        return HostHolds(
            held=frozenset(held),
            limited=tuple(sorted(limited)),
            reopen_at=min(reopen) if reopen else None,
            known=self._known_hosts,
        )

    def _next_due_unheld(self, cur: Cursor, held: Collection[str]) -> dict[str, Any]:
        """Each open queue's earliest nextAttemptAt over tasks not bound for `held`."""
        cur.execute(self.q["next_due_unheld"], {"held": self._held_param(held)})
        return {row["queue"]: row["next_due"] for row in cur.fetchall()}

    # -- claims --------------------------------------------------------------------------

    def _claim_rows(
        self,
        cur: Cursor,
        limit: int,
        lease_ms: int,
        queue: str,
        held: Collection[str] = (),
        only_host: str | None = None,
    ) -> list[Row]:
        params = {
            "limit": limit,
            "lease_ms": lease_ms,
            "queue": queue,
            "held": self._held_param(held),
            "only_host": only_host,
        }
        cur.execute(self.q["claim_due_hosts"], params)
        return list(cur.fetchall())

    def _claim_by_host(self, cur: Cursor, limit: int, lease_ms: int, queue: str) -> list[Row]:
        """Up to `limit` due tasks of `queue`: none bound for a blocked host, and each
        limited host's within its max_concurrent running and its max_per_second bucket."""
        holds = self._host_holds(cur)
        skip = holds.held | set(holds.limited)
        rows = self._claim_rows(cur, limit, lease_ms, queue, held=skip)
        open_limited = [h for h in holds.limited if h not in holds.held]
        if len(rows) >= limit or not open_limited:
            return rows
        cur.execute(
            self.q["due_limited_hosts"], {"queue": queue, "hosts": self._held_param(open_limited)}
        )
        due = {row["host"] for row in cur.fetchall()}
        for host in open_limited:  # in key order: one lock order across dispatchers
            if len(rows) >= limit:
                break
            if host in due:
                rows += self._claim_limited_host(cur, host, limit - len(rows), lease_ms, queue)
        return rows

    def forget_idle_hosts(self, idle_s: float = HOST_IDLE_FORGET_S) -> int:
        """Forget the hosts not blocked and not heard from for `idle_s` seconds; how
        many. (Retention calls it each round.)"""
        with self._tx() as cur:
            cur.execute(self.q["forget_idle_hosts"], {"idle_s": idle_s})
            return int(cur.rowcount)  # type: ignore[attr-defined]

    def _claim_limited_host(
        self, cur: Cursor, host: str, wanted: int, lease_ms: int, queue: str
    ) -> list[Row]:
        cur.execute(self.q["lock_host"], {"host": host})
        row = cur.fetchone()
        if row is None:  # blocked since, or forgotten: the next claim sees which
            return []
        room = wanted
        if row["max_concurrent"] is not None:
            cur.execute(self.q["running_to_host"], {"host": host})
            room = min(room, int(row["max_concurrent"]) - int(cur.fetchone()["running"]))
        rate = row["max_per_second"]
        tokens, clock = 0.0, None
        if rate:
            cur.execute(self.q["precise_clock"])
            clock = cur.fetchone()["clock"]
            elapsed = (self._time(clock) - self._time(row["bucket_at"])).total_seconds()
            tokens = host_tokens(float(row["bucket_tokens"]), elapsed, float(rate))
            room = min(room, math.floor(tokens + 1e-9))
        taken = self._claim_rows(cur, room, lease_ms, queue, only_host=host) if room > 0 else []
        if rate:
            cur.execute(
                self.q["store_host_bucket"],
                {"host": host, "tokens": tokens - len(taken), "clock": clock},
            )
        return taken

    # -- feedback ------------------------------------------------------------------------

    def hold_host_locally(self, host: str, seconds: float) -> None:
        """Skip `host`'s tasks in this process's claims for `seconds` (or until its
        throttling is stored), before the feedback's write commits."""
        holds = self._local_holds()
        with holds.lock:
            holds.until[host] = max(holds.until.get(host, 0.0), time.monotonic() + seconds)

    def record_host_feedback(
        self, throttles: Mapping[str, tuple[int, int]], successes: Collection[str]
    ) -> None:
        """Store a batch of answers per host, in one transaction, hosts in key order.
        `throttles`: host → (block in ms, how many 429/503 answers); the host is blocked
        until now + block (never earlier than it was) and its limits halved once per
        batch. `successes`: hosts that resolved a task; each existing, unblocked one is
        raised one step (at most one per RECOVERY_STEP_S), and forgotten once its limits
        are no use."""
        with self._tx() as cur:
            for host in sorted(set(throttles) | set(successes)):
                if host in throttles:
                    self._throttle(cur, host, *throttles[host])
                else:
                    self._recover(cur, host)
        if throttles:
            self._hosts_seen = True
            holds = self._local_holds()
            with holds.lock:
                for host in throttles:
                    holds.until.pop(host, None)

    def _throttle(self, cur: Cursor, host: str, block_ms: int, answers: int) -> None:
        cur.execute(self.q["ensure_host"], {"host": host})
        cur.execute(self.q["lock_host_for_feedback"], {"host": host})
        row = cur.fetchone()
        old = _limits_of(row)
        running = observed = 0.0
        if old is None:
            cur.execute(self.q["running_to_host"], {"host": host})
            running = float(cur.fetchone()["running"])
            window_ms = int(OBSERVED_RATE_WINDOW_S * 1000)
            cur.execute(self.q["host_recent_starts"], {"host": host, "window_ms": window_ms})
            observed = float(cur.fetchone()["starts"]) / OBSERVED_RATE_WINDOW_S
        new = halved(old, int(running), observed)
        cur.execute(
            self.q["throttle_host"],
            {
                "host": host,
                "block_ms": block_ms,
                "max_concurrent": new.max_concurrent,
                "max_per_second": new.max_per_second,
                "answers": answers,
            },
        )

    def _recover(self, cur: Cursor, host: str) -> None:
        cur.execute(self.q["lock_host_for_feedback"], {"host": host})
        row = cur.fetchone()
        if row is None or row["blocked"] or float(row["idle_s"]) < RECOVERY_STEP_S:
            return
        old = _limits_of(row)
        new = raised(old) if old is not None else None
        if new is None or forgotten(new):
            cur.execute(self.q["forget_host"], {"host": host})
            return
        cur.execute(
            self.q["raise_host"],
            {
                "host": host,
                "max_concurrent": new.max_concurrent,
                "max_per_second": new.max_per_second,
            },
        )

    # -- reading -------------------------------------------------------------------------

    def list_hosts(self) -> list[HostInfo]:
        """Every throttled host (a row of scheduler_hosts), most throttled first."""
        with self._read() as cur:
            cur.execute(self.q["list_hosts"])
            rows = cur.fetchall()
        return [
            HostInfo(
                host=r["host"],
                blocked_s=round(float(r["blocked_s"]), 3),
                blocked_until=self._time(r["blocked_until"]),
                max_concurrent=r["max_concurrent"],
                max_per_second=float(r["max_per_second"])
                if r["max_per_second"] is not None
                else None,
                throttled_total=int(r["throttled_total"]),
                updated_at=self._time(r["updated_at"]),
            )
            for r in rows
        ]


def _limits_of(row: Row | None) -> HostLimits | None:
    if row is None or row["max_concurrent"] is None or row["max_per_second"] is None:
        return None
    return HostLimits(int(row["max_concurrent"]), float(row["max_per_second"]))


def held_json(hosts: Collection[str]) -> str | None:
    """SQLite's spelling of a host list: a JSON array, None when empty."""
    return json.dumps(sorted(hosts)) if hosts else None

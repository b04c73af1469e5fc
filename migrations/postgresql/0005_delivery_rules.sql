-- Delivery rules: what the sender and the receiver decide, and per-host backpressure.
--
-- Every statement keeps the rows already stored; the new task columns are NULL (no rule)
-- or 0 for them.

ALTER TABLE scheduler_tasks
    -- the sender's rules: never called after not_after; success_codes / stale_codes as the
    -- JSON array the sender gave ([200, "2xx"]), NULL for the defaults (["2xx"] / none)
    ADD COLUMN not_after timestamptz,
    ADD COLUMN success_codes text,
    ADD COLUMN stale_codes text,
    -- W3C Trace Context: the enqueue's traceparent, sent with every callback
    ADD COLUMN traceparent text,
    -- Scheduler-Snooze answers since the last attempt that was not a snooze
    ADD COLUMN snoozes_in_row integer NOT NULL DEFAULT 0 CHECK (snoozes_in_row >= 0),
    -- set while the current attempt waits for its completion URL (a 202 with
    -- Scheduler-Async): the seconds the receiver asked for; NULL otherwise
    ADD COLUMN async_timeout_s integer CHECK (async_timeout_s BETWEEN 1 AND 86400),
    -- host[:port] of webhook_url, lower case: the key of per-host backpressure
    ADD COLUMN target_host text;

-- An attempt answered 202 with Scheduler-Async: until when its completion URLs are good
-- (after it a call is 410 gone); NULL for every other attempt.
ALTER TABLE scheduler_attempts ADD COLUMN async_deadline timestamptz;

ALTER TABLE scheduler_schedules
    ADD COLUMN not_after timestamptz,
    ADD COLUMN success_codes text,
    ADD COLUMN stale_codes text;

-- Backpressure per target host, shared by every dispatcher: after a 429 or 503 the host's
-- tasks wait until blocked_until, and its concurrency and start rate are limited (NULL: no
-- limit), halved at each such answer and raised step by step on success (AIMD).
CREATE TABLE scheduler_hosts (
    host            text PRIMARY KEY,
    blocked_until   timestamptz NOT NULL DEFAULT now(),
    max_concurrent  integer CHECK (max_concurrent >= 1),
    max_per_second  double precision CHECK (max_per_second > 0),
    bucket_tokens   double precision NOT NULL DEFAULT 0,
    bucket_at       timestamptz NOT NULL DEFAULT now(),
    throttled_total bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Keys the servers share, made once by the first process that needs one (from Python's
-- `secrets`): the HMAC key of the async completion URLs, so every server verifies what any
-- server or worker signed, across restarts.
CREATE TABLE scheduler_keys (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Callbacks in flight, counted at each limited claim (a queue's max_concurrent_dispatches,
-- a throttled host's max_concurrent): a task waiting for its completion URL
-- (Scheduler-Async) is running but holds no callback, so it is left out of both.
CREATE INDEX scheduler_tasks_running_host ON scheduler_tasks (target_host)
    WHERE status = 'running' AND async_timeout_s IS NULL;
DROP INDEX scheduler_tasks_running_queue;
CREATE INDEX scheduler_tasks_running_queue ON scheduler_tasks (queue)
    WHERE status = 'running' AND async_timeout_s IS NULL;

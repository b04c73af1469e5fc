-- Delivery rules: what the sender and the receiver decide, and per-host backpressure.
--
-- Every statement keeps the rows already stored; the new task columns are NULL (no rule)
-- or 0 for them. Times are Unix milliseconds, as in the other tables.

-- the sender's rules: never called after not_after; success_codes / stale_codes as the
-- JSON array the sender gave ([200, "2xx"]), NULL for the defaults (["2xx"] / none)
ALTER TABLE scheduler_tasks ADD COLUMN not_after INTEGER;
ALTER TABLE scheduler_tasks ADD COLUMN success_codes TEXT;
ALTER TABLE scheduler_tasks ADD COLUMN stale_codes TEXT;
-- W3C Trace Context: the enqueue's traceparent, sent with every callback
ALTER TABLE scheduler_tasks ADD COLUMN traceparent TEXT;
-- Scheduler-Snooze answers since the last attempt that was not a snooze
ALTER TABLE scheduler_tasks
    ADD COLUMN snoozes_in_row INTEGER NOT NULL DEFAULT 0 CHECK (snoozes_in_row >= 0);
-- set while the current attempt waits for its completion URL (a 202 with
-- Scheduler-Async): the seconds the receiver asked for; NULL otherwise
ALTER TABLE scheduler_tasks
    ADD COLUMN async_timeout_s INTEGER CHECK (async_timeout_s BETWEEN 1 AND 86400);
-- host[:port] of webhook_url, lower case: the key of per-host backpressure
ALTER TABLE scheduler_tasks ADD COLUMN target_host TEXT;

-- An attempt answered 202 with Scheduler-Async: until when its completion URLs are good
-- (after it a call is 410 gone); NULL for every other attempt.
ALTER TABLE scheduler_attempts ADD COLUMN async_deadline INTEGER;

ALTER TABLE scheduler_schedules ADD COLUMN not_after INTEGER;
ALTER TABLE scheduler_schedules ADD COLUMN success_codes TEXT;
ALTER TABLE scheduler_schedules ADD COLUMN stale_codes TEXT;

-- Backpressure per target host, shared by every dispatcher on the file: after a 429 or 503
-- the host's tasks wait until blocked_until, and its concurrency and start rate are
-- limited (NULL: no limit), halved at each such answer and raised step by step on success.
CREATE TABLE scheduler_hosts (
    host            TEXT PRIMARY KEY,
    blocked_until   INTEGER NOT NULL DEFAULT 0,
    max_concurrent  INTEGER CHECK (max_concurrent >= 1),
    max_per_second  REAL CHECK (max_per_second > 0),
    bucket_tokens   REAL NOT NULL DEFAULT 0,
    bucket_at       INTEGER NOT NULL DEFAULT 0,
    throttled_total INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL DEFAULT 0
);

-- Keys the servers share, made once by the first process that needs one (from Python's
-- `secrets`): the HMAC key of the async completion URLs.
CREATE TABLE scheduler_keys (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT 0
);

-- Callbacks in flight, counted at each limited claim (a queue's max_concurrent_dispatches,
-- a throttled host's max_concurrent): a task waiting for its completion URL
-- (Scheduler-Async) is running but holds no callback, so it is left out of both.
CREATE INDEX scheduler_tasks_running_host ON scheduler_tasks (target_host)
    WHERE status = 'running' AND async_timeout_s IS NULL;
DROP INDEX scheduler_tasks_running_queue;
CREATE INDEX scheduler_tasks_running_queue ON scheduler_tasks (queue)
    WHERE status = 'running' AND async_timeout_s IS NULL;

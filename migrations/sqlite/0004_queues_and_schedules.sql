-- Named queues and schedules.
--
-- The configuration table keeps its shape, a column per key, and gets a row per queue
-- (the old single row becomes the `default` queue's). SQLite cannot change a primary key
-- in place: the table is rebuilt (new table, copy, drop, rename). The migration runner
-- turns foreign keys off around every migration and checks them before it commits, so a
-- rebuild never cascades a delete into rows that refer to the old table.

CREATE TABLE scheduler_config_new (
    queue                     TEXT PRIMARY KEY
                              CHECK (length(queue) BETWEEN 1 AND 64
                                     AND queue NOT GLOB '*[^A-Za-z0-9_.-]*'
                                     AND queue NOT IN ('.', '..')),
    base_interval_ms          INTEGER NOT NULL DEFAULT 1000
                              CHECK (base_interval_ms BETWEEN 10 AND 3600000),
    http_callback_timeout_ms  INTEGER NOT NULL DEFAULT 5000
                              CHECK (http_callback_timeout_ms BETWEEN 100 AND 1800000),
    select_size               INTEGER NOT NULL DEFAULT 100
                              CHECK (select_size BETWEEN 1 AND 10000),
    max_retries               INTEGER NOT NULL DEFAULT 5
                              CHECK (max_retries BETWEEN 0 AND 1000),
    retry_backoff_ms          INTEGER NOT NULL DEFAULT 1000
                              CHECK (retry_backoff_ms BETWEEN 0 AND 86400000),
    retry_backoff_max_ms      INTEGER NOT NULL DEFAULT 3600000
                              CHECK (retry_backoff_max_ms BETWEEN 0 AND 604800000),
    retention_hours           INTEGER NOT NULL DEFAULT 168
                              CHECK (retention_hours BETWEEN 1 AND 87600),
    -- the queue's rate and concurrency across every dispatcher; 0 = no limit
    max_dispatches_per_second INTEGER NOT NULL DEFAULT 0
                              CHECK (max_dispatches_per_second BETWEEN 0 AND 100000),
    max_concurrent_dispatches INTEGER NOT NULL DEFAULT 0
                              CHECK (max_concurrent_dispatches BETWEEN 0 AND 100000),
    paused                    INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- the token bucket of max_dispatches_per_second: tokens left at bucket_at, taken in
    -- the claim's (write-locked) transaction
    bucket_tokens             REAL NOT NULL DEFAULT 0,
    bucket_at                 INTEGER NOT NULL DEFAULT 0,
    created_at                INTEGER NOT NULL DEFAULT 0,
    updated_at                INTEGER NOT NULL DEFAULT 0,
    CHECK (retry_backoff_max_ms >= retry_backoff_ms)
);

INSERT INTO scheduler_config_new
    (queue, base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
     retry_backoff_ms, retry_backoff_max_ms, retention_hours, created_at, updated_at)
SELECT 'default', base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
       retry_backoff_ms, retry_backoff_max_ms, retention_hours, updated_at, updated_at
FROM scheduler_config;

DROP TABLE scheduler_config;
ALTER TABLE scheduler_config_new RENAME TO scheduler_config;

ALTER TABLE scheduler_tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
-- the schedule whose fire made the task, NULL for an enqueue through the API
ALTER TABLE scheduler_tasks ADD COLUMN schedule TEXT;

-- The claim reads one queue's pending tasks in claim order.
DROP INDEX scheduler_tasks_due;
CREATE INDEX scheduler_tasks_due
    ON scheduler_tasks (queue, has_failed, next_attempt_at, seq) WHERE status = 'pending';
-- A queue's callbacks in flight (max_concurrent_dispatches), counted at each claim.
CREATE INDEX scheduler_tasks_running_queue ON scheduler_tasks (queue) WHERE status = 'running';
-- The list API and the bulk verbs filtered by queue, newest first.
CREATE INDEX scheduler_tasks_queue_seq ON scheduler_tasks (queue, seq);
-- Tasks by queue and status (/metrics, /api/v1/stats, the queue API): counted from the
-- index alone, never the table.
CREATE INDEX scheduler_tasks_queue_status ON scheduler_tasks (queue, status);

CREATE TABLE scheduler_schedules (
    name          TEXT PRIMARY KEY
                  CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9_.-]*'
                         AND name NOT IN ('.', '..')),
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL DEFAULT 'UTC',
    catch_up      TEXT NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'none')),
    paused        INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- the task template
    webhook_url   TEXT NOT NULL,
    webhook_auth  TEXT,
    payload       TEXT NOT NULL DEFAULT 'null',  -- JSON text, as stored
    queue         TEXT NOT NULL DEFAULT 'default',
    max_retries   INTEGER CHECK (max_retries BETWEEN 0 AND 1000),
    -- the next fire time not yet enqueued (NULL while paused), and the last one enqueued
    next_fire_at  INTEGER,
    last_fire_at  INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX scheduler_schedules_due ON scheduler_schedules (next_fire_at) WHERE paused = 0;

-- Named queues and schedules.
--
-- The configuration table keeps its shape, a column per key, and gets a row per queue
-- (the old single row becomes the `default` queue's). Tasks name their queue and the
-- schedule that made them. Every statement keeps the rows already stored.

ALTER TABLE scheduler_config DROP COLUMN singleton;  -- with its primary key and CHECK
ALTER TABLE scheduler_config ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE scheduler_config ALTER COLUMN queue DROP DEFAULT;
ALTER TABLE scheduler_config ADD PRIMARY KEY (queue);
ALTER TABLE scheduler_config
    ADD CONSTRAINT scheduler_config_queue_name
        CHECK (queue ~ '^[A-Za-z0-9_.-]{1,64}$' AND queue NOT IN ('.', '..')),
    -- the queue's rate and concurrency across every dispatcher; 0 = no limit
    ADD COLUMN max_dispatches_per_second integer NOT NULL DEFAULT 0
        CHECK (max_dispatches_per_second BETWEEN 0 AND 100000),
    ADD COLUMN max_concurrent_dispatches integer NOT NULL DEFAULT 0
        CHECK (max_concurrent_dispatches BETWEEN 0 AND 100000),
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    -- the token bucket of max_dispatches_per_second: tokens left at bucket_at, taken in
    -- the claim's transaction under this row's lock
    ADD COLUMN bucket_tokens double precision NOT NULL DEFAULT 0,
    ADD COLUMN bucket_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
-- The default queue's row is as old as the configuration was: never made after its change.
UPDATE scheduler_config SET created_at = updated_at;

ALTER TABLE scheduler_tasks
    ADD COLUMN queue text NOT NULL DEFAULT 'default',
    -- the schedule whose fire made the task, NULL for an enqueue through the API
    ADD COLUMN schedule text;

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
    name          text PRIMARY KEY
                  CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$' AND name NOT IN ('.', '..')),
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    catch_up      text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'none')),
    paused        boolean NOT NULL DEFAULT false,
    -- the task template
    webhook_url   text NOT NULL,
    webhook_auth  text,
    payload       json,
    queue         text NOT NULL DEFAULT 'default',
    max_retries   integer CHECK (max_retries BETWEEN 0 AND 1000),
    -- the next fire time not yet enqueued (NULL while paused), and the last one enqueued
    next_fire_at  timestamptz,
    last_fire_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX scheduler_schedules_due ON scheduler_schedules (next_fire_at) WHERE NOT paused;

-- scheduler export / scheduler import (store/sql_transfer.py): tasks with their attempt
-- history, every queue's config row and every schedule, moved between databases.

-- name: export_counts
-- scheduler export's drain check: tasks by status, and running ones whose lease expired.
SELECT status, count(*) AS tasks,
       count(*) FILTER (WHERE status = 'running' AND lease_expires_at <= now()) AS expired
FROM scheduler_tasks GROUP BY status

-- name: begin_snapshot
-- One snapshot for a whole export read page by page: a task that changes meanwhile is
-- read as it was, once.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY

-- name: export_tasks
-- The next page of tasks in the given statuses, in creation order, with what the API never
-- shows: the stored webhookAuth, the payload's stored text, the retry budget's start.
SELECT id::text AS id, seq, webhook_url, webhook_auth,
       coalesce(payload::text, 'null') AS payload_json, execute_at, next_attempt_at, status,
       attempts, budget_start, max_retries, has_failed, idempotency_key, last_error,
       last_status_code, created_at, updated_at, resolved_at, queue, schedule, not_after,
       success_codes, stale_codes, traceparent
FROM scheduler_tasks
WHERE status = ANY(%(statuses)s::text[]) AND seq > %(after)s
ORDER BY seq
LIMIT %(limit)s

-- name: export_attempts
SELECT task_id::text AS task_id, attempt, started_at, finished_at, duration_ms, status_code,
       error, outcome, lateness_ms
FROM scheduler_attempts
WHERE task_id = ANY(%(ids)s::uuid[])
ORDER BY task_id, attempt

-- name: export_queues
-- Every queue's config row, by name (the token bucket is the database's own: not moved).
SELECT queue AS name, paused, {config_columns}
FROM scheduler_config
ORDER BY queue COLLATE "C"

-- name: export_schedules
-- Every schedule, by name, its webhookAuth as stored and its payload's stored text.
SELECT name, cron, timezone, catch_up, paused, webhook_url, webhook_auth,
       coalesce(payload::text, 'null') AS payload_json, queue, max_retries, next_fire_at,
       last_fire_at, created_at, updated_at, not_after, success_codes, stale_codes
FROM scheduler_schedules
ORDER BY name COLLATE "C"

-- name: import_tasks
-- Tasks of an export, ids kept, in the order given (so seq keeps their creation order). A
-- task whose id is here already, or whose idempotency key another task holds, is skipped.
INSERT INTO scheduler_tasks
    (id, webhook_url, webhook_auth, payload, execute_at, next_attempt_at, status, attempts,
     budget_start, max_retries, has_failed, idempotency_key, last_error, last_status_code,
     created_at, updated_at, resolved_at, queue, schedule, not_after, success_codes,
     stale_codes, traceparent, target_host)
SELECT t.id, t.webhook_url, t.webhook_auth, t.payload::json, t.execute_at, t.next_attempt_at,
       t.status, t.attempts, t.budget_start, t.max_retries, t.has_failed, t.idempotency_key,
       t.last_error, t.last_status_code, t.created_at, t.updated_at, t.resolved_at, t.queue,
       t.schedule, t.not_after, t.success_codes, t.stale_codes, t.traceparent, t.target_host
FROM ROWS FROM (
    json_to_recordset(%(tasks)s::json) AS (
        id uuid, webhook_url text, webhook_auth text, payload text, execute_at timestamptz,
        next_attempt_at timestamptz, status text, attempts integer, budget_start integer,
        max_retries integer, has_failed boolean, idempotency_key text, last_error text,
        last_status_code integer, created_at timestamptz, updated_at timestamptz,
        resolved_at timestamptz, queue text, schedule text, not_after timestamptz,
        success_codes text, stale_codes text, traceparent text, target_host text)
) WITH ORDINALITY AS t(id, webhook_url, webhook_auth, payload, execute_at, next_attempt_at,
                       status, attempts, budget_start, max_retries, has_failed,
                       idempotency_key, last_error, last_status_code, created_at,
                       updated_at, resolved_at, queue, schedule, not_after, success_codes,
                       stale_codes, traceparent, target_host, n)
ORDER BY t.n
ON CONFLICT DO NOTHING
RETURNING id::text AS id

-- name: import_attempts
-- The attempt history of imported tasks; one in flight at export is finished now, lost.
INSERT INTO scheduler_attempts
    (task_id, attempt, started_at, finished_at, duration_ms, status_code, error, outcome,
     lateness_ms)
SELECT a.task_id, a.attempt, a.started_at, coalesce(a.finished_at, now()), a.duration_ms,
       a.status_code, a.error, a.outcome, a.lateness_ms
FROM json_to_recordset(%(attempts)s::json) AS a(
    task_id uuid, attempt integer, started_at timestamptz, finished_at timestamptz,
    duration_ms integer, status_code integer, error text, outcome text, lateness_ms bigint)
ON CONFLICT DO NOTHING

-- name: existing_task_ids
SELECT id::text AS id FROM scheduler_tasks WHERE id = ANY(%(ids)s::uuid[])

-- name: import_queues
-- Queues of an export that this database lacks, with their config and pause state; a
-- queue here already is left as it is (not returned). Listening dispatchers re-read.
WITH created AS (
    INSERT INTO scheduler_config
        (queue, base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
         retry_backoff_ms, retry_backoff_max_ms, retention_hours, max_dispatches_per_second,
         max_concurrent_dispatches, paused)
    SELECT q.name, q.base_interval_ms, q.http_callback_timeout_ms, q.select_size,
           q.max_retries, q.retry_backoff_ms, q.retry_backoff_max_ms, q.retention_hours,
           q.max_dispatches_per_second, q.max_concurrent_dispatches, q.paused
    FROM json_to_recordset(%(queues)s::json) AS q(
        name text, base_interval_ms integer, http_callback_timeout_ms integer,
        select_size integer, max_retries integer, retry_backoff_ms integer,
        retry_backoff_max_ms integer, retention_hours integer,
        max_dispatches_per_second integer, max_concurrent_dispatches integer,
        paused boolean)
    ON CONFLICT (queue) DO NOTHING
    RETURNING queue
)
SELECT queue AS name, pg_notify('scheduler_core', 'config') FROM created

-- name: import_schedules
-- Schedules of an export that this database lacks, every column kept (fire times too); a
-- schedule here already is left as it is (not returned).
WITH created AS (
    INSERT INTO scheduler_schedules
        (name, cron, timezone, catch_up, paused, webhook_url, webhook_auth, payload, queue,
         max_retries, next_fire_at, last_fire_at, created_at, updated_at, not_after,
         success_codes, stale_codes)
    SELECT s.name, s.cron, s.timezone, s.catch_up, s.paused, s.webhook_url, s.webhook_auth,
           s.payload::json, s.queue, s.max_retries, s.next_fire_at, s.last_fire_at,
           s.created_at, s.updated_at, s.not_after, s.success_codes, s.stale_codes
    FROM json_to_recordset(%(schedules)s::json) AS s(
        name text, cron text, timezone text, catch_up text, paused boolean,
        webhook_url text, webhook_auth text, payload text, queue text, max_retries integer,
        next_fire_at timestamptz, last_fire_at timestamptz, created_at timestamptz,
        updated_at timestamptz, not_after timestamptz, success_codes text,
        stale_codes text)
    ON CONFLICT (name) DO NOTHING
    RETURNING name
)
SELECT name, pg_notify('scheduler_core', 'config') FROM created

-- scheduler export / scheduler import (store/sql_transfer.py): tasks with their attempt
-- history, every queue's config row and every schedule, moved between databases.

-- name: export_counts
-- scheduler export's drain check: tasks by status, and running ones whose lease expired.
SELECT status, count(*) AS tasks,
       sum(CASE WHEN status = 'running' AND lease_expires_at <= {clock} THEN 1 ELSE 0 END)
           AS expired
FROM scheduler_tasks GROUP BY status

-- name: export_tasks
-- The next page of tasks in the given statuses, in creation order, with what the API never
-- shows: the stored webhookAuth, the payload's stored text, the retry budget's start. (A
-- read transaction of SQLite is one snapshot already: the pages of an export agree.)
SELECT id, seq, webhook_url, webhook_auth, payload AS payload_json, execute_at,
       next_attempt_at, status, attempts, budget_start, max_retries, has_failed,
       idempotency_key, last_error, last_status_code, created_at, updated_at, resolved_at,
       queue, schedule, not_after, success_codes, stale_codes, traceparent
FROM scheduler_tasks
WHERE status IN (SELECT value FROM json_each(:statuses)) AND seq > :after
ORDER BY seq
LIMIT :limit

-- name: export_attempts
SELECT task_id, attempt, started_at, finished_at, duration_ms, status_code, error, outcome,
       lateness_ms
FROM scheduler_attempts
WHERE task_id IN (SELECT value FROM json_each(:ids))
ORDER BY task_id, attempt

-- name: export_queues
-- Every queue's config row, by name (the token bucket is the database's own: not moved).
SELECT queue AS name, paused, {config_columns}
FROM scheduler_config
ORDER BY queue

-- name: export_schedules
-- Every schedule, by name, its webhookAuth as stored and its payload's stored text.
SELECT name, cron, timezone, catch_up, paused, webhook_url, webhook_auth,
       payload AS payload_json, queue, max_retries, next_fire_at, last_fire_at, created_at,
       updated_at, not_after, success_codes, stale_codes
FROM scheduler_schedules
ORDER BY name

-- name: import_tasks
-- Tasks of an export, ids kept, in the order given (so seq keeps their creation order). A
-- task whose id is here already, or whose idempotency key another task holds, is skipped.
INSERT INTO scheduler_tasks
    (id, webhook_url, webhook_auth, payload, execute_at, next_attempt_at, status, attempts,
     budget_start, max_retries, has_failed, idempotency_key, last_error, last_status_code,
     created_at, updated_at, resolved_at, queue, schedule, not_after, success_codes,
     stale_codes, traceparent, target_host)
SELECT json_extract(value, '$.id'), json_extract(value, '$.webhook_url'),
       json_extract(value, '$.webhook_auth'), json_extract(value, '$.payload'),
       json_extract(value, '$.execute_at'), json_extract(value, '$.next_attempt_at'),
       json_extract(value, '$.status'), json_extract(value, '$.attempts'),
       json_extract(value, '$.budget_start'), json_extract(value, '$.max_retries'),
       json_extract(value, '$.has_failed'), json_extract(value, '$.idempotency_key'),
       json_extract(value, '$.last_error'), json_extract(value, '$.last_status_code'),
       json_extract(value, '$.created_at'), json_extract(value, '$.updated_at'),
       json_extract(value, '$.resolved_at'), json_extract(value, '$.queue'),
       json_extract(value, '$.schedule'), json_extract(value, '$.not_after'),
       json_extract(value, '$.success_codes'), json_extract(value, '$.stale_codes'),
       json_extract(value, '$.traceparent'), json_extract(value, '$.target_host')
FROM json_each(:tasks) WHERE true ORDER BY key
ON CONFLICT DO NOTHING
RETURNING id

-- name: import_attempts
-- The attempt history of imported tasks; one in flight at export is finished now, lost.
INSERT INTO scheduler_attempts
    (task_id, attempt, started_at, finished_at, duration_ms, status_code, error, outcome,
     lateness_ms)
SELECT json_extract(value, '$.task_id'), json_extract(value, '$.attempt'),
       json_extract(value, '$.started_at'),
       coalesce(json_extract(value, '$.finished_at'), {now}),
       json_extract(value, '$.duration_ms'), json_extract(value, '$.status_code'),
       json_extract(value, '$.error'), json_extract(value, '$.outcome'),
       json_extract(value, '$.lateness_ms')
FROM json_each(:attempts) WHERE true
ON CONFLICT DO NOTHING

-- name: existing_task_ids
SELECT id FROM scheduler_tasks WHERE id IN (SELECT value FROM json_each(:ids))

-- name: import_queues
-- Queues of an export that this database lacks, with their config and pause state; a
-- queue here already is left as it is (not returned).
INSERT INTO scheduler_config
    (queue, base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
     retry_backoff_ms, retry_backoff_max_ms, retention_hours, max_dispatches_per_second,
     max_concurrent_dispatches, paused, created_at, updated_at)
SELECT json_extract(value, '$.name'), json_extract(value, '$.base_interval_ms'),
       json_extract(value, '$.http_callback_timeout_ms'), json_extract(value, '$.select_size'),
       json_extract(value, '$.max_retries'), json_extract(value, '$.retry_backoff_ms'),
       json_extract(value, '$.retry_backoff_max_ms'), json_extract(value, '$.retention_hours'),
       json_extract(value, '$.max_dispatches_per_second'),
       json_extract(value, '$.max_concurrent_dispatches'), json_extract(value, '$.paused'),
       {now}, {now}
FROM json_each(:queues) WHERE true ORDER BY key
ON CONFLICT (queue) DO NOTHING
RETURNING queue AS name

-- name: import_schedules
-- Schedules of an export that this database lacks, every column kept (fire times too); a
-- schedule here already is left as it is (not returned).
INSERT INTO scheduler_schedules
    (name, cron, timezone, catch_up, paused, webhook_url, webhook_auth, payload, queue,
     max_retries, next_fire_at, last_fire_at, created_at, updated_at, not_after,
     success_codes, stale_codes)
SELECT json_extract(value, '$.name'), json_extract(value, '$.cron'),
       json_extract(value, '$.timezone'), json_extract(value, '$.catch_up'),
       json_extract(value, '$.paused'), json_extract(value, '$.webhook_url'),
       json_extract(value, '$.webhook_auth'), json_extract(value, '$.payload'),
       json_extract(value, '$.queue'), json_extract(value, '$.max_retries'),
       json_extract(value, '$.next_fire_at'), json_extract(value, '$.last_fire_at'),
       json_extract(value, '$.created_at'), json_extract(value, '$.updated_at'),
       json_extract(value, '$.not_after'), json_extract(value, '$.success_codes'),
       json_extract(value, '$.stale_codes')
FROM json_each(:schedules) WHERE true ORDER BY key
ON CONFLICT (name) DO NOTHING
RETURNING name

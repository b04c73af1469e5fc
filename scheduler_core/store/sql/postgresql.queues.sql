-- Named queries of the queue verbs (store/queues.py) and of the per-queue counts
-- (store/stats.py), PostgreSQL. Each queue is a row of scheduler_config; a write that
-- changes what dispatchers do notifies them on the channel update_config uses.

-- name: queue_rows
SELECT queue, {config_columns}, paused, created_at, updated_at
FROM scheduler_config

-- name: queue_row
SELECT queue, {config_columns}, paused, created_at, updated_at
FROM scheduler_config WHERE queue = %(queue)s

-- name: lock_queue
-- A removal or a replacement holds the row until it commits: an enqueue's FOR KEY SHARE
-- (lock_queues_for_enqueue) waits for it, and it waits for every enqueue holding one.
SELECT queue, {config_columns}, paused, created_at, updated_at
FROM scheduler_config WHERE queue = %(queue)s
FOR UPDATE

-- name: lock_queues_for_enqueue
-- Inside an enqueue's transaction: the named queues that exist, each held (KEY SHARE:
-- enqueues and config changes go on together; a removal waits) until the tasks are
-- committed. One that a removal committed meanwhile is not returned.
SELECT queue FROM scheduler_config WHERE queue = ANY(%(names)s::text[])
ORDER BY queue
FOR KEY SHARE

-- name: put_queue
-- Create the queue, or replace its whole config (its pause switch, token bucket and
-- creation time are kept). `created` from xmax: 0 on a row this statement inserted.
WITH put AS (
    INSERT INTO scheduler_config
        (queue, base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
         retry_backoff_ms, retry_backoff_max_ms, retention_hours, max_dispatches_per_second,
         max_concurrent_dispatches, created_at, updated_at)
    VALUES
        (%(queue)s, %(base_interval_ms)s, %(http_callback_timeout_ms)s, %(select_size)s,
         %(max_retries)s, %(retry_backoff_ms)s, %(retry_backoff_max_ms)s,
         %(retention_hours)s, %(max_dispatches_per_second)s,
         %(max_concurrent_dispatches)s, now(), now())
    ON CONFLICT (queue) DO UPDATE SET
        base_interval_ms = EXCLUDED.base_interval_ms,
        http_callback_timeout_ms = EXCLUDED.http_callback_timeout_ms,
        select_size = EXCLUDED.select_size,
        max_retries = EXCLUDED.max_retries,
        retry_backoff_ms = EXCLUDED.retry_backoff_ms,
        retry_backoff_max_ms = EXCLUDED.retry_backoff_max_ms,
        retention_hours = EXCLUDED.retention_hours,
        max_dispatches_per_second = EXCLUDED.max_dispatches_per_second,
        max_concurrent_dispatches = EXCLUDED.max_concurrent_dispatches,
        updated_at = now()
    RETURNING (xmax = 0) AS created
)
SELECT created, pg_notify('scheduler_core', 'config') FROM put

-- name: set_queue_paused
-- updated_at moves only when the switch does: pausing a paused queue changes nothing.
WITH changed AS (
    UPDATE scheduler_config
    SET paused = %(paused)s,
        updated_at = CASE WHEN paused = %(paused)s THEN updated_at ELSE now() END
    WHERE queue = %(queue)s
    RETURNING queue
)
SELECT queue, pg_notify('scheduler_core', 'config') FROM changed

-- name: delete_queue
WITH gone AS (DELETE FROM scheduler_config WHERE queue = %(queue)s RETURNING queue)
SELECT queue, pg_notify('scheduler_core', 'config') FROM gone

-- name: schedules_into_queue
SELECT name FROM scheduler_schedules WHERE queue = %(queue)s ORDER BY name

-- name: task_counts_by_queue
-- Every task counted once, by queue and status (queues removed with tasks left included).
SELECT queue, status, count(*) AS tasks FROM scheduler_tasks GROUP BY queue, status

-- name: task_counts_of_queue
SELECT queue, status, count(*) AS tasks FROM scheduler_tasks
WHERE queue = %(queue)s
GROUP BY queue, status

-- name: due_by_queue
-- Each queue's pending tasks whose time has come (all queues, or the one named): one
-- range scan into each half of the due index (queue, has_failed, next_attempt_at).
SELECT c.queue, coalesce(sum(h.due), 0) AS due,
       coalesce(extract(epoch FROM now() - min(h.oldest)), 0) AS oldest_due_age_s
FROM scheduler_config c
CROSS JOIN LATERAL (
    SELECT count(*) AS due, min(next_attempt_at) AS oldest FROM scheduler_tasks t
    WHERE t.queue = c.queue AND t.status = 'pending' AND NOT t.has_failed
      AND t.next_attempt_at <= now()
    UNION ALL
    SELECT count(*), min(next_attempt_at) FROM scheduler_tasks t
    WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed
      AND t.next_attempt_at <= now()
) AS h
WHERE %(queue)s::text IS NULL OR c.queue = %(queue)s::text
GROUP BY c.queue

-- Named queries of the queue verbs (store/queues.py) and of the per-queue counts
-- (store/stats.py), SQLite. Each queue is a row of scheduler_config. Every write runs in
-- a BEGIN IMMEDIATE transaction: it holds the file's write lock from its first read, so
-- a check and the change it allows are never split by another writer.

-- name: queue_rows
SELECT queue, {config_columns}, paused, created_at, updated_at
FROM scheduler_config

-- name: queue_row
SELECT queue, {config_columns}, paused, created_at, updated_at
FROM scheduler_config WHERE queue = :queue

-- name: lock_queue
-- (The write transaction's lock holds the row: see the top of this file.)
SELECT queue, {config_columns}, paused, created_at, updated_at
FROM scheduler_config WHERE queue = :queue

-- name: lock_queues_for_enqueue
SELECT queue FROM scheduler_config WHERE queue IN (SELECT value FROM json_each(:names))
ORDER BY queue

-- name: put_queue
-- Create the queue, or replace its whole config (its pause switch, token bucket and
-- creation time are kept). :created is what the transaction's lock_queue found.
INSERT INTO scheduler_config
    (queue, base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
     retry_backoff_ms, retry_backoff_max_ms, retention_hours, max_dispatches_per_second,
     max_concurrent_dispatches, created_at, updated_at)
VALUES
    (:queue, :base_interval_ms, :http_callback_timeout_ms, :select_size, :max_retries,
     :retry_backoff_ms, :retry_backoff_max_ms, :retention_hours, :max_dispatches_per_second,
     :max_concurrent_dispatches, {now}, {now})
ON CONFLICT (queue) DO UPDATE SET
    base_interval_ms = excluded.base_interval_ms,
    http_callback_timeout_ms = excluded.http_callback_timeout_ms,
    select_size = excluded.select_size,
    max_retries = excluded.max_retries,
    retry_backoff_ms = excluded.retry_backoff_ms,
    retry_backoff_max_ms = excluded.retry_backoff_max_ms,
    retention_hours = excluded.retention_hours,
    max_dispatches_per_second = excluded.max_dispatches_per_second,
    max_concurrent_dispatches = excluded.max_concurrent_dispatches,
    updated_at = {now}
RETURNING :created AS created

-- name: set_queue_paused
-- updated_at moves only when the switch does: pausing a paused queue changes nothing.
UPDATE scheduler_config
SET paused = :paused,
    updated_at = CASE WHEN paused = :paused THEN updated_at ELSE {now} END
WHERE queue = :queue
RETURNING queue

-- name: delete_queue
DELETE FROM scheduler_config WHERE queue = :queue RETURNING queue

-- name: schedules_into_queue
SELECT name FROM scheduler_schedules WHERE queue = :queue ORDER BY name

-- name: task_counts_by_queue
-- Every task counted once, by queue and status (queues removed with tasks left included).
SELECT queue, status, count(*) AS tasks FROM scheduler_tasks GROUP BY queue, status

-- name: task_counts_of_queue
SELECT queue, status, count(*) AS tasks FROM scheduler_tasks
WHERE queue = :queue
GROUP BY queue, status

-- name: due_by_queue
-- Each queue's pending tasks whose time has come (all queues, or the one named): one
-- range scan into each half of the due index (queue, has_failed, next_attempt_at). Ages
-- in seconds, from the clock's microseconds.
SELECT queue, due_fresh + due_failed AS due,
       coalesce(({clock} - coalesce(min(oldest_fresh, oldest_failed), oldest_fresh,
                                    oldest_failed)) / 1000000.0, 0.0) AS oldest_due_age_s
FROM (
    SELECT c.queue,
           (SELECT count(*) FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 0
              AND t.next_attempt_at <= {clock}) AS due_fresh,
           (SELECT count(*) FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 1
              AND t.next_attempt_at <= {clock}) AS due_failed,
           (SELECT min(next_attempt_at) FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 0
              AND t.next_attempt_at <= {clock}) AS oldest_fresh,
           (SELECT min(next_attempt_at) FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 1
              AND t.next_attempt_at <= {clock}) AS oldest_failed
    FROM scheduler_config c
    WHERE :queue IS NULL OR c.queue = :queue
)

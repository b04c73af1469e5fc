-- Named queries of asynchronous completion (a 202 with Scheduler-Async) and the keys
-- the servers share. Parameters use psycopg2's %(name)s style.

-- name: insert_shared_key
-- The first process that needs a key makes it; every other keeps the one stored.
INSERT INTO scheduler_keys (name, value) VALUES (%(name)s, %(value)s)
ON CONFLICT (name) DO NOTHING

-- name: shared_key
SELECT value FROM scheduler_keys WHERE name = %(name)s

-- name: awaited_attempt
-- The task and one of its attempts, the task's row locked until the commit: a complete
-- and a fail of the same attempt run one after the other, and the second sees the first.
SELECT t.id::text AS id, t.status, t.attempts, t.attempts - t.budget_start AS attempts_in_budget,
       t.max_retries, t.queue, t.webhook_url, t.webhook_auth, t.execute_at, t.not_after,
       a.finished_at, clock_timestamp() AS db_now,
       (a.async_deadline IS NOT NULL AND a.async_deadline <= clock_timestamp()) AS expired,
       greatest(0, extract(epoch FROM clock_timestamp() - a.started_at) * 1000) AS elapsed_ms
FROM scheduler_tasks t
LEFT JOIN scheduler_attempts a ON a.task_id = t.id AND a.attempt = %(attempt)s
WHERE t.id = %(id)s
FOR UPDATE OF t

-- Named queries of asynchronous completion (a 202 with Scheduler-Async) and the keys
-- the servers share. Times are Unix microseconds ({now}).

-- name: insert_shared_key
-- The first process that needs a key makes it; every other keeps the one stored.
INSERT INTO scheduler_keys (name, value, created_at) VALUES (:name, :value, {now})
ON CONFLICT (name) DO NOTHING

-- name: shared_key
SELECT value FROM scheduler_keys WHERE name = :name

-- name: awaited_attempt
-- The task and one of its attempts, inside the write transaction (BEGIN IMMEDIATE): a
-- complete and a fail of the same attempt run one after the other.
SELECT t.id AS id, t.status, t.attempts, t.attempts - t.budget_start AS attempts_in_budget,
       t.max_retries, t.queue, t.webhook_url, t.webhook_auth, t.execute_at, t.not_after,
       a.finished_at, {now} AS db_now,
       (a.async_deadline IS NOT NULL AND a.async_deadline <= {now}) AS expired,
       max(0, ({now} - a.started_at) / 1000.0) AS elapsed_ms
FROM scheduler_tasks t
LEFT JOIN scheduler_attempts a ON a.task_id = t.id AND a.attempt = :attempt
WHERE t.id = :id

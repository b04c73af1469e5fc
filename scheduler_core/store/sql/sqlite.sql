-- Named queries of the SQLite store. Parameters use sqlite3's :name style; {now} is the
-- database clock in integer microseconds, read once per write transaction as PostgreSQL's
-- now() is (sqlite.py turns it into scheduler_now()); `now` below is how it is read.

-- SQLite's clock has millisecond precision: `now` rounds to it, in microseconds.

-- name: now
(CAST(round(julianday('now') * 86400000.0) AS INTEGER) - 210866760000000) * 1000

-- name: task_columns
id, seq, webhook_url, execute_at, status, attempts, max_retries, next_attempt_at,
payload, idempotency_key, last_error, last_status_code, created_at, updated_at,
resolved_at

-- name: insert_task
INSERT INTO scheduler_tasks
    (id, webhook_url, webhook_auth, payload, execute_at, next_attempt_at,
     idempotency_key, max_retries, created_at, updated_at)
VALUES
    (:id, :webhook_url, :webhook_auth, :payload,
     coalesce(:execute_at, {now}), coalesce(:execute_at, {now}),
     :idempotency_key, :max_retries, {now}, {now})
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {task_columns}

-- name: get_task_by_idempotency_key
SELECT {task_columns} FROM scheduler_tasks WHERE idempotency_key = :idempotency_key

-- name: get_task
SELECT {task_columns} FROM scheduler_tasks WHERE id = :id

-- name: list_tasks
SELECT {task_columns} FROM scheduler_tasks
WHERE (:status IS NULL OR status = :status)
  AND (:before IS NULL OR seq < :before)
ORDER BY seq DESC
LIMIT :limit

-- name: task_exists
SELECT 1 FROM scheduler_tasks WHERE id = :id

-- name: list_attempts
SELECT attempt, started_at, finished_at, duration_ms, status_code, error
FROM scheduler_attempts WHERE task_id = :id ORDER BY attempt

-- name: cancel_task
UPDATE scheduler_tasks
SET status = 'cancelled', updated_at = {now}
WHERE id = :id AND status IN ('pending', 'stale')
RETURNING {task_columns}

-- name: retry_task
UPDATE scheduler_tasks
SET status = 'pending', next_attempt_at = {now}, budget_start = attempts, updated_at = {now}
WHERE id = :id AND status IN ('stale', 'cancelled')
RETURNING {task_columns}

-- name: get_config
SELECT base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
       retry_backoff_ms, retry_backoff_max_ms, retention_hours
FROM scheduler_config

-- name: reap_expired_leases
-- A dispatcher that died leaves its lease; the attempt it started still counts.
UPDATE scheduler_tasks
SET status = CASE
        WHEN attempts - budget_start >= coalesce(max_retries, :max_retries) + 1
        THEN 'stale' ELSE 'pending' END,
    has_failed = 1,
    last_error = :error,
    last_status_code = NULL,
    lease_expires_at = NULL,
    updated_at = {now}
WHERE id IN (
    SELECT id FROM scheduler_tasks
    WHERE status = 'running' AND lease_expires_at <= {now}
    ORDER BY lease_expires_at
    LIMIT 1000
)
RETURNING id, attempts

-- name: close_lost_attempt
UPDATE scheduler_attempts
SET finished_at = {now}, error = :error
WHERE task_id = :id AND attempt = :attempt AND finished_at IS NULL

-- name: claim_due
-- Two range scans of the due index (never failed, then failed), merged in claim order.
UPDATE scheduler_tasks
SET status = 'running',
    attempts = attempts + 1,
    lease_expires_at = {now} + :lease_ms * 1000,
    updated_at = {now}
WHERE id IN (
    SELECT id FROM (
        SELECT * FROM (
            SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
            WHERE status = 'pending' AND has_failed = 0 AND next_attempt_at <= {now}
            ORDER BY next_attempt_at, seq
            LIMIT :limit
        )
        UNION ALL
        SELECT * FROM (
            SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
            WHERE status = 'pending' AND has_failed = 1 AND next_attempt_at <= {now}
            ORDER BY next_attempt_at, seq
            LIMIT :limit
        )
    )
    ORDER BY has_failed, next_attempt_at, seq
    LIMIT :limit
)
RETURNING id, webhook_url, webhook_auth, execute_at, payload AS payload_json, attempts,
          attempts - budget_start AS attempts_in_budget, max_retries,
          has_failed, next_attempt_at, seq

-- name: start_attempt
INSERT INTO scheduler_attempts (task_id, attempt, started_at) VALUES (:id, :attempt, {now})

-- name: resolve_task
UPDATE scheduler_tasks
SET status = 'resolved', resolved_at = {now}, last_status_code = :status_code,
    last_error = NULL, lease_expires_at = NULL, updated_at = {now}
WHERE id = :id AND attempts = :attempt AND status IN ('running', 'pending', 'stale')

-- name: fail_task
UPDATE scheduler_tasks
SET status = CASE WHEN :stale THEN 'stale' ELSE 'pending' END,
    next_attempt_at = CASE WHEN :stale THEN next_attempt_at
                           ELSE {now} + :retry_in_ms * 1000 END,
    has_failed = 1, last_error = :error, last_status_code = :status_code,
    lease_expires_at = NULL, updated_at = {now}
WHERE id = :id AND attempts = :attempt AND status = 'running'

-- name: finish_attempt
UPDATE scheduler_attempts
SET finished_at = {now}, duration_ms = :duration_ms, status_code = :status_code,
    error = :error
WHERE task_id = :id AND attempt = :attempt

-- name: purge_expired
DELETE FROM scheduler_tasks
WHERE id IN (
    SELECT id FROM scheduler_tasks
    WHERE status IN ('resolved', 'cancelled')
      AND updated_at < {now} - :retention_hours * 3600000000
    LIMIT :batch_size
)

-- Named queries of the PostgreSQL store. Parameters use psycopg2's %(name)s style.

-- name: task_columns
id::text AS id, seq, webhook_url, execute_at, status, attempts, max_retries,
next_attempt_at, payload, idempotency_key, last_error, last_status_code,
created_at, updated_at, resolved_at

-- name: insert_task
INSERT INTO scheduler_tasks
    (webhook_url, webhook_auth, payload, execute_at, next_attempt_at,
     idempotency_key, max_retries)
VALUES
    (%(webhook_url)s, %(webhook_auth)s, %(payload)s::json,
     coalesce(%(execute_at)s, now()), coalesce(%(execute_at)s, now()),
     %(idempotency_key)s, %(max_retries)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {task_columns}

-- name: get_task_by_idempotency_key
SELECT {task_columns} FROM scheduler_tasks WHERE idempotency_key = %(idempotency_key)s

-- name: get_task
SELECT {task_columns} FROM scheduler_tasks WHERE id = %(id)s

-- name: list_tasks
SELECT {task_columns} FROM scheduler_tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(before)s::bigint IS NULL OR seq < %(before)s::bigint)
ORDER BY seq DESC
LIMIT %(limit)s

-- name: task_exists
SELECT 1 FROM scheduler_tasks WHERE id = %(id)s

-- name: list_attempts
SELECT attempt, started_at, finished_at, duration_ms, status_code, error
FROM scheduler_attempts WHERE task_id = %(id)s ORDER BY attempt

-- name: cancel_task
UPDATE scheduler_tasks
SET status = 'cancelled', updated_at = now()
WHERE id = %(id)s AND status IN ('pending', 'stale')
RETURNING {task_columns}

-- name: retry_task
UPDATE scheduler_tasks
SET status = 'pending', next_attempt_at = now(), budget_start = attempts,
    updated_at = now()
WHERE id = %(id)s AND status IN ('stale', 'cancelled')
RETURNING {task_columns}

-- name: get_config
SELECT base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
       retry_backoff_ms, retry_backoff_max_ms, retention_hours
FROM scheduler_config

-- name: reap_expired_leases
-- A dispatcher that died leaves its lease; the attempt it started still counts.
WITH expired AS (
    SELECT id FROM scheduler_tasks
    WHERE status = 'running' AND lease_expires_at <= now()
    ORDER BY lease_expires_at
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
), reaped AS (
    UPDATE scheduler_tasks t
    SET status = CASE
            WHEN t.attempts - t.budget_start >= coalesce(t.max_retries, %(max_retries)s) + 1
            THEN 'stale' ELSE 'pending' END,
        has_failed = true,
        last_error = %(error)s,
        last_status_code = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM expired
    WHERE t.id = expired.id
    RETURNING t.id, t.attempts
)
UPDATE scheduler_attempts a
SET finished_at = now(), error = %(error)s
FROM reaped
WHERE a.task_id = reaped.id AND a.attempt = reaped.attempts AND a.finished_at IS NULL
RETURNING a.task_id::text AS id

-- name: claim_due
-- Two range scans of the due index (never failed, then failed), merged in claim order.
WITH fresh AS (
    SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
    WHERE status = 'pending' AND NOT has_failed AND next_attempt_at <= now()
    ORDER BY next_attempt_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), failed AS (
    SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
    WHERE status = 'pending' AND has_failed AND next_attempt_at <= now()
    ORDER BY next_attempt_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM fresh UNION ALL SELECT * FROM failed) AS candidates
    ORDER BY has_failed, next_attempt_at, seq
    LIMIT %(limit)s
), claimed AS (
    UPDATE scheduler_tasks t
    SET status = 'running',
        attempts = t.attempts + 1,
        lease_expires_at = now() + %(lease_ms)s * interval '1 millisecond',
        updated_at = now()
    FROM chosen
    WHERE t.id = chosen.id
    RETURNING t.id, t.webhook_url, t.webhook_auth, t.execute_at, t.payload,
              t.attempts, t.budget_start, t.max_retries, t.has_failed,
              t.next_attempt_at, t.seq
), started AS (
    INSERT INTO scheduler_attempts (task_id, attempt, started_at)
    SELECT id, attempts, now() FROM claimed
)
SELECT id::text, webhook_url, webhook_auth, execute_at,
       coalesce(payload::text, 'null') AS payload_json,
       attempts, attempts - budget_start AS attempts_in_budget, max_retries,
       has_failed, next_attempt_at, seq
FROM claimed
ORDER BY has_failed, next_attempt_at, seq

-- name: resolve_task
UPDATE scheduler_tasks
SET status = 'resolved', resolved_at = now(), last_status_code = %(status_code)s,
    last_error = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s AND attempts = %(attempt)s AND status IN ('running', 'pending', 'stale')

-- name: fail_task
UPDATE scheduler_tasks
SET status = CASE WHEN %(stale)s THEN 'stale' ELSE 'pending' END,
    next_attempt_at = CASE WHEN %(stale)s THEN next_attempt_at
                           ELSE now() + %(retry_in_ms)s * interval '1 millisecond' END,
    has_failed = true, last_error = %(error)s, last_status_code = %(status_code)s,
    lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'running'

-- name: finish_attempt
UPDATE scheduler_attempts
SET finished_at = now(), duration_ms = %(duration_ms)s, status_code = %(status_code)s,
    error = %(error)s
WHERE task_id = %(id)s AND attempt = %(attempt)s

-- name: purge_expired
WITH doomed AS (
    SELECT id FROM scheduler_tasks
    WHERE status IN ('resolved', 'cancelled')
      AND updated_at < now() - %(retention_hours)s * interval '1 hour'
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM scheduler_tasks t USING doomed WHERE t.id = doomed.id

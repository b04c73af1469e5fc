-- Named queries of the SQLite store. Parameters use sqlite3's :name style; {now} is the
-- database clock in integer microseconds, read once per write transaction as PostgreSQL's
-- now() is (sqlite.py turns it into scheduler_now()); `now` below is how it is read.

-- SQLite's clock has millisecond precision: `now` rounds to it, in microseconds.

-- name: now
(CAST(round(julianday('now') * 86400000.0) AS INTEGER) - 210866760000000) * 1000

-- name: task_columns
id, seq, webhook_url, execute_at, status, attempts, max_retries, next_attempt_at,
payload, idempotency_key, last_error, last_status_code, created_at, updated_at,
resolved_at, queue, schedule, not_after, success_codes, stale_codes, traceparent

-- name: config_columns
base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
retry_backoff_ms, retry_backoff_max_ms, retention_hours, max_dispatches_per_second,
max_concurrent_dispatches

-- name: insert_tasks
-- Every task of a group commit in one statement, in the order given (ids come from the
-- caller; a new task's next_attempt_at is its execute_at). A task whose idempotency key
-- is taken, by an older task or earlier in this very list, is skipped. Only what the
-- database chose is returned: the caller knows the rest of a new task. (`WHERE true`:
-- SQLite's upsert after a SELECT needs one.)
INSERT INTO scheduler_tasks
    (id, webhook_url, webhook_auth, payload, execute_at, next_attempt_at,
     idempotency_key, max_retries, queue, schedule, not_after, success_codes, stale_codes,
     traceparent, target_host, created_at, updated_at)
SELECT json_extract(value, '$.id'), json_extract(value, '$.webhook_url'),
       json_extract(value, '$.webhook_auth'), json_extract(value, '$.payload'),
       coalesce(json_extract(value, '$.execute_at'), {now}),
       coalesce(json_extract(value, '$.execute_at'), {now}),
       json_extract(value, '$.idempotency_key'), json_extract(value, '$.max_retries'),
       json_extract(value, '$.queue'), json_extract(value, '$.schedule'),
       json_extract(value, '$.not_after'), json_extract(value, '$.success_codes'),
       json_extract(value, '$.stale_codes'), json_extract(value, '$.traceparent'),
       json_extract(value, '$.target_host'), {now}, {now}
FROM json_each(:tasks) WHERE true ORDER BY key
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, execute_at, created_at

-- name: get_tasks_by_idempotency_keys
SELECT {task_columns} FROM scheduler_tasks
WHERE idempotency_key IN (SELECT value FROM json_each(:keys))

-- name: get_task
SELECT {task_columns} FROM scheduler_tasks WHERE id = :id

-- name: task_filter
-- What a list or a bulk action matches besides the status: the creation range of a
-- TaskFilter (NULL: unbounded), and its queue (NULL: every queue).
(:created_before IS NULL OR created_at < :created_before)
AND (:created_after IS NULL OR created_at >= :created_after)
AND (:queue IS NULL OR queue = :queue)

-- name: list_tasks
-- Newest first, every status: a backward walk of the rowid (seq) from the cursor.
SELECT {task_columns} FROM scheduler_tasks
WHERE seq < :before AND {task_filter}
ORDER BY seq DESC
LIMIT :limit

-- name: list_tasks_by_status
-- Newest first among the statuses whose flag (:pending, :running, ...) is 1: each
-- status's newest from the (status, seq) index, merged, so a page reads at most `limit`
-- rows per status however many tasks of other statuses lie between them. A branch whose
-- flag is 0 is skipped before it reads anything.
SELECT {task_columns} FROM scheduler_tasks WHERE seq IN (
    SELECT seq FROM (
        SELECT seq FROM scheduler_tasks
        WHERE :pending AND status = 'pending' AND seq < :before AND {task_filter}
        ORDER BY seq DESC LIMIT :limit
    )
    UNION ALL
    SELECT seq FROM (
        SELECT seq FROM scheduler_tasks
        WHERE :running AND status = 'running' AND seq < :before AND {task_filter}
        ORDER BY seq DESC LIMIT :limit
    )
    UNION ALL
    SELECT seq FROM (
        SELECT seq FROM scheduler_tasks
        WHERE :resolved AND status = 'resolved' AND seq < :before AND {task_filter}
        ORDER BY seq DESC LIMIT :limit
    )
    UNION ALL
    SELECT seq FROM (
        SELECT seq FROM scheduler_tasks
        WHERE :stale AND status = 'stale' AND seq < :before AND {task_filter}
        ORDER BY seq DESC LIMIT :limit
    )
    UNION ALL
    SELECT seq FROM (
        SELECT seq FROM scheduler_tasks
        WHERE :cancelled AND status = 'cancelled' AND seq < :before AND {task_filter}
        ORDER BY seq DESC LIMIT :limit
    )
)
ORDER BY seq DESC
LIMIT :limit

-- name: max_seq
-- Where a bulk action stops: tasks enqueued after it began are left alone.
SELECT coalesce(max(seq), 0) AS ceiling FROM scheduler_tasks

-- name: bulk_cancel
-- One batch of a bulk cancel: the next `batch` matching pending or stale tasks (flags
-- :pending, :stale) in seq order after `after`, each status's from the (status, seq)
-- index. The write lock is held: what is read is what is changed.
UPDATE scheduler_tasks SET status = 'cancelled', updated_at = {now}
WHERE seq IN (
    SELECT seq FROM (
        SELECT seq FROM (
            SELECT seq FROM scheduler_tasks
            WHERE :pending AND status = 'pending' AND seq > :after AND seq <= :ceiling
              AND {task_filter}
            ORDER BY seq LIMIT :batch
        )
        UNION ALL
        SELECT seq FROM (
            SELECT seq FROM scheduler_tasks
            WHERE :stale AND status = 'stale' AND seq > :after AND seq <= :ceiling
              AND {task_filter}
            ORDER BY seq LIMIT :batch
        )
    )
    ORDER BY seq LIMIT :batch
)
RETURNING seq, 1 AS changed

-- name: bulk_retry
-- One batch of a bulk retry, picked as bulk_cancel picks it (flags :stale, :cancelled):
-- each task pending again as retry_task makes it (due now, a fresh budget). A task whose
-- queue was removed, or whose notAfter has passed, is no candidate: it stays as it is.
UPDATE scheduler_tasks
SET status = 'pending', next_attempt_at = {now}, budget_start = attempts, updated_at = {now}
WHERE seq IN (
    SELECT seq FROM (
        SELECT seq FROM (
            SELECT seq FROM scheduler_tasks
            WHERE :stale AND status = 'stale' AND seq > :after AND seq <= :ceiling
              AND {task_filter}
              AND EXISTS (SELECT 1 FROM scheduler_config c WHERE c.queue = scheduler_tasks.queue)
              AND (not_after IS NULL OR not_after > {now})
            ORDER BY seq LIMIT :batch
        )
        UNION ALL
        SELECT seq FROM (
            SELECT seq FROM scheduler_tasks
            WHERE :cancelled AND status = 'cancelled' AND seq > :after AND seq <= :ceiling
              AND {task_filter}
              AND EXISTS (SELECT 1 FROM scheduler_config c WHERE c.queue = scheduler_tasks.queue)
              AND (not_after IS NULL OR not_after > {now})
            ORDER BY seq LIMIT :batch
        )
    )
    ORDER BY seq LIMIT :batch
)
RETURNING seq, 1 AS changed

-- name: task_exists
SELECT 1 FROM scheduler_tasks WHERE id = :id

-- name: list_attempts
SELECT attempt, started_at, finished_at, duration_ms, status_code, error, outcome,
       lateness_ms
FROM scheduler_attempts WHERE task_id = :id ORDER BY attempt

-- name: retrying_tasks
-- Pending tasks whose last attempt failed, next retry first: the dashboard's "failing"
-- list. The claim's index (status = 'pending', by has_failed, next_attempt_at) serves it.
SELECT {task_columns} FROM scheduler_tasks
WHERE status = 'pending' AND has_failed = 1 AND last_error IS NOT NULL
ORDER BY next_attempt_at, seq
LIMIT :limit

-- name: cancel_task
UPDATE scheduler_tasks
SET status = 'cancelled', updated_at = {now}
WHERE id = :id AND status IN ('pending', 'stale')
RETURNING {task_columns}

-- name: retry_task
-- Only into a queue that exists (the write lock keeps a removal out until the commit).
UPDATE scheduler_tasks
SET status = 'pending', next_attempt_at = {now}, budget_start = attempts, updated_at = {now}
WHERE id = :id AND status IN ('stale', 'cancelled')
  AND (not_after IS NULL OR not_after > {now})  -- past its deadline: never callable
  AND EXISTS (SELECT 1 FROM scheduler_config c WHERE c.queue = scheduler_tasks.queue)
RETURNING {task_columns}

-- name: reschedule_task
-- PATCH executeAt: a pending task is due at the new time (a past one at once); with
-- delivery rules, each one flagged set_* takes its new value (NULL: the default).
UPDATE scheduler_tasks
SET execute_at = coalesce(:execute_at, execute_at),
    next_attempt_at = coalesce(:execute_at, next_attempt_at),
    not_after = CASE WHEN :set_not_after THEN :not_after ELSE not_after END,
    success_codes = CASE WHEN :set_success_codes THEN :success_codes ELSE success_codes END,
    stale_codes = CASE WHEN :set_stale_codes THEN :stale_codes ELSE stale_codes END,
    updated_at = {now}
WHERE id = :id AND status = 'pending'
RETURNING {task_columns}

-- name: existing_queues
SELECT queue FROM scheduler_config WHERE queue IN (SELECT value FROM json_each(:names))

-- name: get_config
SELECT {config_columns} FROM scheduler_config WHERE queue = :queue

-- name: update_config
-- A key left NULL keeps its value.
UPDATE scheduler_config SET
    base_interval_ms = coalesce(:base_interval_ms, base_interval_ms),
    http_callback_timeout_ms = coalesce(:http_callback_timeout_ms, http_callback_timeout_ms),
    select_size = coalesce(:select_size, select_size),
    max_retries = coalesce(:max_retries, max_retries),
    retry_backoff_ms = coalesce(:retry_backoff_ms, retry_backoff_ms),
    retry_backoff_max_ms = coalesce(:retry_backoff_max_ms, retry_backoff_max_ms),
    retention_hours = coalesce(:retention_hours, retention_hours),
    max_dispatches_per_second = coalesce(:max_dispatches_per_second, max_dispatches_per_second),
    max_concurrent_dispatches = coalesce(:max_concurrent_dispatches, max_concurrent_dispatches),
    updated_at = {now}
WHERE queue = :queue

-- name: dispatch_state
-- What a dispatcher reads at every wake-up: every queue's config, whether it is paused,
-- and the earliest nextAttemptAt of its pending tasks (one step into each half of the
-- queue's part of the due index; none for a paused queue), with the clock (SQLite's own,
-- read now: this is no write transaction).
SELECT {clock} AS db_now, c.queue, c.paused, {config_columns},
       EXISTS (SELECT 1 FROM scheduler_hosts) AS hosts_throttled,  -- sqlite.hosts.sql
       CASE WHEN c.paused THEN NULL ELSE (SELECT min(due) FROM (
            SELECT (SELECT t.next_attempt_at FROM scheduler_tasks t
                    WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 0
                    ORDER BY t.next_attempt_at LIMIT 1) AS due
            UNION ALL
            SELECT (SELECT t.next_attempt_at FROM scheduler_tasks t
                    WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 1
                    ORDER BY t.next_attempt_at LIMIT 1)
       )) END AS next_due
FROM scheduler_config c
ORDER BY c.queue

-- name: lock_queue_for_claim
-- A claim in a queue with limits across dispatchers: every write transaction holds the
-- file's write lock, so claims run one at a time, each seeing what the one before took.
SELECT paused, max_dispatches_per_second, max_concurrent_dispatches, bucket_tokens,
       bucket_at
FROM scheduler_config WHERE queue = :queue

-- name: precise_clock
-- The transaction's clock, read under the write lock when it began.
SELECT {now} AS clock

-- name: running_in_queue
-- A task waiting for its completion URL (Scheduler-Async) is no callback in flight.
SELECT count(*) AS running FROM scheduler_tasks
WHERE queue = :queue AND status = 'running' AND async_timeout_s IS NULL

-- name: store_bucket
UPDATE scheduler_config SET bucket_tokens = :tokens, bucket_at = :clock WHERE queue = :queue

-- name: claim_expired_leases
-- A dispatcher that died leaves its lease. The reaper takes the expired ones under a
-- short lease of its own, decides, and records each as a lost attempt through
-- record_outcomes; if it dies too, its lease expires in turn.
UPDATE scheduler_tasks
SET lease_expires_at = {now} + :lease_ms * 1000
WHERE id IN (
    SELECT id FROM scheduler_tasks
    WHERE status = 'running' AND lease_expires_at <= {now}
    ORDER BY lease_expires_at
    LIMIT :limit
)
RETURNING id, attempts, attempts - budget_start AS attempts_in_budget, max_retries, queue,
          async_timeout_s

-- name: claim_due
-- One queue's due tasks, unless it is paused: two range scans of its part of the due
-- index (never failed, then failed), merged in claim order. The host filter: per-host
-- backpressure (sqlite.hosts.sql).
-- A chosen task past its notAfter is not called: it ends stale here, no attempt counted
-- (the caller skips it and claims again for the room it leaves).
UPDATE scheduler_tasks
SET status = CASE WHEN not_after <= {now} THEN 'stale' ELSE 'running' END,
    attempts = CASE WHEN not_after <= {now} THEN attempts ELSE attempts + 1 END,
    lease_expires_at = CASE WHEN not_after <= {now} THEN NULL
                            ELSE {now} + :lease_ms * 1000 END,
    last_error = CASE WHEN not_after <= {now} THEN 'deadline passed' ELSE last_error END,
    last_status_code = CASE WHEN not_after <= {now} THEN NULL ELSE last_status_code END,
    updated_at = {now}
WHERE id IN (
    SELECT id FROM (
        SELECT * FROM (
            SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
            WHERE queue = :queue AND status = 'pending' AND has_failed = 0
              AND next_attempt_at <= {now} AND {host_filter}
            ORDER BY next_attempt_at, seq
            LIMIT :limit
        )
        UNION ALL
        SELECT * FROM (
            SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
            WHERE queue = :queue AND status = 'pending' AND has_failed = 1
              AND next_attempt_at <= {now} AND {host_filter}
            ORDER BY next_attempt_at, seq
            LIMIT :limit
        )
    )
    ORDER BY has_failed, next_attempt_at, seq
    LIMIT :limit
) AND EXISTS (SELECT 1 FROM scheduler_config WHERE queue = :queue AND paused = 0)
RETURNING status, id, webhook_url, webhook_auth, execute_at, payload AS payload_json,
          attempts, attempts - budget_start AS attempts_in_budget, max_retries,
          has_failed, next_attempt_at, seq, queue, not_after, success_codes, stale_codes,
          traceparent, snoozes_in_row, target_host,
          ({now} - next_attempt_at) / 1000.0 AS late_at_claim_ms

-- name: start_attempt
INSERT INTO scheduler_attempts (task_id, attempt, started_at) VALUES (:id, :attempt, {now})

-- name: record_task_outcomes
-- Every outcome of a batch, as a JSON array, in one statement (record_attempt_outcomes
-- finishes their attempt rows). A task takes an outcome only for its current attempt
-- while running (a late resolve of a reaped attempt still counts, as long as no new
-- attempt began).
UPDATE scheduler_tasks AS t
SET status = o.status,
    next_attempt_at = CASE WHEN o.status = 'pending' THEN {now} + o.retry_in_ms * 1000
                           ELSE t.next_attempt_at END,
    resolved_at = CASE WHEN o.status = 'resolved' THEN {now} ELSE t.resolved_at END,
    -- A snoozed task is called again like a retried one: after the fresh tasks (a
    -- "Scheduler-Snooze: 0" must not starve the others).
    has_failed = CASE WHEN t.has_failed = 1 OR o.status NOT IN ('resolved', 'running')
                      THEN 1 ELSE 0 END,
    last_error = o.error,
    last_status_code = o.status_code,
    -- An async wait (status stays 'running') holds the task until its timeout.
    lease_expires_at = CASE WHEN o.status = 'running'
                            THEN {now} + o.async_timeout_s * 1000000 END,
    async_timeout_s = CASE WHEN o.status = 'running' THEN o.async_timeout_s END,
    -- A snooze spends no retry: the budget's start moves along with `attempts`.
    budget_start = t.budget_start + CASE WHEN o.outcome = 'snoozed' THEN 1 ELSE 0 END,
    snoozes_in_row = CASE WHEN o.outcome = 'snoozed' THEN t.snoozes_in_row + 1 ELSE 0 END,
    updated_at = {now}
FROM (
    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
           json_extract(value, '$.status') AS status,
           json_extract(value, '$.retry_in_ms') AS retry_in_ms,
           json_extract(value, '$.error') AS error,
           json_extract(value, '$.status_code') AS status_code,
           json_extract(value, '$.outcome') AS outcome,
           json_extract(value, '$.async_timeout_s') AS async_timeout_s
    FROM json_each(:outcomes)
) AS o
-- `+t.status`: no index on status, so the plan goes from each outcome to its task by id,
-- not through every pending task.
WHERE t.id = o.id AND t.attempts = o.attempt
  AND (+t.status = 'running' OR (o.status = 'resolved' AND +t.status IN ('pending', 'stale')))

-- name: record_attempt_outcomes
-- An async wait leaves its attempt open (no finished_at, no outcome) until it ends.
UPDATE scheduler_attempts AS a
SET finished_at = CASE WHEN o.status = 'running' THEN NULL ELSE {now} END,
    duration_ms = o.duration_ms, status_code = o.status_code,
    error = o.error, outcome = o.outcome, lateness_ms = coalesce(o.lateness_ms, a.lateness_ms),
    async_deadline = CASE WHEN o.status = 'running' THEN {now} + o.async_timeout_s * 1000000
                          ELSE a.async_deadline END
FROM (
    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
           json_extract(value, '$.status') AS status,
           json_extract(value, '$.async_timeout_s') AS async_timeout_s,
           json_extract(value, '$.duration_ms') AS duration_ms,
           json_extract(value, '$.status_code') AS status_code,
           json_extract(value, '$.error') AS error, json_extract(value, '$.outcome') AS outcome,
           json_extract(value, '$.lateness_ms') AS lateness_ms
    FROM json_each(:outcomes)
) AS o
WHERE a.task_id = o.id AND a.attempt = o.attempt AND a.finished_at IS NULL

-- name: purge_expired
-- Each task by its queue's retention_hours (a task whose queue was removed: the given
-- one). The first condition is the loosest of them, so the retention index bounds the
-- scan whatever the queues say.
DELETE FROM scheduler_tasks
WHERE id IN (
    SELECT t.id FROM scheduler_tasks t
    LEFT JOIN scheduler_config c ON c.queue = t.queue
    WHERE t.status IN ('resolved', 'cancelled')
      AND t.updated_at < {now} - min(
              :retention_hours, (SELECT min(retention_hours) FROM scheduler_config)
          ) * 3600000000
      AND t.updated_at < {now} - coalesce(c.retention_hours, :retention_hours) * 3600000000
    LIMIT :batch_size
)

-- name: webhook_auth_page
-- scheduler rotate-key: the next tasks that hold a webhookAuth, in seq order.
SELECT seq, id, webhook_auth FROM scheduler_tasks
WHERE webhook_auth IS NOT NULL AND seq > :after
ORDER BY seq
LIMIT :limit

-- name: replace_webhook_auth
-- A row takes its new value only if it still holds the one read (compare and set).
UPDATE scheduler_tasks AS t
SET webhook_auth = n.new
FROM (
    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.old') AS old,
           json_extract(value, '$.new') AS new
    FROM json_each(:rows)
) AS n
WHERE t.id = n.id AND t.webhook_auth = n.old
RETURNING id

-- name: clock
SELECT {clock} AS db_now

-- name: tasks_by_status
-- Every task counted once, by status: a scan of the covering scheduler_tasks_status_seq.
SELECT status, count(*) AS tasks FROM scheduler_tasks GROUP BY status

-- name: due_backlog
-- Pending tasks whose time has come: one range scan into each half of the due index
-- (never failed, failed); the tasks due later are never read. Ages in seconds, from the
-- clock's microseconds.
SELECT coalesce(sum(due), 0) AS due,
       coalesce(({clock} - min(oldest)) / 1000000.0, 0.0) AS oldest_due_age_s
FROM (
    SELECT count(*) AS due, min(next_attempt_at) AS oldest FROM scheduler_tasks
    WHERE status = 'pending' AND has_failed = 0 AND next_attempt_at <= {clock}
    UNION ALL
    SELECT count(*), min(next_attempt_at) FROM scheduler_tasks
    WHERE status = 'pending' AND has_failed = 1 AND next_attempt_at <= {clock}
)

-- name: lateness_percentiles
-- Nearest-rank percentiles (PostgreSQL's percentile_disc) of the lateness of attempts
-- started in the window, through scheduler_attempts_started: the value at rank
-- ceil(p * n) of n sorted, with integer arithmetic (SQLite may lack ceil()).
WITH ranked AS (
    SELECT lateness_ms,
           row_number() OVER (ORDER BY lateness_ms) AS pos,
           count(*) OVER () AS n
    FROM scheduler_attempts
    WHERE started_at >= {clock} - :window_s * 1000000 AND lateness_ms IS NOT NULL
)
SELECT min(CASE WHEN pos >= (n + 1) / 2 THEN lateness_ms END) AS p50,
       min(CASE WHEN pos >= (99 * n + 99) / 100 THEN lateness_ms END) AS p99
FROM ranked

-- name: activity
-- Attempts started since :since (epoch seconds, a bucket boundary), by bucket of
-- :bucket_s seconds; a bucket without attempts has no row. Percentiles as in
-- lateness_percentiles, ranked within each bucket.
WITH started AS (
    SELECT started_at / (:bucket_s * 1000000) * :bucket_s AS bucket, outcome, lateness_ms
    FROM scheduler_attempts
    WHERE started_at >= :since * 1000000
), ranked AS (
    SELECT bucket, lateness_ms,
           row_number() OVER (PARTITION BY bucket ORDER BY lateness_ms) AS pos,
           count(*) OVER (PARTITION BY bucket) AS n
    FROM started WHERE lateness_ms IS NOT NULL
), percentiles AS (
    SELECT bucket,
           min(CASE WHEN pos >= (n + 1) / 2 THEN lateness_ms END) AS p50,
           min(CASE WHEN pos >= (99 * n + 99) / 100 THEN lateness_ms END) AS p99
    FROM ranked GROUP BY bucket
)
SELECT s.bucket, count(*) AS attempts,
       total(s.outcome = 'resolved') AS resolved,
       total(s.outcome IN ('failed', 'lost')) AS failed,
       max(p.p50) AS p50, max(p.p99) AS p99
FROM started s LEFT JOIN percentiles p ON p.bucket = s.bucket
GROUP BY s.bucket
ORDER BY s.bucket

-- Named queries of the PostgreSQL store. Parameters use psycopg2's %(name)s style.

-- name: task_columns
id::text AS id, seq, webhook_url, execute_at, status, attempts, max_retries,
next_attempt_at, payload, idempotency_key, last_error, last_status_code,
created_at, updated_at, resolved_at, queue, schedule, not_after, success_codes,
stale_codes, traceparent

-- name: config_columns
base_interval_ms, http_callback_timeout_ms, select_size, max_retries,
retry_backoff_ms, retry_backoff_max_ms, retention_hours, max_dispatches_per_second,
max_concurrent_dispatches

-- name: insert_tasks
-- Every task of a group commit in one statement, in the order given (ids come from the
-- caller; a new task's next_attempt_at is its execute_at). A task whose idempotency key is taken, by an older task or earlier in this
-- very list, is skipped. A task due within the wake-up window wakes every dispatcher
-- listening: one NOTIFY for the statement (the dispatchers' timers find later tasks).
WITH inserted AS (
    INSERT INTO scheduler_tasks
        (id, webhook_url, webhook_auth, payload, execute_at, next_attempt_at,
         idempotency_key, max_retries, queue, schedule, not_after, success_codes,
         stale_codes, traceparent, target_host)
    SELECT t.id, t.webhook_url, t.webhook_auth, t.payload::json,
           coalesce(t.execute_at, now()), coalesce(t.execute_at, now()),
           t.idempotency_key, t.max_retries, t.queue, t.schedule, t.not_after,
           t.success_codes, t.stale_codes, t.traceparent, t.target_host
    -- json_to_recordset parses the array once (->> on json would parse each element
    -- once per field); the payload arrives as the JSON text to store, verbatim.
    FROM ROWS FROM (
        json_to_recordset(%(tasks)s::json) AS (
            id uuid, webhook_url text, webhook_auth text, payload text,
            execute_at timestamptz, idempotency_key text, max_retries integer,
            queue text, schedule text, not_after timestamptz, success_codes text,
            stale_codes text, traceparent text, target_host text)
    ) WITH ORDINALITY AS t(id, webhook_url, webhook_auth, payload, execute_at,
                           idempotency_key, max_retries, queue, schedule, not_after,
                           success_codes, stale_codes, traceparent, target_host, n)
    ORDER BY t.n
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, execute_at, created_at
), wake AS (
    SELECT pg_notify('scheduler_core', 'due') FROM inserted
    WHERE execute_at <= now() + interval '{wake_window}'
    LIMIT 1
)
-- Only what the database chose: the caller knows the rest of a new task. `woken` is
-- selected so the planner cannot drop the join, and the NOTIFY with it.
SELECT i.id::text AS id, i.execute_at, i.created_at, w.woken
FROM inserted i LEFT JOIN (SELECT count(*) AS woken FROM wake) w ON true

-- name: get_tasks_by_idempotency_keys
SELECT {task_columns} FROM scheduler_tasks WHERE idempotency_key = ANY(%(keys)s)

-- name: get_task
SELECT {task_columns} FROM scheduler_tasks WHERE id = %(id)s

-- name: task_filter
-- What a list or a bulk action matches besides the status: the creation range of a
-- TaskFilter (NULL: unbounded), and its queue (NULL: every queue).
(%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s::timestamptz)
AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)

-- name: list_tasks
-- Newest first, every status: a backward walk of the seq index from the cursor.
SELECT {task_columns} FROM scheduler_tasks
WHERE seq < %(before)s AND {task_filter}
ORDER BY seq DESC
LIMIT %(limit)s

-- name: list_tasks_by_status
-- Newest first among the statuses whose flag (%(pending)s, %(running)s, ...) is true:
-- each status's newest, merged, so a page reads at most `limit` rows per status. The
-- status is a constant in each branch, so the planner reads its frequency from the
-- statistics: a rare one from the (status, seq) index, a common one by walking the seq
-- index. (A `status = ANY(...)` can walk every task to find a rare status.) A branch
-- whose flag is false is never run.
SELECT {task_columns} FROM scheduler_tasks WHERE seq IN (
    (SELECT seq FROM scheduler_tasks
     WHERE %(pending)s AND status = 'pending' AND seq < %(before)s AND {task_filter}
     ORDER BY seq DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT seq FROM scheduler_tasks
     WHERE %(running)s AND status = 'running' AND seq < %(before)s AND {task_filter}
     ORDER BY seq DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT seq FROM scheduler_tasks
     WHERE %(resolved)s AND status = 'resolved' AND seq < %(before)s AND {task_filter}
     ORDER BY seq DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT seq FROM scheduler_tasks
     WHERE %(stale)s AND status = 'stale' AND seq < %(before)s AND {task_filter}
     ORDER BY seq DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT seq FROM scheduler_tasks
     WHERE %(cancelled)s AND status = 'cancelled' AND seq < %(before)s AND {task_filter}
     ORDER BY seq DESC LIMIT %(limit)s)
)
ORDER BY seq DESC
LIMIT %(limit)s

-- name: max_seq
-- Where a bulk action stops: tasks enqueued after it began are left alone.
SELECT coalesce(max(seq), 0) AS ceiling FROM scheduler_tasks

-- name: bulk_cancel
-- One batch of a bulk cancel: the next `batch` matching pending or stale tasks (flags
-- %(pending)s, %(stale)s) in seq order after `after`, picked as list_tasks_by_status
-- picks them, cancelled if they still are in `statuses` once their row lock is had (a
-- task a dispatcher claimed meanwhile is left alone). Returns every candidate's seq and
-- whether it changed.
WITH candidate AS (
    SELECT id, seq FROM (
        (SELECT id, seq FROM scheduler_tasks
         WHERE %(pending)s AND status = 'pending' AND seq > %(after)s AND seq <= %(ceiling)s
           AND {task_filter}
         ORDER BY seq LIMIT %(batch)s)
        UNION ALL
        (SELECT id, seq FROM scheduler_tasks
         WHERE %(stale)s AND status = 'stale' AND seq > %(after)s AND seq <= %(ceiling)s
           AND {task_filter}
         ORDER BY seq LIMIT %(batch)s)
    ) AS c
    ORDER BY seq
    LIMIT %(batch)s
), changed AS (
    UPDATE scheduler_tasks t
    SET status = 'cancelled', updated_at = now()
    -- By id from an array: each candidate found through the primary key, never a join
    -- that reads every task of the statuses (a plan stale statistics could choose).
    WHERE t.id = ANY(ARRAY(SELECT id FROM candidate)) AND t.status = ANY(%(statuses)s::text[])
    RETURNING t.id
)
SELECT c.seq, ch.id IS NOT NULL AS changed
FROM candidate c LEFT JOIN changed ch ON ch.id = c.id

-- name: bulk_retry
-- One batch of a bulk retry, picked as bulk_cancel picks it (flags %(stale)s,
-- %(cancelled)s): each task pending again as retry_task makes it (due now, a fresh
-- budget); one NOTIFY per batch.
WITH candidate AS (
    SELECT id, seq FROM (
        (SELECT id, seq FROM scheduler_tasks
         WHERE %(stale)s AND status = 'stale' AND seq > %(after)s AND seq <= %(ceiling)s
           AND {task_filter}
         ORDER BY seq LIMIT %(batch)s)
        UNION ALL
        (SELECT id, seq FROM scheduler_tasks
         WHERE %(cancelled)s AND status = 'cancelled' AND seq > %(after)s AND seq <= %(ceiling)s
           AND {task_filter}
         ORDER BY seq LIMIT %(batch)s)
    ) AS c
    ORDER BY seq
    LIMIT %(batch)s
), changed AS (
    UPDATE scheduler_tasks t
    SET status = 'pending', next_attempt_at = now(), budget_start = t.attempts,
        updated_at = now()
    -- By id from an array: each candidate found through the primary key, never a join
    -- that reads every task of the statuses (a plan stale statistics could choose). A
    -- task whose queue was removed stays as it is (retry_task says why).
    WHERE t.id = ANY(ARRAY(SELECT id FROM candidate)) AND t.status = ANY(%(statuses)s::text[])
      AND (t.not_after IS NULL OR t.not_after > now())  -- past its deadline: left alone
      AND EXISTS (SELECT 1 FROM scheduler_config c WHERE c.queue = t.queue FOR KEY SHARE)
    RETURNING t.id
), wake AS (
    SELECT pg_notify('scheduler_core', 'due') FROM changed LIMIT 1
)
-- `woken` is selected so the planner cannot drop the NOTIFY.
SELECT c.seq, ch.id IS NOT NULL AS changed, w.woken
FROM candidate c LEFT JOIN changed ch ON ch.id = c.id
CROSS JOIN (SELECT count(*) AS woken FROM wake) AS w

-- name: task_exists
SELECT 1 FROM scheduler_tasks WHERE id = %(id)s

-- name: list_attempts
SELECT attempt, started_at, finished_at, duration_ms, status_code, error, outcome,
       lateness_ms
FROM scheduler_attempts WHERE task_id = %(id)s ORDER BY attempt

-- name: retrying_tasks
-- Pending tasks whose last attempt failed, next retry first: the dashboard's "failing"
-- list. The claim's index (status = 'pending', by has_failed, next_attempt_at) serves it.
SELECT {task_columns} FROM scheduler_tasks
WHERE status = 'pending' AND has_failed AND last_error IS NOT NULL
ORDER BY next_attempt_at, seq
LIMIT %(limit)s

-- name: cancel_task
UPDATE scheduler_tasks
SET status = 'cancelled', updated_at = now()
WHERE id = %(id)s AND status IN ('pending', 'stale')
RETURNING {task_columns}

-- name: retry_task
-- Only into a queue that exists, held (KEY SHARE) until the commit: a removal of the queue
-- waits, or went first and the task is left as it is.
WITH retried AS (
    UPDATE scheduler_tasks t
    SET status = 'pending', next_attempt_at = now(), budget_start = attempts,
        updated_at = now()
    WHERE id = %(id)s AND status IN ('stale', 'cancelled')
      AND (not_after IS NULL OR not_after > now())  -- past its deadline: never callable
      AND EXISTS (SELECT 1 FROM scheduler_config c WHERE c.queue = t.queue FOR KEY SHARE)
    RETURNING *
), wake AS (
    SELECT pg_notify('scheduler_core', 'due') FROM retried LIMIT 1
)
SELECT {task_columns}, w.woken
FROM retried LEFT JOIN (SELECT count(*) AS woken FROM wake) w ON true

-- name: reschedule_task
-- PATCH executeAt: a pending task is due at the new time (a past one at once); with
-- delivery rules, each one flagged set_* takes its new value (NULL: the default), the rest
-- stay. The state is checked in the UPDATE itself: a task claimed meanwhile is not touched.
WITH moved AS (
    UPDATE scheduler_tasks
    SET execute_at = coalesce(%(execute_at)s::timestamptz, execute_at),
        next_attempt_at = coalesce(%(execute_at)s::timestamptz, next_attempt_at),
        not_after = CASE WHEN %(set_not_after)s THEN %(not_after)s::timestamptz
                         ELSE not_after END,
        success_codes = CASE WHEN %(set_success_codes)s THEN %(success_codes)s
                             ELSE success_codes END,
        stale_codes = CASE WHEN %(set_stale_codes)s THEN %(stale_codes)s ELSE stale_codes END,
        updated_at = now()
    WHERE id = %(id)s AND status = 'pending'
    RETURNING *
), wake AS (
    SELECT pg_notify('scheduler_core', 'due') FROM moved
    WHERE next_attempt_at <= now() + interval '{wake_window}'
    LIMIT 1
)
SELECT {task_columns}, w.woken
FROM moved LEFT JOIN (SELECT count(*) AS woken FROM wake) w ON true

-- name: existing_queues
SELECT queue FROM scheduler_config WHERE queue = ANY(%(names)s)

-- name: get_config
SELECT {config_columns} FROM scheduler_config WHERE queue = %(queue)s

-- name: update_config
-- A key left NULL keeps its value. Listening dispatchers re-read the row at once.
WITH changed AS (
    UPDATE scheduler_config SET
        base_interval_ms = coalesce(%(base_interval_ms)s, base_interval_ms),
        http_callback_timeout_ms = coalesce(%(http_callback_timeout_ms)s, http_callback_timeout_ms),
        select_size = coalesce(%(select_size)s, select_size),
        max_retries = coalesce(%(max_retries)s, max_retries),
        retry_backoff_ms = coalesce(%(retry_backoff_ms)s, retry_backoff_ms),
        retry_backoff_max_ms = coalesce(%(retry_backoff_max_ms)s, retry_backoff_max_ms),
        retention_hours = coalesce(%(retention_hours)s, retention_hours),
        max_dispatches_per_second = coalesce(%(max_dispatches_per_second)s, max_dispatches_per_second),
        max_concurrent_dispatches = coalesce(%(max_concurrent_dispatches)s, max_concurrent_dispatches),
        updated_at = now()
    WHERE queue = %(queue)s
    RETURNING 1
)
SELECT count(*) AS changed, pg_notify('scheduler_core', 'config') FROM changed

-- name: dispatch_state
-- What a dispatcher reads at every wake-up: every queue's config, whether it is paused,
-- and the earliest nextAttemptAt of its pending tasks (one step into each half of the
-- queue's part of the due index; none for a paused queue), with the clock.
SELECT now() AS db_now, c.queue, c.paused, {config_columns},
       EXISTS (SELECT 1 FROM scheduler_hosts) AS hosts_throttled,  -- postgresql.hosts.sql
       CASE WHEN c.paused THEN NULL ELSE LEAST(
           (SELECT t.next_attempt_at FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND NOT t.has_failed
            ORDER BY t.next_attempt_at LIMIT 1),
           (SELECT t.next_attempt_at FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed
            ORDER BY t.next_attempt_at LIMIT 1)
       ) END AS next_due
FROM scheduler_config c
ORDER BY c.queue

-- name: lock_queue_for_claim
-- A claim in a queue with limits across dispatchers takes its config row first: claims
-- in that queue then run one at a time, each seeing what the one before took. (NO KEY
-- UPDATE: enqueues into the queue, which hold its row FOR KEY SHARE, go on meanwhile.)
SELECT paused, max_dispatches_per_second, max_concurrent_dispatches, bucket_tokens,
       bucket_at
FROM scheduler_config WHERE queue = %(queue)s
FOR NO KEY UPDATE

-- name: precise_clock
-- The clock after the queue's lock was granted (now() is the transaction's start, which
-- may come before the previous holder's bucket_at).
SELECT clock_timestamp() AS clock

-- name: running_in_queue
-- A task waiting for its completion URL (Scheduler-Async) is no callback in flight.
SELECT count(*) AS running FROM scheduler_tasks
WHERE queue = %(queue)s AND status = 'running' AND async_timeout_s IS NULL

-- name: store_bucket
UPDATE scheduler_config SET bucket_tokens = %(tokens)s, bucket_at = %(clock)s
WHERE queue = %(queue)s

-- name: claim_expired_leases
-- A dispatcher that died leaves its lease. The reaper takes the expired ones under a
-- short lease of its own (so no other reaper takes them too), decides, and records each
-- as a lost attempt through record_outcomes; if it dies too, its lease expires in turn.
WITH expired AS (
    SELECT id FROM scheduler_tasks
    WHERE status = 'running' AND lease_expires_at <= now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE scheduler_tasks t
SET lease_expires_at = now() + %(lease_ms)s * interval '1 millisecond'
FROM expired
WHERE t.id = expired.id
RETURNING t.id::text AS id, t.attempts, t.attempts - t.budget_start AS attempts_in_budget,
          t.max_retries, t.queue, t.async_timeout_s

-- name: claim_due
-- One queue's due tasks: two range scans of its part of the due index (never failed,
-- then failed), merged in claim order. The queue's row is share-locked and must not be
-- paused: a pause (an UPDATE of the row) waits for the claims under way, and every claim
-- after it sees it. The host filter: per-host backpressure (postgresql.hosts.sql).
WITH open_queue AS (
    SELECT queue FROM scheduler_config
    WHERE queue = %(queue)s AND NOT paused
    FOR SHARE
), fresh AS (
    SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
    WHERE queue = %(queue)s AND status = 'pending' AND NOT has_failed
      AND next_attempt_at <= now() AND EXISTS (SELECT 1 FROM open_queue)
      AND {host_filter}
    ORDER BY next_attempt_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), failed AS (
    SELECT id, has_failed, next_attempt_at, seq FROM scheduler_tasks
    WHERE queue = %(queue)s AND status = 'pending' AND has_failed
      AND next_attempt_at <= now() AND EXISTS (SELECT 1 FROM open_queue)
      AND {host_filter}
    ORDER BY next_attempt_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM fresh UNION ALL SELECT * FROM failed) AS candidates
    ORDER BY has_failed, next_attempt_at, seq
    LIMIT %(limit)s
), claimed AS (
    -- A chosen task past its notAfter is not called: it ends stale here, no attempt
    -- counted (the caller skips it and claims again for the room it leaves).
    UPDATE scheduler_tasks t
    SET status = CASE WHEN t.not_after <= now() THEN 'stale' ELSE 'running' END,
        attempts = CASE WHEN t.not_after <= now() THEN t.attempts ELSE t.attempts + 1 END,
        lease_expires_at = CASE WHEN t.not_after <= now() THEN NULL
                                ELSE now() + %(lease_ms)s * interval '1 millisecond' END,
        last_error = CASE WHEN t.not_after <= now() THEN 'deadline passed'
                          ELSE t.last_error END,
        last_status_code = CASE WHEN t.not_after <= now() THEN NULL
                                ELSE t.last_status_code END,
        updated_at = now()
    FROM chosen
    WHERE t.id = chosen.id
    RETURNING t.status, t.id, t.webhook_url, t.webhook_auth, t.execute_at, t.payload,
              t.attempts, t.budget_start, t.max_retries, t.has_failed,
              t.next_attempt_at, t.seq, t.queue, t.not_after, t.success_codes,
              t.stale_codes, t.traceparent, t.snoozes_in_row, t.target_host
), started AS (
    INSERT INTO scheduler_attempts (task_id, attempt, started_at)
    SELECT id, attempts, now() FROM claimed WHERE status = 'running'
)
SELECT status, id::text, webhook_url, webhook_auth, execute_at,
       coalesce(payload::text, 'null') AS payload_json,
       attempts, attempts - budget_start AS attempts_in_budget, max_retries,
       has_failed, next_attempt_at, seq, queue, not_after, success_codes, stale_codes,
       traceparent, snoozes_in_row, target_host,
       -- the clock as the claim returns (a claim may have waited for a lock since now())
       extract(epoch FROM clock_timestamp() - next_attempt_at) * 1000 AS late_at_claim_ms
FROM claimed
ORDER BY has_failed, next_attempt_at, seq

-- name: record_outcomes
-- Every outcome of a batch in one statement. A task takes an outcome only for its current
-- attempt while running (a late resolve of a reaped attempt still counts, as long as no
-- new attempt began); an attempt row is finished once.
WITH outcome AS (
    SELECT * FROM json_to_recordset(%(outcomes)s::json) AS o(
        id uuid, attempt integer, status text, retry_in_ms bigint, error text,
        status_code integer, duration_ms integer, lateness_ms bigint, outcome text,
        async_timeout_s integer)
), task AS (
    UPDATE scheduler_tasks t
    SET status = o.status,
        next_attempt_at = CASE WHEN o.status = 'pending'
                               THEN now() + o.retry_in_ms * interval '1 millisecond'
                               ELSE t.next_attempt_at END,
        resolved_at = CASE WHEN o.status = 'resolved' THEN now() ELSE t.resolved_at END,
        -- A snoozed task is called again like a retried one: after the fresh tasks (a
        -- "Scheduler-Snooze: 0" must not starve the others).
        has_failed = t.has_failed OR (o.status <> 'resolved' AND o.status <> 'running'),
        last_error = o.error,
        last_status_code = o.status_code,
        -- An async wait (status stays 'running') holds the task until its timeout.
        lease_expires_at = CASE WHEN o.status = 'running'
                                THEN now() + o.async_timeout_s * interval '1 second' END,
        async_timeout_s = CASE WHEN o.status = 'running' THEN o.async_timeout_s END,
        -- A snooze spends no retry: the budget's start moves along with `attempts`.
        budget_start = t.budget_start + CASE WHEN o.outcome = 'snoozed' THEN 1 ELSE 0 END,
        snoozes_in_row = CASE WHEN o.outcome = 'snoozed' THEN t.snoozes_in_row + 1 ELSE 0 END,
        updated_at = now()
    FROM outcome o
    WHERE t.id = o.id AND t.attempts = o.attempt
      AND (t.status = 'running'
           OR (o.status = 'resolved' AND t.status IN ('pending', 'stale')))
    RETURNING t.status, t.next_attempt_at
), attempt AS (
    -- An async wait leaves its attempt open (no finished_at, no outcome) until it ends.
    UPDATE scheduler_attempts a
    SET finished_at = CASE WHEN o.status = 'running' THEN NULL ELSE now() END,
        duration_ms = o.duration_ms, status_code = o.status_code,
        error = o.error, outcome = o.outcome, lateness_ms = coalesce(o.lateness_ms, a.lateness_ms),
        async_deadline = CASE WHEN o.status = 'running'
                              THEN now() + o.async_timeout_s * interval '1 second'
                              ELSE a.async_deadline END
    FROM outcome o
    WHERE a.task_id = o.id AND a.attempt = o.attempt AND a.finished_at IS NULL
    RETURNING 1
), wake AS (
    SELECT pg_notify('scheduler_core', 'due') FROM task
    WHERE status = 'pending' AND next_attempt_at <= now() + interval '{wake_window}'
    LIMIT 1
)
SELECT (SELECT count(*) FROM task) AS tasks, (SELECT count(*) FROM attempt) AS attempts,
       (SELECT count(*) FROM wake) AS woken

-- name: purge_expired
-- Each task by its queue's retention_hours (a task whose queue was removed: the given
-- one). The first condition is the loosest of them, so the retention index bounds the
-- scan whatever the queues say.
WITH doomed AS (
    SELECT t.id FROM scheduler_tasks t
    LEFT JOIN scheduler_config c ON c.queue = t.queue
    WHERE t.status IN ('resolved', 'cancelled')
      AND t.updated_at < now() - LEAST(
              %(retention_hours)s, (SELECT min(retention_hours) FROM scheduler_config)
          ) * interval '1 hour'
      AND t.updated_at < now()
              - coalesce(c.retention_hours, %(retention_hours)s) * interval '1 hour'
    LIMIT %(batch_size)s
    FOR UPDATE OF t SKIP LOCKED
)
DELETE FROM scheduler_tasks t USING doomed WHERE t.id = doomed.id

-- name: webhook_auth_page
-- scheduler rotate-key: the next tasks that hold a webhookAuth, in seq order.
SELECT seq, id::text AS id, webhook_auth FROM scheduler_tasks
WHERE webhook_auth IS NOT NULL AND seq > %(after)s
ORDER BY seq
LIMIT %(limit)s

-- name: replace_webhook_auth
-- A row takes its new value only if it still holds the one read (compare and set).
UPDATE scheduler_tasks t
SET webhook_auth = n.new
FROM json_to_recordset(%(rows)s::json) AS n(id uuid, old text, new text)
WHERE t.id = n.id AND t.webhook_auth = n.old
RETURNING t.id::text AS id

-- name: clock
SELECT now() AS db_now

-- name: tasks_by_status
-- Every task counted once, by status: an index-only scan of scheduler_tasks_status_seq
-- per status (on one core; a GROUP BY would scan the table with parallel workers).
SELECT s.status,
       (SELECT count(*) FROM scheduler_tasks t WHERE t.status = s.status) AS tasks
FROM unnest(ARRAY['pending', 'running', 'resolved', 'stale', 'cancelled']) AS s(status)

-- name: due_backlog
-- Pending tasks whose time has come: one range scan into each half of the due index
-- (never failed, failed), index-only; the tasks due later are never read.
SELECT coalesce(sum(due), 0) AS due,
       coalesce(extract(epoch FROM now() - min(oldest)), 0) AS oldest_due_age_s
FROM (
    SELECT count(*) AS due, min(next_attempt_at) AS oldest FROM scheduler_tasks
    WHERE status = 'pending' AND NOT has_failed AND next_attempt_at <= now()
    UNION ALL
    SELECT count(*), min(next_attempt_at) FROM scheduler_tasks
    WHERE status = 'pending' AND has_failed AND next_attempt_at <= now()
) AS halves

-- name: lateness_percentiles
-- Nearest-rank percentiles (as SQLite's query computes them) of the lateness of attempts
-- started in the window, through scheduler_attempts_started.
SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY lateness_ms) AS p50,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY lateness_ms) AS p99
FROM scheduler_attempts
WHERE started_at >= now() - %(window_s)s * interval '1 second'
  AND lateness_ms IS NOT NULL

-- name: activity
-- Attempts started since %(since)s (epoch seconds, a bucket boundary), by bucket of
-- %(bucket_s)s seconds; a bucket without attempts has no row.
SELECT floor(extract(epoch FROM started_at) / %(bucket_s)s)::bigint * %(bucket_s)s AS bucket,
       count(*) AS attempts,
       count(*) FILTER (WHERE outcome = 'resolved') AS resolved,
       count(*) FILTER (WHERE outcome IN ('failed', 'lost')) AS failed,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY lateness_ms) AS p50,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY lateness_ms) AS p99
FROM scheduler_attempts
WHERE started_at >= to_timestamp(%(since)s)
GROUP BY 1
ORDER BY 1

-- name: wake_dispatchers
SELECT pg_notify('scheduler_core', 'due')

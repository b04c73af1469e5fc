-- Per-host backpressure (scheduler_hosts): what claims read, and the feedback of 429/503
-- answers and successes (store/hosts.py, store/host_limits.py). Times are microseconds.

-- name: host_states
-- Every throttled host, as a dispatcher reads it at a wake-up or a claim: blocked now?
-- its limits, its bucket, and (only for a host with a concurrency limit) its running
-- tasks, counted on the running-by-host index.
SELECT h.host, h.blocked_until, h.blocked_until > {now} AS blocked, h.max_concurrent,
       h.max_per_second, h.bucket_tokens, h.bucket_at, {now} AS db_now,
       CASE WHEN h.max_concurrent IS NULL THEN 0 ELSE
           (SELECT count(*) FROM scheduler_tasks t
            WHERE t.target_host = h.host AND t.status = 'running'
              AND t.async_timeout_s IS NULL) END AS running
FROM scheduler_hosts h
ORDER BY h.host

-- name: next_due_unheld
-- Each open queue's earliest nextAttemptAt over the tasks not bound for a held host (a
-- JSON array of host keys): the dispatcher's timer must not fire for tasks it may not
-- start.
SELECT c.queue, (SELECT min(due) FROM (
    SELECT (SELECT t.next_attempt_at FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 0
              AND (t.target_host IS NULL
                   OR t.target_host NOT IN (SELECT value FROM json_each(:held)))
            ORDER BY t.next_attempt_at LIMIT 1) AS due
    UNION ALL
    SELECT (SELECT t.next_attempt_at FROM scheduler_tasks t
            WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed = 1
              AND (t.target_host IS NULL
                   OR t.target_host NOT IN (SELECT value FROM json_each(:held)))
            ORDER BY t.next_attempt_at LIMIT 1)
)) AS next_due
FROM scheduler_config c
WHERE c.paused = 0

-- name: lock_host
-- The write transaction holds the whole file: claims run one at a time.
SELECT host, max_concurrent, max_per_second, bucket_tokens, bucket_at
FROM scheduler_hosts
WHERE host = :host AND blocked_until <= {now}

-- name: due_limited_hosts
-- Which of the limited hosts (a JSON array) have due tasks in the queue: only those are
-- claimed from.
SELECT DISTINCT target_host AS host FROM scheduler_tasks
WHERE queue = :queue AND status = 'pending' AND next_attempt_at <= {now}
  AND target_host IN (SELECT value FROM json_each(:hosts))

-- name: forget_idle_hosts
-- Hosts neither blocked nor heard from for :idle_s seconds: forgotten.
DELETE FROM scheduler_hosts
WHERE blocked_until < {now} - :idle_s * 1000000 AND updated_at < {now} - :idle_s * 1000000

-- name: running_to_host
-- A task waiting for its completion URL (Scheduler-Async) is no callback in flight.
SELECT count(*) AS running FROM scheduler_tasks
WHERE target_host = :host AND status = 'running' AND async_timeout_s IS NULL

-- name: store_host_bucket
UPDATE scheduler_hosts SET bucket_tokens = :tokens, bucket_at = :clock WHERE host = :host

-- name: ensure_host
INSERT INTO scheduler_hosts (host, blocked_until, bucket_at, updated_at)
VALUES (:host, {now}, {now}, {now})
ON CONFLICT (host) DO NOTHING

-- name: lock_host_for_feedback
SELECT host, blocked_until, blocked_until > {now} AS blocked, max_concurrent,
       max_per_second, updated_at, ({now} - updated_at) / 1000000.0 AS idle_s
FROM scheduler_hosts
WHERE host = :host

-- name: host_recent_starts
SELECT count(*) AS starts
FROM scheduler_attempts a JOIN scheduler_tasks t ON t.id = a.task_id
WHERE a.started_at > {now} - :window_ms * 1000 AND t.target_host = :host

-- name: throttle_host
UPDATE scheduler_hosts
SET blocked_until = max(blocked_until, {now} + :block_ms * 1000),
    max_concurrent = :max_concurrent,
    max_per_second = :max_per_second,
    bucket_tokens = 1,  -- one start as soon as the block ends
    bucket_at = max(blocked_until, {now} + :block_ms * 1000),
    throttled_total = throttled_total + :answers,
    updated_at = {now}
WHERE host = :host

-- name: raise_host
UPDATE scheduler_hosts
SET max_concurrent = :max_concurrent, max_per_second = :max_per_second, updated_at = {now}
WHERE host = :host

-- name: forget_host
DELETE FROM scheduler_hosts WHERE host = :host

-- name: list_hosts
SELECT host, blocked_until,
       max(0, blocked_until - {clock}) / 1000000.0 AS blocked_s,
       max_concurrent, max_per_second, throttled_total, updated_at
FROM scheduler_hosts
ORDER BY throttled_total DESC, host

-- name: host_filter
-- What claim_due_hosts adds to claim_due's scans: not a held host's task (held: a JSON
-- array of host keys, or NULL), and with only_host, that host's tasks alone. claim_due
-- itself has TRUE there: with no throttled host the claim is what it always was.
(:held IS NULL OR target_host IS NULL
 OR target_host NOT IN (SELECT value FROM json_each(:held)))
AND (:only_host IS NULL OR target_host = :only_host)

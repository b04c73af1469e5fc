-- Per-host backpressure (scheduler_hosts): what claims read, and the feedback of 429/503
-- answers and successes (store/hosts.py, store/host_limits.py).

-- name: host_states
-- Every throttled host, as a dispatcher reads it at a wake-up or a claim: blocked now?
-- its limits, its bucket, and (only for a host with a concurrency limit) its running
-- tasks, counted on the running-by-host index.
SELECT h.host, h.blocked_until, h.blocked_until > now() AS blocked, h.max_concurrent,
       h.max_per_second, h.bucket_tokens, h.bucket_at, now() AS db_now,
       CASE WHEN h.max_concurrent IS NULL THEN 0 ELSE
           (SELECT count(*) FROM scheduler_tasks t
            WHERE t.target_host = h.host AND t.status = 'running'
              AND t.async_timeout_s IS NULL) END AS running
FROM scheduler_hosts h
ORDER BY h.host

-- name: next_due_unheld
-- Each open queue's earliest nextAttemptAt over the tasks not bound for a held host (one
-- blocked, or at its limits): the dispatcher's timer must not fire for tasks it may not
-- start.
SELECT c.queue, LEAST(
    (SELECT t.next_attempt_at FROM scheduler_tasks t
     WHERE t.queue = c.queue AND t.status = 'pending' AND NOT t.has_failed
       AND (t.target_host IS NULL OR t.target_host <> ALL(%(held)s::text[]))
     ORDER BY t.next_attempt_at LIMIT 1),
    (SELECT t.next_attempt_at FROM scheduler_tasks t
     WHERE t.queue = c.queue AND t.status = 'pending' AND t.has_failed
       AND (t.target_host IS NULL OR t.target_host <> ALL(%(held)s::text[]))
     ORDER BY t.next_attempt_at LIMIT 1)
) AS next_due
FROM scheduler_config c
WHERE NOT c.paused

-- name: lock_host
-- A claim of a limited host's tasks takes its row first (after the queue's: one lock
-- order everywhere), so claims for that host run one at a time across dispatchers. A
-- claim that finds another one at it skips the host (SKIP LOCKED: no dispatcher waits
-- for another's claim; the skipped host is looked at again at the next recheck).
SELECT host, max_concurrent, max_per_second, bucket_tokens, bucket_at
FROM scheduler_hosts
WHERE host = %(host)s AND blocked_until <= now()
FOR UPDATE SKIP LOCKED

-- name: due_limited_hosts
-- Which of the limited hosts have due tasks in the queue: only those are locked and
-- claimed from (a limited host with nothing due costs a claim nothing).
SELECT DISTINCT target_host AS host FROM scheduler_tasks
WHERE queue = %(queue)s AND status = 'pending' AND next_attempt_at <= now()
  AND target_host = ANY(%(hosts)s::text[])

-- name: forget_idle_hosts
-- Hosts neither blocked nor heard from (no 429/503, no success raising them) for
-- %(idle_s)s seconds: forgotten, as if never throttled (a host with no traffic would
-- otherwise keep its row, and cost every claim, forever).
DELETE FROM scheduler_hosts
WHERE blocked_until < now() - %(idle_s)s * interval '1 second'
  AND updated_at < now() - %(idle_s)s * interval '1 second'

-- name: running_to_host
-- Counted after the host's lock was granted: a fresh snapshot sees the claims before.
SELECT count(*) AS running FROM scheduler_tasks
WHERE target_host = %(host)s AND status = 'running' AND async_timeout_s IS NULL

-- name: store_host_bucket
UPDATE scheduler_hosts SET bucket_tokens = %(tokens)s, bucket_at = %(clock)s
WHERE host = %(host)s

-- name: ensure_host
INSERT INTO scheduler_hosts (host, blocked_until, bucket_at, updated_at)
VALUES (%(host)s, now(), now(), now())
ON CONFLICT (host) DO NOTHING

-- name: lock_host_for_feedback
SELECT host, blocked_until, blocked_until > now() AS blocked, max_concurrent,
       max_per_second, updated_at, extract(epoch FROM now() - updated_at) AS idle_s
FROM scheduler_hosts
WHERE host = %(host)s
FOR UPDATE

-- name: host_recent_starts
-- Attempts started for a host over the last window_ms: the rate a first throttling
-- halves (read on the started_at index; only when a host is throttled).
SELECT count(*) AS starts
FROM scheduler_attempts a JOIN scheduler_tasks t ON t.id = a.task_id
WHERE a.started_at > now() - %(window_ms)s * interval '1 millisecond'
  AND t.target_host = %(host)s

-- name: throttle_host
UPDATE scheduler_hosts
SET blocked_until = GREATEST(blocked_until, now() + %(block_ms)s * interval '1 millisecond'),
    max_concurrent = %(max_concurrent)s,
    max_per_second = %(max_per_second)s,
    bucket_tokens = 1,  -- one start as soon as the block ends
    bucket_at = GREATEST(blocked_until, now() + %(block_ms)s * interval '1 millisecond'),
    throttled_total = throttled_total + %(answers)s,
    updated_at = now()
WHERE host = %(host)s

-- name: raise_host
UPDATE scheduler_hosts
SET max_concurrent = %(max_concurrent)s, max_per_second = %(max_per_second)s,
    updated_at = now()
WHERE host = %(host)s

-- name: forget_host
DELETE FROM scheduler_hosts WHERE host = %(host)s

-- name: list_hosts
-- Throttled hosts for /metrics, the API and the dashboard: most throttled first.
SELECT host, blocked_until,
       GREATEST(0, extract(epoch FROM blocked_until - now())) AS blocked_s,
       max_concurrent, max_per_second, throttled_total, updated_at
FROM scheduler_hosts
ORDER BY throttled_total DESC, host

-- name: host_filter
-- What claim_due_hosts adds to claim_due's scans: not a held host's task (held: an array
-- of host keys, or NULL), and with only_host, that host's tasks alone. claim_due itself
-- has TRUE there: with no throttled host the claim is what it always was.
(%(held)s::text[] IS NULL OR target_host IS NULL OR target_host <> ALL(%(held)s::text[]))
AND (%(only_host)s::text IS NULL OR target_host = %(only_host)s)

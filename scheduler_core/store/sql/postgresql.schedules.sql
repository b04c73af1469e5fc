-- Named queries of schedules (store/schedules.py), PostgreSQL. {schedule_columns} is
-- replaced by store/schedules.py. A write that changes what firers do sends
-- NOTIFY scheduler_core 'schedule' (notify_schedules), delivered at commit.

-- name: schedule_columns
name, cron, timezone, catch_up, paused, webhook_url,
coalesce(payload::text, 'null') AS payload_json, queue, max_retries, next_fire_at,
last_fire_at, created_at, updated_at, not_after, success_codes, stale_codes

-- name: schedule_clock
-- The transaction's clock: every time one transaction writes is this instant.
SELECT now() AS db_now

-- name: notify_schedules
SELECT pg_notify('scheduler_core', 'schedule')

-- name: insert_schedule
INSERT INTO scheduler_schedules
    (name, cron, timezone, catch_up, paused, webhook_url, webhook_auth, payload, queue,
     max_retries, next_fire_at, not_after, success_codes, stale_codes)
VALUES (%(name)s, %(cron)s, %(timezone)s, %(catch_up)s, %(paused)s, %(webhook_url)s,
        %(webhook_auth)s, %(payload)s::json, %(queue)s, %(max_retries)s,
        %(next_fire_at)s::timestamptz, %(not_after)s::timestamptz, %(success_codes)s,
        %(stale_codes)s)
ON CONFLICT (name) DO NOTHING
RETURNING {schedule_columns}

-- name: list_schedules
SELECT {schedule_columns} FROM scheduler_schedules ORDER BY name

-- name: get_schedule
SELECT {schedule_columns} FROM scheduler_schedules WHERE name = %(name)s

-- name: lock_schedule
-- The row to change, held until the transaction ends (a firer skips it meanwhile).
SELECT {schedule_columns}, webhook_auth FROM scheduler_schedules
WHERE name = %(name)s
FOR UPDATE

-- name: update_schedule
UPDATE scheduler_schedules SET
    cron = %(cron)s, timezone = %(timezone)s, catch_up = %(catch_up)s,
    paused = %(paused)s, webhook_url = %(webhook_url)s, webhook_auth = %(webhook_auth)s,
    payload = %(payload)s::json, queue = %(queue)s, max_retries = %(max_retries)s,
    next_fire_at = %(next_fire_at)s::timestamptz, not_after = %(not_after)s::timestamptz,
    success_codes = %(success_codes)s, stale_codes = %(stale_codes)s, updated_at = now()
WHERE name = %(name)s
RETURNING {schedule_columns}

-- name: delete_schedule
DELETE FROM scheduler_schedules WHERE name = %(name)s
RETURNING {schedule_columns}

-- name: any_due_schedule
-- A cheap look before a firing round: is any schedule due at %(now)s (NULL: now())?
SELECT EXISTS (
    SELECT 1 FROM scheduler_schedules
    WHERE NOT paused AND next_fire_at <= coalesce(%(now)s::timestamptz, now())
) AS due

-- name: due_schedule
-- The earliest due schedule no other firer holds, locked for this transaction: several
-- dispatchers firing at once each take a different one, and none fires one twice.
SELECT {schedule_columns}, webhook_auth, now() AS db_now
FROM scheduler_schedules
WHERE NOT paused AND next_fire_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY next_fire_at, name
LIMIT 1
FOR UPDATE SKIP LOCKED

-- name: record_fire
-- After a fire (or a fire passed over): the next time to wait for, the last one enqueued.
UPDATE scheduler_schedules
SET next_fire_at = %(next_fire_at)s::timestamptz,
    last_fire_at = coalesce(%(last_fire_at)s::timestamptz, last_fire_at)
WHERE name = %(name)s

-- name: next_schedule_fire
-- The earliest fire time of a running schedule, and the clock to measure it by.
SELECT now() AS db_now,
       (SELECT min(next_fire_at) FROM scheduler_schedules WHERE NOT paused) AS next_fire

-- name: schedule_auth_page
-- scheduler rotate-key: the next schedules that hold a webhookAuth, in name order.
SELECT name, webhook_auth FROM scheduler_schedules
WHERE webhook_auth IS NOT NULL AND name > %(after)s
ORDER BY name
LIMIT %(limit)s

-- name: replace_schedule_auth
-- A row takes its new value only if it still holds the one read (compare and set).
UPDATE scheduler_schedules s
SET webhook_auth = n.new
FROM json_to_recordset(%(rows)s::json) AS n(name text, old text, new text)
WHERE s.name = n.name AND s.webhook_auth = n.old
RETURNING s.name

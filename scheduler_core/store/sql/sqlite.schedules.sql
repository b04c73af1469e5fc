-- Named queries of schedules (store/schedules.py), SQLite. {schedule_columns} is
-- replaced by store/schedules.py. Every write runs under BEGIN IMMEDIATE: one writer at
-- a time across the file's processes, so a due schedule is fired by one of them.

-- name: schedule_columns
name, cron, timezone, catch_up, paused, webhook_url, payload AS payload_json, queue,
max_retries, next_fire_at, last_fire_at, created_at, updated_at, not_after, success_codes,
stale_codes

-- name: schedule_clock
-- The write transaction's clock (read once when it began).
SELECT {now} AS db_now

-- name: notify_schedules
-- Other processes see the commit through PRAGMA data_version.
SELECT 1

-- name: insert_schedule
INSERT INTO scheduler_schedules
    (name, cron, timezone, catch_up, paused, webhook_url, webhook_auth, payload, queue,
     max_retries, next_fire_at, not_after, success_codes, stale_codes, created_at,
     updated_at)
VALUES (:name, :cron, :timezone, :catch_up, :paused, :webhook_url, :webhook_auth,
        :payload, :queue, :max_retries, :next_fire_at, :not_after, :success_codes,
        :stale_codes, {now}, {now})
ON CONFLICT (name) DO NOTHING
RETURNING {schedule_columns}

-- name: list_schedules
SELECT {schedule_columns} FROM scheduler_schedules ORDER BY name

-- name: get_schedule
SELECT {schedule_columns} FROM scheduler_schedules WHERE name = :name

-- name: lock_schedule
-- (The write transaction holds the file's write lock already.)
SELECT {schedule_columns}, webhook_auth FROM scheduler_schedules WHERE name = :name

-- name: update_schedule
UPDATE scheduler_schedules SET
    cron = :cron, timezone = :timezone, catch_up = :catch_up, paused = :paused,
    webhook_url = :webhook_url, webhook_auth = :webhook_auth, payload = :payload,
    queue = :queue, max_retries = :max_retries, next_fire_at = :next_fire_at,
    not_after = :not_after, success_codes = :success_codes, stale_codes = :stale_codes,
    updated_at = {now}
WHERE name = :name
RETURNING {schedule_columns}

-- name: delete_schedule
DELETE FROM scheduler_schedules WHERE name = :name
RETURNING {schedule_columns}

-- name: any_due_schedule
SELECT EXISTS (
    SELECT 1 FROM scheduler_schedules
    WHERE paused = 0 AND next_fire_at <= coalesce(:now, {now})
) AS due

-- name: due_schedule
SELECT {schedule_columns}, webhook_auth, {now} AS db_now
FROM scheduler_schedules
WHERE paused = 0 AND next_fire_at <= coalesce(:now, {now})
ORDER BY next_fire_at, name
LIMIT 1

-- name: record_fire
UPDATE scheduler_schedules
SET next_fire_at = :next_fire_at, last_fire_at = coalesce(:last_fire_at, last_fire_at)
WHERE name = :name

-- name: next_schedule_fire
SELECT {clock} AS db_now,
       (SELECT min(next_fire_at) FROM scheduler_schedules WHERE paused = 0) AS next_fire

-- name: schedule_auth_page
SELECT name, webhook_auth FROM scheduler_schedules
WHERE webhook_auth IS NOT NULL AND name > :after
ORDER BY name
LIMIT :limit

-- name: replace_schedule_auth
UPDATE scheduler_schedules AS s
SET webhook_auth = n.new
FROM (
    SELECT json_extract(value, '$.name') AS name, json_extract(value, '$.old') AS old,
           json_extract(value, '$.new') AS new
    FROM json_each(:rows)
) AS n
WHERE s.name = n.name AND s.webhook_auth = n.old
RETURNING name

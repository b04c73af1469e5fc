-- scheduler rotate-key over the schedules' webhookAuth (store/schedule_auth.py), as
-- webhook_auth_page / replace_webhook_auth do it for tasks'.

-- name: schedule_auth_page
-- The next schedules that hold a webhookAuth, in name order (byte order, as SQLite's).
SELECT name, webhook_auth FROM scheduler_schedules
WHERE webhook_auth IS NOT NULL AND name COLLATE "C" > %(after)s
ORDER BY name COLLATE "C"
LIMIT %(limit)s

-- name: replace_schedule_auth
-- A row takes its new value only if it still holds the one read (compare and set).
UPDATE scheduler_schedules s
SET webhook_auth = n.new
FROM json_to_recordset(%(rows)s::json) AS n(name text, old text, new text)
WHERE s.name = n.name AND s.webhook_auth = n.old
RETURNING s.name

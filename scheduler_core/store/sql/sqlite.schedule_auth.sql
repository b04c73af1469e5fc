-- scheduler rotate-key over the schedules' webhookAuth (store/schedule_auth.py), as
-- webhook_auth_page / replace_webhook_auth do it for tasks'.

-- name: schedule_auth_page
-- The next schedules that hold a webhookAuth, in name order.
SELECT name, webhook_auth FROM scheduler_schedules
WHERE webhook_auth IS NOT NULL AND name > :after
ORDER BY name
LIMIT :limit

-- name: replace_schedule_auth
-- A row takes its new value only if it still holds the one read (compare and set).
UPDATE scheduler_schedules AS s
SET webhook_auth = n.new
FROM (
    SELECT json_extract(value, '$.name') AS name, json_extract(value, '$.old') AS old,
           json_extract(value, '$.new') AS new
    FROM json_each(:rows)
) AS n
WHERE s.name = n.name AND s.webhook_auth = n.old
RETURNING name

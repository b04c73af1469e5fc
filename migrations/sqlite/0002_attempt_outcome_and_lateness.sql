-- Each attempt says how it ended and how late its first byte went out.

ALTER TABLE scheduler_attempts
    ADD COLUMN outcome TEXT CHECK (outcome IN ('resolved', 'failed', 'snoozed', 'lost'));

-- first byte sent minus the task's nextAttemptAt, in milliseconds
ALTER TABLE scheduler_attempts ADD COLUMN lateness_ms INTEGER;

UPDATE scheduler_attempts
SET outcome = CASE
        WHEN error LIKE 'lease expired%' THEN 'lost'
        WHEN error IS NULL AND status_code BETWEEN 200 AND 299 THEN 'resolved'
        ELSE 'failed' END
WHERE finished_at IS NOT NULL;

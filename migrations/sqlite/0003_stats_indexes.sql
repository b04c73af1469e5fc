-- Attempts by start time: the lateness percentiles of the last minutes and the activity
-- charts of the last hour read a range of it, not the whole table. started_at never
-- changes once written, so recording an outcome still updates the row in place.

CREATE INDEX scheduler_attempts_started ON scheduler_attempts (started_at);

-- Tasks, their delivery attempts and the one-row runtime configuration.
-- Times are integer microseconds since the Unix epoch, UTC: they sort and compare exactly.

CREATE TABLE scheduler_tasks (
    -- creation order: FIFO among equally due tasks, and the keyset of the list API
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    webhook_url       TEXT NOT NULL,
    webhook_auth      TEXT,
    payload           TEXT NOT NULL DEFAULT 'null',  -- JSON text, as stored
    execute_at        INTEGER NOT NULL,
    next_attempt_at   INTEGER NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'resolved', 'stale', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- attempts already made when the current retry budget began (enqueue or POST /retry)
    budget_start      INTEGER NOT NULL DEFAULT 0 CHECK (budget_start >= 0),
    max_retries       INTEGER CHECK (max_retries BETWEEN 0 AND 1000),
    -- claim order puts tasks that never failed first
    has_failed        INTEGER NOT NULL DEFAULT 0 CHECK (has_failed IN (0, 1)),
    idempotency_key   TEXT,
    last_error        TEXT,
    last_status_code  INTEGER,
    lease_expires_at  INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    resolved_at       INTEGER,
    CHECK (status <> 'running' OR lease_expires_at IS NOT NULL)
);

CREATE UNIQUE INDEX scheduler_tasks_idempotency_key
    ON scheduler_tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- The claim reads only pending tasks, in claim order: small and fast at any table size.
CREATE INDEX scheduler_tasks_due
    ON scheduler_tasks (has_failed, next_attempt_at, seq) WHERE status = 'pending';

CREATE INDEX scheduler_tasks_leases
    ON scheduler_tasks (lease_expires_at) WHERE status = 'running';

CREATE INDEX scheduler_tasks_status_seq ON scheduler_tasks (status, seq);

CREATE INDEX scheduler_tasks_retention
    ON scheduler_tasks (updated_at) WHERE status IN ('resolved', 'cancelled');

CREATE TABLE scheduler_attempts (
    task_id      TEXT NOT NULL REFERENCES scheduler_tasks (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL CHECK (attempt >= 1),
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    duration_ms  INTEGER,
    status_code  INTEGER,
    error        TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

CREATE TABLE scheduler_config (
    singleton                 INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    base_interval_ms          INTEGER NOT NULL DEFAULT 1000
                              CHECK (base_interval_ms BETWEEN 10 AND 3600000),
    http_callback_timeout_ms  INTEGER NOT NULL DEFAULT 5000
                              CHECK (http_callback_timeout_ms BETWEEN 100 AND 1800000),
    select_size               INTEGER NOT NULL DEFAULT 100
                              CHECK (select_size BETWEEN 1 AND 10000),
    max_retries               INTEGER NOT NULL DEFAULT 5
                              CHECK (max_retries BETWEEN 0 AND 1000),
    retry_backoff_ms          INTEGER NOT NULL DEFAULT 1000
                              CHECK (retry_backoff_ms BETWEEN 0 AND 86400000),
    retry_backoff_max_ms      INTEGER NOT NULL DEFAULT 3600000
                              CHECK (retry_backoff_max_ms BETWEEN 0 AND 604800000),
    retention_hours           INTEGER NOT NULL DEFAULT 168
                              CHECK (retention_hours BETWEEN 1 AND 87600),
    updated_at                INTEGER NOT NULL DEFAULT 0,
    CHECK (retry_backoff_max_ms >= retry_backoff_ms)
);

INSERT INTO scheduler_config (singleton) VALUES (1);

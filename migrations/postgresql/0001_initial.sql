-- Tasks, their delivery attempts and the one-row runtime configuration.

CREATE TABLE scheduler_tasks (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- creation order: FIFO among equally due tasks, and the keyset of the list API
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    webhook_url       text NOT NULL,
    webhook_auth      text,
    -- json, not jsonb: the payload keeps its text, key order included, as it was stored
    payload           json,
    execute_at        timestamptz NOT NULL,
    next_attempt_at   timestamptz NOT NULL,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'resolved', 'stale', 'cancelled')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- attempts already made when the current retry budget began (enqueue or POST /retry)
    budget_start      integer NOT NULL DEFAULT 0 CHECK (budget_start >= 0),
    max_retries       integer CHECK (max_retries BETWEEN 0 AND 1000),
    -- claim order puts tasks that never failed first
    has_failed        boolean NOT NULL DEFAULT false,
    idempotency_key   text,
    last_error        text,
    last_status_code  integer,
    lease_expires_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz,
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
    task_id      uuid NOT NULL REFERENCES scheduler_tasks (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    duration_ms  integer,
    status_code  integer,
    error        text,
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE scheduler_config (
    singleton                 boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    base_interval_ms          integer NOT NULL DEFAULT 1000
                              CHECK (base_interval_ms BETWEEN 10 AND 3600000),
    http_callback_timeout_ms  integer NOT NULL DEFAULT 5000
                              CHECK (http_callback_timeout_ms BETWEEN 100 AND 1800000),
    select_size               integer NOT NULL DEFAULT 100
                              CHECK (select_size BETWEEN 1 AND 10000),
    max_retries               integer NOT NULL DEFAULT 5
                              CHECK (max_retries BETWEEN 0 AND 1000),
    retry_backoff_ms          integer NOT NULL DEFAULT 1000
                              CHECK (retry_backoff_ms BETWEEN 0 AND 86400000),
    retry_backoff_max_ms      integer NOT NULL DEFAULT 3600000
                              CHECK (retry_backoff_max_ms BETWEEN 0 AND 604800000),
    retention_hours           integer NOT NULL DEFAULT 168
                              CHECK (retention_hours BETWEEN 1 AND 87600),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CHECK (retry_backoff_max_ms >= retry_backoff_ms)
);

INSERT INTO scheduler_config DEFAULT VALUES;

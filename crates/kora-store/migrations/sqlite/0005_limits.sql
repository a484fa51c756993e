-- Concurrency limits (a run's group and its limit) and run deadlines.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE runs ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE runs ADD COLUMN deadline_ms INTEGER;
CREATE INDEX IF NOT EXISTS runs_by_concurrency ON runs (concurrency_key, status) WHERE concurrency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_deadline ON runs (deadline_ms) WHERE deadline_ms IS NOT NULL AND finished_ms IS NULL;

-- Per-queue rate limits (GCRA): each queue's theoretical arrival time.
CREATE TABLE IF NOT EXISTS queue_rates (
    queue  TEXT PRIMARY KEY,
    tat_ms REAL NOT NULL
);

-- Idempotency windows: submissions deduplicated onto an earlier run.
CREATE TABLE IF NOT EXISTS run_aliases (
    alias      TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);

-- The audit log: entries nodes record (AuditLogNode), written with their attempt's outcome.
CREATE TABLE IF NOT EXISTS audit_log (
    run_id     TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    iteration  INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    event_type TEXT,
    user_id    TEXT,
    entry      TEXT NOT NULL,
    PRIMARY KEY (run_id, node_id, iteration, attempt, idx)
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at_ms);

-- Child runs of WorkflowNodes (see the PostgreSQL migration).
ALTER TABLE runs ADD COLUMN parent_task TEXT;
ALTER TABLE runs ADD COLUMN parent_reported_ms INTEGER;

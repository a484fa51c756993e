-- The ledger's baseline: every table and index as they stood when the migration history was
-- squashed (December 2026). A ledger made by an earlier Kora (the hand-written migrator's
-- `kora_migrations` at version 6) has exactly this schema and is adopted at start-up.
--
-- Migrations are append-only: a file that has landed on main is never edited (the migrator
-- refuses a ledger whose applied migration's checksum differs); change the schema with a new
-- numbered file. PL/pgSQL functions live in ../../functions/postgres, one file each, and are
-- replaced at start-up after the migrations.

-- Runs: one row per run (or per rejected submission).
CREATE TABLE runs (
    run_id             TEXT PRIMARY KEY,
    idempotency_key    TEXT UNIQUE,
    workflow_id        TEXT NOT NULL DEFAULT '',
    workflow_name      TEXT NOT NULL DEFAULT '',
    status             TEXT NOT NULL,
    spec               JSONB,
    params             JSONB NOT NULL DEFAULT '{}',
    error              TEXT,
    error_node         TEXT,
    created_ms         BIGINT NOT NULL,
    updated_ms         BIGINT NOT NULL,
    finished_ms        BIGINT,
    -- Outcomes recorded so far: what a coordinator's batch expects (optimistic concurrency).
    outcomes           BIGINT NOT NULL DEFAULT 0,
    -- The concurrency group (workflow, or workflow and key value) and its limit.
    concurrency_key    TEXT,
    concurrency_limit  INTEGER,
    deadline_ms        BIGINT,
    -- A child run's parent attempt (a WorkflowNode's task id), and when the parent was told.
    parent_task        TEXT,
    parent_reported_ms BIGINT
);
CREATE INDEX runs_by_status ON runs (status, created_ms);
CREATE INDEX runs_by_concurrency ON runs (concurrency_key, status) WHERE concurrency_key IS NOT NULL;
-- Only unfinished runs: the sweep asks for overdue ones every few seconds.
CREATE INDEX runs_by_deadline ON runs (deadline_ms) WHERE deadline_ms IS NOT NULL AND finished_ms IS NULL;
CREATE INDEX runs_unreported_children ON runs (finished_ms)
    WHERE parent_task IS NOT NULL AND parent_reported_ms IS NULL;

-- Attempts: one row per node attempt. `seq` numbers outcomes per run (the replay order).
-- A dead letter lives on the attempt that failed: reason, state (open, replayed, purged), the
-- inputs it ran with and the replay's trail; a replayed attempt's operator inputs are `overrides`.
CREATE TABLE attempts (
    run_id         TEXT NOT NULL REFERENCES runs (run_id),
    node_id        TEXT NOT NULL,
    iteration      INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    node_type      TEXT NOT NULL,
    status         TEXT NOT NULL,
    output         JSONB,
    error          TEXT,
    error_type     TEXT,
    worker_id      TEXT,
    dispatched_ms  BIGINT NOT NULL,
    finished_ms    BIGINT,
    seq            BIGINT,
    -- The transactional outbox's "sent" mark.
    published_ms   BIGINT,
    dlq_reason     TEXT,
    dlq_state      TEXT,
    inputs         JSONB,
    overrides      JSONB,
    replayed_ms    BIGINT,
    replayed_by    TEXT,
    replay_attempt INTEGER,
    PRIMARY KEY (run_id, node_id, iteration, attempt)
);
CREATE INDEX attempts_unpublished ON attempts (dispatched_ms) WHERE status = 'dispatched' AND published_ms IS NULL;
CREATE INDEX attempts_dead_letters ON attempts (finished_ms) WHERE dlq_state IS NOT NULL;

-- Run events, in their per-run sequence.
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq    BIGINT NOT NULL,
    body   JSONB NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Registered triggers: messages on `subject`, or the ticks of the cron `schedule`, start runs.
CREATE TABLE triggers (
    name       TEXT PRIMARY KEY,
    subject    TEXT NOT NULL DEFAULT '',
    schedule   TEXT,
    spec       JSONB NOT NULL,
    params     JSONB NOT NULL DEFAULT '{}',
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- Per-queue rate limits (GCRA): each queue's theoretical arrival time, shared by every
-- coordinator.
CREATE TABLE queue_rates (
    queue  TEXT PRIMARY KEY,
    tat_ms DOUBLE PRECISION NOT NULL
);

-- Idempotency windows: submissions deduplicated onto an earlier run.
CREATE TABLE run_aliases (
    alias      TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- The audit log: entries nodes record (AuditLogNode), written with their attempt's outcome.
CREATE TABLE audit_log (
    run_id     TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    iteration  INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    at_ms      BIGINT NOT NULL,
    event_type TEXT,
    user_id    TEXT,
    entry      JSONB NOT NULL,
    PRIMARY KEY (run_id, node_id, iteration, attempt, idx)
);
CREATE INDEX audit_log_by_time ON audit_log (at_ms);

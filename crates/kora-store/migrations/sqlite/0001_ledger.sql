-- The embedded ledger's baseline (`kora run --store sqlite:PATH`): every table and index as
-- they stood when the migration history was squashed (December 2026). A file made by an earlier
-- Kora (the hand-written migrator's `kora_migrations` at version 5) has this schema and is
-- adopted when it is opened. Migrations are append-only: never edit a file that has landed on
-- main; add a numbered one. See the PostgreSQL baseline for what each column means.

CREATE TABLE runs (
    run_id             TEXT PRIMARY KEY,
    idempotency_key    TEXT UNIQUE,
    workflow_id        TEXT NOT NULL DEFAULT '',
    workflow_name      TEXT NOT NULL DEFAULT '',
    status             TEXT NOT NULL,
    spec               TEXT,
    params             TEXT NOT NULL DEFAULT '{}',
    error              TEXT,
    error_node         TEXT,
    created_ms         INTEGER NOT NULL,
    updated_ms         INTEGER NOT NULL,
    finished_ms        INTEGER,
    outcomes           INTEGER NOT NULL DEFAULT 0,
    concurrency_key    TEXT,
    concurrency_limit  INTEGER,
    deadline_ms        INTEGER,
    parent_task        TEXT,
    parent_reported_ms INTEGER
);
CREATE INDEX runs_by_status ON runs (status, created_ms);
CREATE INDEX runs_by_concurrency ON runs (concurrency_key, status) WHERE concurrency_key IS NOT NULL;
CREATE INDEX runs_by_deadline ON runs (deadline_ms) WHERE deadline_ms IS NOT NULL AND finished_ms IS NULL;

CREATE TABLE attempts (
    run_id         TEXT NOT NULL REFERENCES runs (run_id),
    node_id        TEXT NOT NULL,
    iteration      INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    node_type      TEXT NOT NULL,
    status         TEXT NOT NULL,
    output         TEXT,
    error          TEXT,
    error_type     TEXT,
    worker_id      TEXT,
    dispatched_ms  INTEGER NOT NULL,
    finished_ms    INTEGER,
    seq            INTEGER,
    published_ms   INTEGER,
    dlq_reason     TEXT,
    dlq_state      TEXT,
    inputs         TEXT,
    overrides      TEXT,
    replayed_ms    INTEGER,
    replayed_by    TEXT,
    replay_attempt INTEGER,
    PRIMARY KEY (run_id, node_id, iteration, attempt)
);
CREATE INDEX attempts_unpublished ON attempts (dispatched_ms) WHERE status = 'dispatched' AND published_ms IS NULL;
CREATE INDEX attempts_dead_letters ON attempts (finished_ms) WHERE dlq_state IS NOT NULL;

CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq    INTEGER NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE triggers (
    name       TEXT PRIMARY KEY,
    subject    TEXT NOT NULL DEFAULT '',
    schedule   TEXT,
    spec       TEXT NOT NULL,
    params     TEXT NOT NULL DEFAULT '{}',
    paused     INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE queue_rates (
    queue  TEXT PRIMARY KEY,
    tat_ms REAL NOT NULL
);

CREATE TABLE run_aliases (
    alias      TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE audit_log (
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
CREATE INDEX audit_log_by_time ON audit_log (at_ms);

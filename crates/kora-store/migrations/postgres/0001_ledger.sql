CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    workflow_id     TEXT NOT NULL DEFAULT '',
    workflow_name   TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    spec            JSONB,
    params          JSONB NOT NULL DEFAULT '{}',
    error           TEXT,
    error_node      TEXT,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    finished_ms     BIGINT,
    outcomes        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_ms);

CREATE TABLE IF NOT EXISTS attempts (
    run_id        TEXT NOT NULL REFERENCES runs (run_id),
    node_id       TEXT NOT NULL,
    iteration     INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    node_type     TEXT NOT NULL,
    status        TEXT NOT NULL,
    output        JSONB,
    error         TEXT,
    error_type    TEXT,
    worker_id     TEXT,
    dispatched_ms BIGINT NOT NULL,
    finished_ms   BIGINT,
    seq           BIGINT,
    PRIMARY KEY (run_id, node_id, iteration, attempt)
);

CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq    BIGINT NOT NULL,
    body   JSONB NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    workflow_id     TEXT NOT NULL DEFAULT '',
    workflow_name   TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    spec            TEXT,
    params          TEXT NOT NULL DEFAULT '{}',
    error           TEXT,
    error_node      TEXT,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    finished_ms     INTEGER,
    outcomes        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_ms);

CREATE TABLE IF NOT EXISTS attempts (
    run_id        TEXT NOT NULL REFERENCES runs (run_id),
    node_id       TEXT NOT NULL,
    iteration     INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    node_type     TEXT NOT NULL,
    status        TEXT NOT NULL,
    output        TEXT,
    error         TEXT,
    error_type    TEXT,
    worker_id     TEXT,
    dispatched_ms INTEGER NOT NULL,
    finished_ms   INTEGER,
    seq           INTEGER,
    PRIMARY KEY (run_id, node_id, iteration, attempt)
);

CREATE TABLE IF NOT EXISTS events (
    run_id    TEXT NOT NULL REFERENCES runs (run_id),
    seq       INTEGER NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE IF NOT EXISTS triggers (
    name       TEXT PRIMARY KEY,
    subject    TEXT NOT NULL DEFAULT '',
    schedule   TEXT,
    spec       TEXT NOT NULL,
    params     TEXT NOT NULL DEFAULT '{}',
    paused     INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

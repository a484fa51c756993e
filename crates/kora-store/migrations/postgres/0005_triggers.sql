-- Registered triggers: messages on `subject`, or the ticks of the cron `schedule`, start runs of `spec`.
CREATE TABLE IF NOT EXISTS triggers (
    name       TEXT PRIMARY KEY,
    subject    TEXT NOT NULL DEFAULT '',
    schedule   TEXT,
    spec       JSONB NOT NULL,
    params     JSONB NOT NULL DEFAULT '{}',
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

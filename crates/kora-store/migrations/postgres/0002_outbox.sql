ALTER TABLE attempts ADD COLUMN IF NOT EXISTS published_ms BIGINT;
CREATE INDEX IF NOT EXISTS attempts_unpublished ON attempts (dispatched_ms) WHERE status = 'dispatched' AND published_ms IS NULL;

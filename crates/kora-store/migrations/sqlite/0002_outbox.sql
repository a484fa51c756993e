ALTER TABLE attempts ADD COLUMN published_ms INTEGER;
CREATE INDEX IF NOT EXISTS attempts_unpublished ON attempts (dispatched_ms) WHERE status = 'dispatched' AND published_ms IS NULL;

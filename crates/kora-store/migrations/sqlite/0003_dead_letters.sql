ALTER TABLE attempts ADD COLUMN dlq_reason TEXT;
ALTER TABLE attempts ADD COLUMN dlq_state TEXT;
ALTER TABLE attempts ADD COLUMN inputs TEXT;
ALTER TABLE attempts ADD COLUMN overrides TEXT;
ALTER TABLE attempts ADD COLUMN replayed_ms INTEGER;
ALTER TABLE attempts ADD COLUMN replayed_by TEXT;
ALTER TABLE attempts ADD COLUMN replay_attempt INTEGER;
CREATE INDEX IF NOT EXISTS attempts_dead_letters ON attempts (finished_ms) WHERE dlq_state IS NOT NULL;

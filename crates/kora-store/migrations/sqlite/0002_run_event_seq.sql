-- A run's highest event sequence, on its row (see the PostgreSQL migration of the same number).
ALTER TABLE runs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET event_seq = coalesce((SELECT max(seq) FROM events WHERE events.run_id = runs.run_id), 0);

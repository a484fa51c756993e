-- A run's highest event sequence, on its row: a coordinator rebuilding a run's planner state
-- reads it with the run instead of decoding every event the run has. kora_commit keeps it.
ALTER TABLE runs ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
UPDATE runs r SET event_seq = e.seq
FROM (SELECT run_id, max(seq) AS seq FROM events GROUP BY run_id) e
WHERE r.run_id = e.run_id;

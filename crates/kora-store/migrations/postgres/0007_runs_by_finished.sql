-- Runs by when they ended: `kora top` reads the last minute's throughput and run times.
CREATE INDEX runs_by_finished ON runs (finished_ms) WHERE finished_ms IS NOT NULL;

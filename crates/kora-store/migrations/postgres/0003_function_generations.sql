-- Which generation of each PL/pgSQL function (functions/postgres/*.sql) the ledger has. A
-- process replaces a function at start-up only when its own generation is newer, so during a
-- rolling upgrade an older process never puts back an older function.
CREATE TABLE kora_functions (
    name       TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    applied_ms BIGINT NOT NULL
);

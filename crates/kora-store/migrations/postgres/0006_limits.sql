-- Concurrency limits and run deadlines. A run belongs to at most one concurrency group
-- (`concurrency_key`) with its limit; a queued run waits for a slot. kora_commit becomes a
-- wrapper around the function of migration 0004 (renamed kora_commit_base, unchanged): before
-- it, `expect_queued` checks and queued runs' updates (start, cancel); after it, new runs'
-- groups and deadlines, and the limit check.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS concurrency_key TEXT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS concurrency_limit INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS deadline_ms BIGINT;
CREATE INDEX IF NOT EXISTS runs_by_concurrency ON runs (concurrency_key, status) WHERE concurrency_key IS NOT NULL;
-- Only unfinished runs: the sweep asks for overdue ones every few seconds.
CREATE INDEX IF NOT EXISTS runs_by_deadline ON runs (deadline_ms) WHERE deadline_ms IS NOT NULL AND finished_ms IS NULL;

ALTER FUNCTION kora_commit(jsonb) RENAME TO kora_commit_base;

CREATE FUNCTION kora_commit(b jsonb) RETURNS jsonb
LANGUAGE plpgsql SET enable_seqscan = off AS $fn$
DECLARE
    e text;
    st text;
    k record;
    n bigint;
    report jsonb;
BEGIN
    IF b ? 'expect_queued' THEN
        FOR e IN SELECT value FROM jsonb_array_elements_text(b->'expect_queued') LOOP
            SELECT status INTO st FROM runs WHERE run_id = e FOR UPDATE;
            IF st IS DISTINCT FROM 'queued' THEN
                RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = e,
                    DETAIL = format('expected a queued run, found %s', coalesce(st, 'no run'));
            END IF;
        END LOOP;
    END IF;
    -- A queued run's first update (its start, or its cancellation) applies here, in one
    -- statement; the base function updates running runs only, so it applies the rest in order.
    IF jsonb_array_length(coalesce(b->'run_updates', '[]')) > 0 THEN
        UPDATE runs r SET status = q.status, error = q.error, error_node = q.error_node,
               updated_ms = q.at_ms, finished_ms = q.finished_ms
        FROM (
            SELECT DISTINCT ON (x.run_id) x.*
            FROM jsonb_array_elements(b->'run_updates') WITH ORDINALITY AS t(j, ord),
                 jsonb_to_record(t.j) AS x(run_id text, status text, error text, error_node text,
                 at_ms bigint, finished_ms bigint)
            ORDER BY x.run_id, t.ord
        ) q
        WHERE r.run_id = q.run_id AND r.status = 'queued';
    END IF;

    IF b ? 'release_keys' OR b ? 'aliases' THEN
        PERFORM kora_commit_keys(b, 'before');
    END IF;
    report := kora_commit_base(b);
    IF b ? 'audit' THEN
        INSERT INTO audit_log (run_id, node_id, iteration, attempt, idx, at_ms, event_type, user_id, entry)
        SELECT x.run_id, x.node_id, x.iteration, x.attempt, x.idx, x.at_ms, x.entry->>'event_type',
               x.entry->>'user_id', x.entry
        FROM jsonb_to_recordset(b->'audit') AS x(run_id text, node_id text, iteration int, attempt int,
             idx int, at_ms bigint, entry jsonb)
        ON CONFLICT DO NOTHING;
    END IF;
    IF coalesce((b->>'keyed')::boolean, false) AND (report->>'runs_existing')::bigint > 0 THEN
        PERFORM kora_commit_keys(b, 'after');
    END IF;

    IF coalesce((b->>'limited')::boolean, false) THEN
        UPDATE runs r SET concurrency_key = x.concurrency_key, concurrency_limit = x.concurrency_limit,
               deadline_ms = x.deadline_ms, parent_task = x.parent_task
        FROM jsonb_to_recordset(coalesce(b->'new_runs', '[]')) AS x(run_id text, concurrency_key text,
             concurrency_limit int, deadline_ms bigint, parent_task text)
        WHERE r.run_id = x.run_id
          AND (x.concurrency_key IS NOT NULL OR x.deadline_ms IS NOT NULL OR x.parent_task IS NOT NULL)
          AND r.concurrency_key IS NULL AND r.deadline_ms IS NULL AND r.parent_task IS NULL;
        -- No group may be left with more running runs than its limit. The lock (per group,
        -- taken in order) makes concurrent commits count one after the other: each count is
        -- a new snapshot that sees the commits before it.
        FOR k IN
            SELECT DISTINCT r.concurrency_key AS grp, r.concurrency_limit AS lim
            FROM runs r
            WHERE r.concurrency_key IS NOT NULL AND r.status = 'running' AND r.run_id IN (
                SELECT x->>'run_id' FROM jsonb_array_elements(coalesce(b->'new_runs', '[]')) x
                UNION
                SELECT x->>'run_id' FROM jsonb_array_elements(coalesce(b->'run_updates', '[]')) x
                WHERE x->>'status' = 'running')
            ORDER BY 1, 2
        LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended(k.grp, 7203571));
            SELECT count(*) INTO n FROM runs WHERE concurrency_key = k.grp AND status = 'running';
            IF n > k.lim THEN
                RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = k.grp,
                    DETAIL = format('concurrency group would have %s runs running, over its limit of %s', n, k.lim);
            END IF;
        END LOOP;
    END IF;
    RETURN report;
END
$fn$;

-- Per-queue rate limits (GCRA): each queue's theoretical arrival time, shared by every
-- coordinator. A reservation of n tasks moves it on by n intervals in one statement.
CREATE TABLE IF NOT EXISTS queue_rates (
    queue  TEXT PRIMARY KEY,
    tat_ms DOUBLE PRECISION NOT NULL
);

-- Idempotency windows: a submission whose key names a run younger than the window becomes an
-- alias of that run; past the window the old run's key is released and the new run takes it.
CREATE TABLE IF NOT EXISTS run_aliases (
    alias      TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE OR REPLACE FUNCTION kora_commit_keys(b jsonb, phase text) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $fn$
DECLARE
    r record;
BEGIN
    IF phase = 'before' THEN
        IF b ? 'release_keys' THEN
            UPDATE runs SET idempotency_key = NULL
            WHERE idempotency_key IN (SELECT jsonb_array_elements_text(b->'release_keys'));
        END IF;
        IF b ? 'aliases' THEN
            INSERT INTO run_aliases (alias, run_id, created_ms)
            SELECT x.alias, x.run_id, x.at_ms
            FROM jsonb_to_recordset(b->'aliases') AS x(alias text, run_id text, at_ms bigint)
            ON CONFLICT DO NOTHING;
        END IF;
    ELSE
        -- A new run whose key another run holds was not created: that is a conflict (the batch
        -- is retried and finds the other run), never a silent skip.
        FOR r IN
            SELECT x.run_id, x.idempotency_key FROM jsonb_to_recordset(b->'new_runs')
                AS x(run_id text, idempotency_key text)
            WHERE x.idempotency_key IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM runs WHERE run_id = x.run_id)
        LOOP
            RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = r.run_id,
                DETAIL = format('idempotency key %s is held by another run', r.idempotency_key);
        END LOOP;
    END IF;
END
$fn$;

-- The audit log: entries nodes record (AuditLogNode), written with their attempt's outcome.
CREATE TABLE IF NOT EXISTS audit_log (
    run_id     TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    iteration  INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    at_ms      BIGINT NOT NULL,
    event_type TEXT,
    user_id    TEXT,
    entry      JSONB NOT NULL,
    PRIMARY KEY (run_id, node_id, iteration, attempt, idx)
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at_ms);

-- Child runs of WorkflowNodes: the parent attempt (task id) and when the parent was told the
-- child's outcome (an outbox mark: a coordinator that dies before telling it is covered by any
-- coordinator's sweep).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_task TEXT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_reported_ms BIGINT;
CREATE INDEX IF NOT EXISTS runs_unreported_children ON runs (finished_ms)
    WHERE parent_task IS NOT NULL AND parent_reported_ms IS NULL;

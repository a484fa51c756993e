-- Dead letters live on the attempt they failed: its reason, state (open, replayed, purged), the
-- inputs it ran with, and the replay's audit trail (when, by whom, as which attempt). A replayed
-- attempt's operator-set inputs are in `overrides`. kora_commit learns to write them.
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS dlq_reason TEXT;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS dlq_state TEXT;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS inputs JSONB;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS overrides JSONB;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS replayed_ms BIGINT;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS replayed_by TEXT;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS replay_attempt INTEGER;
CREATE INDEX IF NOT EXISTS attempts_dead_letters ON attempts (finished_ms) WHERE dlq_state IS NOT NULL;

CREATE OR REPLACE FUNCTION kora_commit(b jsonb) RETURNS jsonb
LANGUAGE plpgsql SET enable_seqscan = off AS $fn$
DECLARE
    e jsonb;
    have bigint;
    n bigint;
    total bigint;
    u record;
    o record;
    runs_existing bigint := 0;
    attempts_existing bigint := 0;
    outcomes_ignored bigint := 0;
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(coalesce(b->'expect', '[]')) LOOP
        SELECT outcomes INTO have FROM runs WHERE run_id = e->>'run_id' FOR UPDATE;
        IF e ? 'count' THEN
            IF NOT FOUND OR have <> (e->>'count')::bigint THEN
                RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = e->>'run_id',
                    DETAIL = format('expected %s recorded outcomes, found %s', e->>'count', coalesce(have::text, 'no run'));
            END IF;
        ELSIF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = e->>'run_id', DETAIL = 'it already exists';
        END IF;
    END LOOP;

    total := jsonb_array_length(coalesce(b->'new_runs', '[]'));
    IF total > 0 THEN
        INSERT INTO runs (run_id, idempotency_key, workflow_id, workflow_name, status, spec, params, error,
                          created_ms, updated_ms, finished_ms)
        SELECT x.run_id, x.idempotency_key, x.workflow_id, x.workflow_name, x.status, x.spec, x.params, x.error,
               x.at_ms, x.at_ms, x.finished_ms
        FROM jsonb_to_recordset(b->'new_runs') AS x(run_id text, idempotency_key text, workflow_id text,
             workflow_name text, status text, spec jsonb, params jsonb, error text, at_ms bigint, finished_ms bigint)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        runs_existing := total - n;
    END IF;

    total := jsonb_array_length(coalesce(b->'new_attempts', '[]'));
    IF total > 0 THEN
        INSERT INTO attempts (run_id, node_id, iteration, attempt, node_type, status, dispatched_ms, finished_ms)
        SELECT x.run_id, x.node_id, x.iteration, x.attempt, x.node_type, x.status, x.at_ms, x.finished_ms
        FROM jsonb_to_recordset(b->'new_attempts') AS x(run_id text, node_id text, iteration int, attempt int,
             node_type text, status text, at_ms bigint, finished_ms bigint)
        WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = x.run_id)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        attempts_existing := total - n;
    END IF;

    -- Outcomes, set-based: the first result for each attempt that is still dispatched is applied,
    -- numbered after the run's recorded outcomes in batch order; the rest are fenced.
    total := jsonb_array_length(coalesce(b->'outcomes', '[]'));
    IF total BETWEEN 1 AND 4 THEN
        -- A few outcomes (a chain's step): keyed statements are cheaper than the set-based plan.
        FOR o IN
            SELECT x.* FROM jsonb_array_elements(b->'outcomes') WITH ORDINALITY AS t(j, ord),
                 jsonb_to_record(t.j) AS x(run_id text, node_id text, iteration int, attempt int, status text,
                 output jsonb, error text, error_type text, worker_id text, at_ms bigint, dlq_reason text,
                 inputs jsonb)
            ORDER BY t.ord
        LOOP
            UPDATE attempts SET status = o.status, output = o.output, error = o.error, error_type = o.error_type,
                   worker_id = o.worker_id, finished_ms = o.at_ms, dlq_reason = o.dlq_reason,
                   dlq_state = CASE WHEN o.dlq_reason IS NULL THEN NULL ELSE 'open' END, inputs = o.inputs,
                   seq = (SELECT r.outcomes + 1 FROM runs r WHERE r.run_id = o.run_id)
            WHERE run_id = o.run_id AND node_id = o.node_id AND iteration = o.iteration AND attempt = o.attempt
              AND status = 'dispatched';
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n = 0 THEN
                outcomes_ignored := outcomes_ignored + 1;
            ELSE
                UPDATE runs SET outcomes = outcomes + 1 WHERE run_id = o.run_id;
            END IF;
        END LOOP;
    ELSIF total > 4 THEN
        WITH incoming AS (
            SELECT x.*, t.ord
            FROM jsonb_array_elements(b->'outcomes') WITH ORDINALITY AS t(j, ord),
                 jsonb_to_record(t.j) AS x(run_id text, node_id text, iteration int, attempt int, status text,
                 output jsonb, error text, error_type text, worker_id text, at_ms bigint, dlq_reason text,
                 inputs jsonb)
        ), live AS (
            SELECT DISTINCT ON (i.run_id, i.node_id, i.iteration, i.attempt) i.*
            FROM incoming i JOIN attempts a ON a.run_id = i.run_id AND a.node_id = i.node_id
                 AND a.iteration = i.iteration AND a.attempt = i.attempt
            WHERE a.status = 'dispatched'
            ORDER BY i.run_id, i.node_id, i.iteration, i.attempt, i.ord
        ), numbered AS (
            SELECT l.*, r.outcomes + row_number() OVER (PARTITION BY l.run_id ORDER BY l.ord) AS seq
            FROM live l JOIN runs r ON r.run_id = l.run_id
        ), applied AS (
            UPDATE attempts a SET status = n.status, output = n.output, error = n.error, error_type = n.error_type,
                   worker_id = n.worker_id, finished_ms = n.at_ms, seq = n.seq, dlq_reason = n.dlq_reason,
                   dlq_state = CASE WHEN n.dlq_reason IS NULL THEN NULL ELSE 'open' END, inputs = n.inputs
            FROM numbered n
            WHERE a.run_id = n.run_id AND a.node_id = n.node_id AND a.iteration = n.iteration
              AND a.attempt = n.attempt AND a.status = 'dispatched'
            RETURNING a.run_id
        ), counted AS (
            SELECT run_id, count(*) AS n FROM applied GROUP BY run_id
        ), bumped AS (
            UPDATE runs r SET outcomes = r.outcomes + c.n FROM counted c WHERE r.run_id = c.run_id
            RETURNING c.n
        )
        SELECT coalesce(sum(bumped.n), 0) INTO n FROM bumped;
        outcomes_ignored := total - n;
    END IF;

    FOR u IN
        SELECT x.* FROM jsonb_to_recordset(coalesce(b->'run_updates', '[]')) AS x(run_id text, status text,
             error text, error_node text, at_ms bigint, finished_ms bigint)
    LOOP
        UPDATE runs SET status = u.status, error = u.error, error_node = u.error_node, updated_ms = u.at_ms,
               finished_ms = u.finished_ms
        WHERE run_id = u.run_id AND status = 'running';
    END LOOP;

    IF jsonb_array_length(coalesce(b->'events', '[]')) > 0 THEN
        INSERT INTO events (run_id, seq, body)
        SELECT x.run_id, x.seq, x.body
        FROM jsonb_to_recordset(b->'events') AS x(run_id text, seq bigint, body jsonb)
        WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = x.run_id)
        ON CONFLICT DO NOTHING;
    END IF;

    RETURN jsonb_build_object('runs_existing', runs_existing, 'attempts_existing', attempts_existing,
                              'outcomes_ignored', outcomes_ignored);
END
$fn$;

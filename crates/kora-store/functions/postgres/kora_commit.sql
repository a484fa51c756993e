-- kora_commit(batch jsonb): one coordinator batch in one statement.
--
-- The coordinator calls `SELECT kora_commit($1::jsonb)` in autocommit, so a batch costs one
-- network round trip and one WAL flush. In order, it applies:
--   1. expectations (optimistic concurrency): `expect` (a run's recorded outcome count, or that
--      it does not exist yet), `expect_queued` (a run still queued) and `expect_events` (a run's
--      highest event sequence, the one the batch numbers its events after), each under the
--      run's row lock; a failed one raises SQLSTATE KR409 and nothing is written;
--   2. a queued run's first update (its start, or its cancellation);
--   3. idempotency keys released (`release_keys`) and aliases of deduplicated submissions;
--   4. new runs (with their tenant, concurrency group, deadline and parent), new attempts;
--   5. outcomes: the first result for each attempt still `dispatched` is applied, numbered after
--      the run's recorded outcomes in batch order; the rest are fenced (counted, not applied);
--   6. updates of running runs, in order; events; each run's highest event sequence;
--   7. audit entries (once per attempt and position);
--   8. checks: a new run whose idempotency key another run holds is a conflict (never a silent
--      skip); no concurrency group may be left with more running runs than its limit.
--   9. tasks the outbox published since the previous commit (`published`, `published_ms`),
--      marked as a hint, as kora_mark_published does, without a statement of their own.
-- It returns what it skipped as already recorded: runs_existing, attempts_existing,
-- outcomes_ignored.
--
-- Plans inside a function are cached for the connection's life and would be chosen while the
-- tables are still small; index scans are forced so a batch never scans a table that has since
-- grown.
--
-- This file is applied at start-up (CREATE OR REPLACE) after the migrations; raise
-- its generation in src/pg/schema.rs when you change it. Keep it compatible with the
-- batches the previous release sends (new keys optional), since a rolling upgrade runs both.
CREATE OR REPLACE FUNCTION kora_commit(b jsonb) RETURNS jsonb
LANGUAGE plpgsql SET enable_seqscan = off AS $fn$
DECLARE
    e jsonb;
    id text;
    st text;
    have bigint;
    n bigint;
    total bigint;
    u record;
    o record;
    k record;
    runs_existing bigint := 0;
    attempts_existing bigint := 0;
    outcomes_ignored bigint := 0;
BEGIN
    -- 1. Expectations. The runs are locked first, all together in run id order: two
    --    coordinators' batches that share runs then wait for each other instead of deadlocking.
    PERFORM 1 FROM runs WHERE run_id IN (
        SELECT value FROM jsonb_array_elements_text(coalesce(b->'expect_queued', '[]'))
        UNION SELECT value->>'run_id' FROM jsonb_array_elements(coalesce(b->'expect', '[]'))
        UNION SELECT value->>'run_id' FROM jsonb_array_elements(coalesce(b->'expect_events', '[]')))
    ORDER BY run_id FOR UPDATE;
    IF b ? 'expect_queued' THEN
        FOR id IN SELECT value FROM jsonb_array_elements_text(b->'expect_queued') LOOP
            SELECT status INTO st FROM runs WHERE run_id = id FOR UPDATE;
            IF st IS DISTINCT FROM 'queued' THEN
                RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = id,
                    DETAIL = format('expected a queued run, found %s', coalesce(st, 'no run'));
            END IF;
        END LOOP;
    END IF;
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
    FOR e IN SELECT value FROM jsonb_array_elements(coalesce(b->'expect_events', '[]')) LOOP
        SELECT event_seq INTO have FROM runs WHERE run_id = e->>'run_id';
        IF FOUND AND have <> (e->>'seq')::bigint THEN
            RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = e->>'run_id',
                DETAIL = format('expected event sequence %s, found %s', e->>'seq', have);
        END IF;
    END LOOP;

    -- 2. A queued run's first update applies here, in one statement; step 6 updates running
    --    runs only, so it applies the rest of the batch's updates in order.
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

    -- 3. Idempotency keys: a key past its window is released from its old run; a submission
    --    inside the window becomes an alias of the run holding the key.
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

    -- 4. New runs and new attempts.
    total := jsonb_array_length(coalesce(b->'new_runs', '[]'));
    IF total > 0 THEN
        INSERT INTO runs (run_id, idempotency_key, workflow_id, workflow_name, status, spec, params, error,
                          created_ms, updated_ms, finished_ms, concurrency_key, concurrency_limit,
                          deadline_ms, parent_task, tenant)
        SELECT x.run_id, x.idempotency_key, x.workflow_id, x.workflow_name, x.status, x.spec, x.params, x.error,
               x.at_ms, x.at_ms, x.finished_ms, x.concurrency_key, x.concurrency_limit, x.deadline_ms,
               x.parent_task, coalesce(x.tenant, 'default')
        FROM jsonb_to_recordset(b->'new_runs') AS x(run_id text, idempotency_key text, workflow_id text,
             workflow_name text, status text, spec jsonb, params jsonb, error text, at_ms bigint,
             finished_ms bigint, concurrency_key text, concurrency_limit int, deadline_ms bigint,
             parent_task text, tenant text)
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

    -- 5. Outcomes. A failure that is not retried carries its dead-letter reason and inputs.
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

    -- 6. Updates of running runs (a finished run stays finished), events, and each run's
    --    highest event sequence (read back when a coordinator rebuilds the run).
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
        UPDATE runs r SET event_seq = m.seq
        FROM (SELECT x.run_id, max(x.seq) AS seq
              FROM jsonb_to_recordset(b->'events') AS x(run_id text, seq bigint) GROUP BY x.run_id) m
        WHERE r.run_id = m.run_id AND r.event_seq < m.seq;
    END IF;

    -- 7. Audit entries.
    IF b ? 'audit' THEN
        INSERT INTO audit_log (run_id, node_id, iteration, attempt, idx, at_ms, event_type, user_id, entry)
        SELECT x.run_id, x.node_id, x.iteration, x.attempt, x.idx, x.at_ms, x.entry->>'event_type',
               x.entry->>'user_id', x.entry
        FROM jsonb_to_recordset(b->'audit') AS x(run_id text, node_id text, iteration int, attempt int,
             idx int, at_ms bigint, entry jsonb)
        ON CONFLICT DO NOTHING;
    END IF;

    -- 8. Checks after writing. A new run whose key another run holds was not created: a
    --    conflict (the batch is retried and finds the other run).
    IF coalesce((b->>'keyed')::boolean, false) AND runs_existing > 0 THEN
        FOR k IN
            SELECT x.run_id, x.idempotency_key FROM jsonb_to_recordset(b->'new_runs')
                AS x(run_id text, idempotency_key text)
            WHERE x.idempotency_key IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM runs WHERE run_id = x.run_id)
        LOOP
            RAISE EXCEPTION USING ERRCODE = 'KR409', MESSAGE = k.run_id,
                DETAIL = format('idempotency key %s is held by another run', k.idempotency_key);
        END LOOP;
    END IF;
    -- No group may be left with more running runs than its limit. The lock (per group, taken
    -- in order) makes concurrent commits count one after the other: each count is a new
    -- snapshot that sees the commits before it.
    IF coalesce((b->>'limited')::boolean, false) THEN
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

    -- 9. Published tasks (the outbox's hint for the sweeper). Their runs are not locked by this
    --    batch, so an attempt another transaction holds is skipped rather than waited for
    --    (waiting could deadlock): that transaction records its outcome or marks it. Should it
    --    roll back, the sweeper re-sends the task, which dedup and fencing absorb.
    IF b ? 'published' THEN
        UPDATE attempts a SET published_ms = (b->>'published_ms')::bigint
        WHERE (a.run_id, a.node_id, a.iteration, a.attempt) IN (
            SELECT p.run_id, p.node_id, p.iteration, p.attempt
            FROM attempts p JOIN jsonb_to_recordset(b->'published')
                 AS x(run_id text, node_id text, iteration int, attempt int)
              ON p.run_id = x.run_id AND p.node_id = x.node_id AND p.iteration = x.iteration
             AND p.attempt = x.attempt
            WHERE p.published_ms IS NULL
            FOR UPDATE OF p SKIP LOCKED);
    END IF;

    RETURN jsonb_build_object('runs_existing', runs_existing, 'attempts_existing', attempts_existing,
                              'outcomes_ignored', outcomes_ignored);
END
$fn$;

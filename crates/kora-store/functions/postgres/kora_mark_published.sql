-- kora_mark_published(keys jsonb, at_ms bigint): marks published tasks (the outbox's "sent").
--
-- The mark is a hint: losing it only makes the sweeper re-send a task, which the broker's dedup
-- window and the ledger's fencing absorb. So it is committed without waiting for the WAL flush,
-- and off the coordinator's critical path. Returns how many attempts it marked.
--
-- Applied at start-up after the migrations; raise its generation in src/pg/schema.rs when you
-- change it.
CREATE OR REPLACE FUNCTION kora_mark_published(keys jsonb, at_ms bigint) RETURNS bigint
LANGUAGE plpgsql SET enable_seqscan = off AS $fn$
DECLARE
    done bigint;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- An attempt another transaction holds is skipped, not waited for (waiting could deadlock
    -- with a commit): that transaction records its outcome or marks it. Should it roll back,
    -- the sweeper re-sends the task, which dedup and fencing absorb.
    UPDATE attempts a SET published_ms = at_ms
    WHERE (a.run_id, a.node_id, a.iteration, a.attempt) IN (
        SELECT p.run_id, p.node_id, p.iteration, p.attempt
        FROM attempts p JOIN jsonb_to_recordset(keys)
             AS x(run_id text, node_id text, iteration int, attempt int)
          ON p.run_id = x.run_id AND p.node_id = x.node_id AND p.iteration = x.iteration
         AND p.attempt = x.attempt
        WHERE p.published_ms IS NULL
        FOR UPDATE OF p SKIP LOCKED);
    GET DIAGNOSTICS done = ROW_COUNT;
    RETURN done;
END
$fn$;

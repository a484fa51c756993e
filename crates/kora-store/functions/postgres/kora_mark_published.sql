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
    UPDATE attempts a SET published_ms = at_ms
    FROM jsonb_to_recordset(keys) AS x(run_id text, node_id text, iteration int, attempt int)
    WHERE a.run_id = x.run_id AND a.node_id = x.node_id AND a.iteration = x.iteration
      AND a.attempt = x.attempt AND a.published_ms IS NULL;
    GET DIAGNOSTICS done = ROW_COUNT;
    RETURN done;
END
$fn$;

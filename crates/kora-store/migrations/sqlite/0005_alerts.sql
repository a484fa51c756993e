-- Alerts raised by the coordinators' monitor: one row per subject (a stuck run, a workflow's
-- node type whose latency is anomalous, a queue backing up). Opening the row is what lets
-- exactly one coordinator send an alert however many run, and resolving it likewise. Each
-- message (the alert, its resolve) is claimed before it is sent and marked once delivered; a
-- claim older than a minute without delivery (its coordinator died) is claimed again.
CREATE TABLE alerts (
    subject             TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    severity            TEXT NOT NULL,
    body                TEXT NOT NULL,
    opened_ms           BIGINT NOT NULL,
    open_claimed_ms     BIGINT,
    open_sent_ms        BIGINT,
    resolved_ms         BIGINT,
    resolve_claimed_ms  BIGINT,
    resolve_sent_ms     BIGINT
);
CREATE INDEX alerts_open ON alerts (kind) WHERE resolved_ms IS NULL;
CREATE INDEX alerts_unsent ON alerts (opened_ms)
    WHERE open_sent_ms IS NULL OR (resolved_ms IS NOT NULL AND resolve_sent_ms IS NULL);

-- Tenants, API keys, registered workflows and the API's audit trail (the gateway, #11).
--
-- Every run and trigger belongs to a tenant; what existed before belongs to 'default'. A run's
-- dead letters and audit entries belong to its tenant (through the run).
ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX runs_by_tenant ON runs (tenant, created_ms DESC, run_id DESC);
ALTER TABLE triggers ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
-- A webhook trigger's runs start from signed HTTP requests to the gateway. Its secret is
-- derived from this salt and the gateway's key pepper, so the ledger alone cannot sign.
ALTER TABLE triggers ADD COLUMN webhook_salt TEXT;

-- API keys: `kora_<key_id>_<secret>`. Only a keyed hash of the secret is kept (HMAC-SHA256
-- with the installation's key pepper), never the secret.
CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL,
    scopes      JSONB NOT NULL DEFAULT '[]',
    secret_hash BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL,
    created_by  TEXT NOT NULL DEFAULT '',
    expires_ms  BIGINT,
    revoked_ms  BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_ms);

-- Registered workflows, by name and version; a run keeps the version it started with (its
-- spec is on its row). Deleting a name hides every version.
CREATE TABLE workflows (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    spec       JSONB NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    deleted_ms BIGINT,
    PRIMARY KEY (tenant, name, version)
);

-- The API's audit trail: every mutating call, who made it, on what, and how it ended.
CREATE TABLE api_audit (
    id          BIGSERIAL PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    tenant      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    client_addr TEXT NOT NULL DEFAULT '',
    request_id  TEXT NOT NULL DEFAULT '',
    detail      JSONB
);
CREATE INDEX api_audit_by_tenant ON api_audit (tenant, at_ms DESC);

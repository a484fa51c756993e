-- Tenants, API keys, registered workflows and the API's audit trail (see the PostgreSQL
-- migration of the same name).
ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX runs_by_tenant ON runs (tenant, created_ms DESC, run_id DESC);
ALTER TABLE triggers ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
-- A webhook trigger's runs start from signed HTTP requests to the gateway. Its secret is
-- derived from this salt and the gateway's key pepper, so the ledger alone cannot sign.
ALTER TABLE triggers ADD COLUMN webhook_salt TEXT;

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL,
    scopes      TEXT NOT NULL DEFAULT '[]',
    secret_hash BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    created_by  TEXT NOT NULL DEFAULT '',
    expires_ms  INTEGER,
    revoked_ms  INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_ms);

CREATE TABLE workflows (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    spec       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    deleted_ms INTEGER,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE api_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    tenant      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    client_addr TEXT NOT NULL DEFAULT '',
    request_id  TEXT NOT NULL DEFAULT '',
    detail      TEXT
);
CREATE INDEX api_audit_by_tenant ON api_audit (tenant, at_ms DESC);

-- A tenant's runs that hold a slot (running or queued), counted by the gateway for its
-- concurrent-run quota.
CREATE INDEX runs_active_by_tenant ON runs (tenant) WHERE status IN ('running', 'queued');

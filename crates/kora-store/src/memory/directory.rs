//! The in-memory store's [`Directory`]: API keys, registered workflows and the API audit trail.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kora_model::WorkflowSpec;

use super::MemoryStore;
use crate::{ApiAuditEntry, ApiAuditFilter, ApiKey, Directory, Error, Result, WorkflowRecord};

#[derive(Default)]
pub(super) struct DirInner {
    keys: BTreeMap<String, ApiKey>,
    /// By (tenant, name, version), with when it was deleted.
    workflows: BTreeMap<(String, String, u32), (WorkflowRecord, Option<u64>)>,
    audit: Vec<ApiAuditEntry>,
}

#[async_trait]
impl Directory for MemoryStore {
    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let mut d = self.dir();
        if d.keys.contains_key(&key.key_id) {
            return Err(Error::Taken(format!("API key id {} exists", key.key_id)));
        }
        d.keys.insert(key.key_id.clone(), key.clone());
        Ok(())
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
        Ok(self.dir().keys.get(key_id).cloned())
    }

    async fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        let mut keys: Vec<ApiKey> = self
            .dir()
            .keys
            .values()
            .filter(|k| tenant.is_none_or(|t| t == k.tenant))
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_ms, &a.key_id).cmp(&(b.created_ms, &b.key_id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, key_id: &str, tenant: Option<&str>, at_ms: u64) -> Result<bool> {
        let mut d = self.dir();
        match d.keys.get_mut(key_id) {
            Some(k) if tenant.is_none_or(|t| t == k.tenant) => {
                k.revoked_ms.get_or_insert(at_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn register_workflow(
        &self,
        tenant: &str,
        name: &str,
        spec: &WorkflowSpec,
        by: &str,
        at_ms: u64,
    ) -> Result<u32> {
        let mut d = self.dir();
        let version = d
            .workflows
            .range(
                (tenant.to_string(), name.to_string(), 0)
                    ..=(tenant.to_string(), name.to_string(), u32::MAX),
            )
            .next_back()
            .map_or(1, |((_, _, v), _)| v + 1);
        let rec = WorkflowRecord {
            tenant: tenant.to_string(),
            name: name.to_string(),
            version,
            spec: spec.clone(),
            created_ms: at_ms,
            created_by: by.to_string(),
        };
        d.workflows
            .insert((tenant.to_string(), name.to_string(), version), (rec, None));
        Ok(version)
    }

    async fn workflow(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>> {
        let d = self.dir();
        let live = d
            .workflows
            .range(
                (tenant.to_string(), name.to_string(), 0)
                    ..=(tenant.to_string(), name.to_string(), u32::MAX),
            )
            .filter(|(_, (_, deleted))| deleted.is_none())
            .map(|(_, (r, _))| r);
        Ok(match version {
            Some(v) => live.into_iter().find(|r| r.version == v).cloned(),
            None => live.max_by_key(|r| r.version).cloned(),
        })
    }

    async fn workflows(&self, tenant: &str) -> Result<Vec<WorkflowRecord>> {
        let d = self.dir();
        let mut latest: BTreeMap<&str, &WorkflowRecord> = BTreeMap::new();
        for ((t, name, _), (r, deleted)) in &d.workflows {
            if t == tenant && deleted.is_none() {
                latest.insert(name, r);
            }
        }
        Ok(latest.into_values().cloned().collect())
    }

    async fn delete_workflow(&self, tenant: &str, name: &str, at_ms: u64) -> Result<bool> {
        let mut d = self.dir();
        let mut any = false;
        for ((t, n, _), (_, deleted)) in &mut d.workflows {
            if t == tenant && n == name && deleted.is_none() {
                *deleted = Some(at_ms);
                any = true;
            }
        }
        Ok(any)
    }

    async fn record_api_calls(&self, entries: &[ApiAuditEntry]) -> Result<()> {
        let mut d = self.dir();
        for entry in entries {
            let mut e = entry.clone();
            e.id = d.audit.len() as u64 + 1;
            d.audit.push(e);
        }
        Ok(())
    }

    async fn api_audit(&self, filter: &ApiAuditFilter) -> Result<Vec<ApiAuditEntry>> {
        let d = self.dir();
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        Ok(d.audit
            .iter()
            .rev()
            .filter(|e| filter.admits(e))
            .take(limit)
            .cloned()
            .collect())
    }
}

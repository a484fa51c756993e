//! Who may use the API and what they registered: API keys, named workflows, and the API's audit
//! trail. Not run state: the gateway (and `kora keys`) write these directly.

use async_trait::async_trait;
use kora_model::{Value, WorkflowSpec};

use crate::Result;

/// An API key. The secret itself is never stored: `secret_hash` is a keyed hash of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// The public part of `kora_<key_id>_<secret>`.
    pub key_id: String,
    pub tenant: String,
    /// What it is for, as its creator named it.
    pub name: String,
    /// The role it acts as (`viewer`, `operator`, `admin`, ...).
    pub role: String,
    /// Scopes beyond the role's, or (when the role is empty) instead of it.
    pub scopes: Vec<String>,
    pub secret_hash: Vec<u8>,
    pub created_ms: u64,
    pub created_by: String,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
}

/// A registered workflow version.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    pub tenant: String,
    pub name: String,
    /// 1, 2, ... per tenant and name.
    pub version: u32,
    pub spec: WorkflowSpec,
    pub created_ms: u64,
    pub created_by: String,
}

/// One mutating API call: who, on what, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiAuditEntry {
    /// Assigned by the store (0 when writing).
    pub id: u64,
    pub at_ms: u64,
    pub tenant: String,
    pub actor: String,
    /// `runs.submit`, `dead_letters.replay`, `keys.create`, ...
    pub action: String,
    /// What it acted on (a run id, a dead letter id, a key id); empty for a collection.
    pub target: String,
    /// `ok`, `denied`, or the error code.
    pub outcome: String,
    /// The HTTP status answered.
    pub status: u16,
    pub client_addr: String,
    pub request_id: String,
    pub detail: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct ApiAuditFilter {
    pub tenant: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since_ms: Option<u64>,
    /// A page after this one: entries with a smaller id.
    pub before_id: Option<u64>,
    /// 0 = no limit.
    pub limit: usize,
}

impl ApiAuditFilter {
    pub fn admits(&self, e: &ApiAuditEntry) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == e.tenant)
            && self.actor.as_deref().is_none_or(|a| a == e.actor)
            && self.action.as_deref().is_none_or(|a| a == e.action)
            && self.since_ms.is_none_or(|t| e.at_ms >= t)
            && self.before_id.is_none_or(|b| e.id < b)
    }
}

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Stores a new key (its id must be new).
    async fn create_api_key(&self, key: &ApiKey) -> Result<()>;
    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>>;
    /// Keys of a tenant (or every tenant), oldest first.
    async fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>>;
    /// Revokes a key (of `tenant`, if given); `false` when there is no such key.
    async fn revoke_api_key(&self, key_id: &str, tenant: Option<&str>, at_ms: u64) -> Result<bool>;

    /// Registers `spec` as the next version of `name` for `tenant`; returns the version.
    async fn register_workflow(
        &self,
        tenant: &str,
        name: &str,
        spec: &WorkflowSpec,
        by: &str,
        at_ms: u64,
    ) -> Result<u32>;
    /// A version of a registered workflow, or its latest; not a deleted one.
    async fn workflow(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>>;
    /// The latest version of each registered workflow of `tenant`, by name.
    async fn workflows(&self, tenant: &str) -> Result<Vec<WorkflowRecord>>;
    /// Hides every version of `name`; `false` when there is none. Runs keep their own copy.
    async fn delete_workflow(&self, tenant: &str, name: &str, at_ms: u64) -> Result<bool>;

    /// Records entries (in one transaction), numbering them in order.
    async fn record_api_calls(&self, entries: &[ApiAuditEntry]) -> Result<()>;
    /// Audit entries, newest first.
    async fn api_audit(&self, filter: &ApiAuditFilter) -> Result<Vec<ApiAuditEntry>>;
}

//! What every request handler shares, and the per-request context extractors: the caller
//! ([`Principal`], authenticated and rate-limited) and the request's id and client address.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use ipnet::IpNet;
use kora_client::Control;
use kora_store::{ApiAuditEntry, Store};

use crate::audit::AuditWriter;
use crate::auth::{Authenticator, Principal};
use crate::config::GatewayConfig;
use crate::error::{ApiError, ApiResult};
use crate::limits::Limits;
use crate::metrics::GatewayMetrics;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) cfg: Arc<GatewayConfig>,
    pub(crate) control: Control,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) audit: AuditWriter,
    pub(crate) metrics: Arc<GatewayMetrics>,
    pub(crate) admin_allow: Arc<Vec<IpNet>>,
    pub(crate) trusted_proxies: Arc<Vec<IpNet>>,
    /// The process's metrics, for `/metrics`.
    pub(crate) registry: Option<Arc<prometheus_client::registry::Registry>>,
    /// The node types runs may use.
    pub(crate) catalog: Arc<dyn kora_model::Catalog + Send + Sync>,
    /// The workers alive now, from their statuses.
    pub(crate) workers: Arc<crate::workers::Workers>,
}

impl AppState {
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.control.store()
    }

    /// The control API acting within the caller's tenant.
    pub(crate) fn control_for(&self, who: &Principal) -> Control {
        self.control.for_tenant(Some(&who.tenant))
    }

    /// `403` unless the client's address may reach admin routes.
    pub(crate) fn require_admin_network(&self, ctx: &RequestCtx) -> Result<(), ApiError> {
        if self.admin_allow.iter().any(|n| n.contains(&ctx.client)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this route is open only to the networks in gateway.admin_allow",
            ))
        }
    }

    /// Records a mutating call and how it ended in the audit trail, then gives its answer.
    pub(crate) async fn audited(
        &self,
        who: &Principal,
        ctx: &RequestCtx,
        action: &str,
        target: &str,
        detail: Option<serde_json::Value>,
        result: ApiResult<Response>,
    ) -> ApiResult<Response> {
        let (status, outcome) = match &result {
            Ok(r) => (r.status().as_u16(), "ok"),
            Err(e) => (e.status.as_u16(), e.code),
        };
        self.record_call(who, ctx, action, target, detail, (status, outcome))
            .await;
        result
    }

    /// Writes the audit entry of a call whose answer is `(status, outcome)`.
    pub(crate) async fn record_call(
        &self,
        who: &Principal,
        ctx: &RequestCtx,
        action: &str,
        target: &str,
        detail: Option<serde_json::Value>,
        (status, outcome): (u16, &str),
    ) {
        let entry = ApiAuditEntry {
            id: 0,
            at_ms: kora_model::now_ms(),
            tenant: who.tenant.clone(),
            actor: who.actor.clone(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: outcome.to_string(),
            status,
            client_addr: ctx.client.to_string(),
            request_id: ctx.request_id.clone(),
            detail,
        };
        if !self.audit.record(entry).await {
            self.metrics.audit_failures.inc();
        }
    }
}

/// The request's id (`X-Request-Id`, given or made) and its client's address (the peer, or
/// the `X-Forwarded-For` hop before the first trusted proxy).
#[derive(Debug, Clone)]
pub(crate) struct RequestCtx {
    pub(crate) request_id: String,
    pub(crate) client: IpAddr,
    /// The caller's W3C trace context (`traceparent`), if it sent a valid one: a run it
    /// submits links its trace to it.
    pub(crate) traceparent: Option<kora_model::trace::TraceParent>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestCtx>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the request context is missing"))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let cred = Authenticator::bearer(&parts.headers).map_err(|f| {
            st.metrics.auth_failure(f.0);
            f.to_api_error()
        })?;
        let p = st.auth.authenticate(cred).await.map_err(|f| {
            st.metrics.auth_failure(f.0);
            tracing::info!(reason = f.0, "credential refused");
            f.to_api_error()
        })?;
        st.limits.check_credential(&p.actor)?;
        // The access log names the caller.
        parts.extensions.insert(p.clone());
        if let Some(slot) = parts.extensions.get::<crate::protect::ActorSlot>() {
            slot.set(&p.actor, &p.tenant);
        }
        Ok(p)
    }
}

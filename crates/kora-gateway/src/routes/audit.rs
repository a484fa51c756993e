//! `GET /v1/audit`: the tenant's API audit trail, newest first. An admin route.

use axum::Json;
use axum::extract::State;
use kora_store::{ApiAuditEntry, ApiAuditFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{decode_cursor, encode_cursor, page_size, parse_time};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::scopes::Scope;
use crate::state::{AppState, RequestCtx};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditView {
    pub(crate) id: u64,
    pub(crate) at_ms: u64,
    pub(crate) tenant: String,
    /// `key:<key_id>`, `jwt:<subject>` or `webhook:<trigger>`.
    pub(crate) actor: String,
    /// `runs.submit`, `runs.cancel`, `dead_letters.replay`, `keys.create`, ...
    pub(crate) action: String,
    pub(crate) target: String,
    /// `ok`, or the error code it was answered with.
    pub(crate) outcome: String,
    pub(crate) status: u16,
    pub(crate) client_addr: String,
    pub(crate) request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) detail: Option<serde_json::Value>,
}

impl From<ApiAuditEntry> for AuditView {
    fn from(e: ApiAuditEntry) -> Self {
        AuditView {
            id: e.id,
            at_ms: e.at_ms,
            tenant: e.tenant,
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            status: e.status,
            client_addr: e.client_addr,
            request_id: e.request_id,
            detail: e.detail,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditPage {
    pub(crate) entries: Vec<AuditView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    /// `30m`, `12h`, `7d`, or epoch ms.
    pub(crate) since: Option<String>,
    /// Entries per page (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
}

/// Read the API audit trail.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "list_audit",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    st.require_admin_network(&ctx)?;
    who.require(Scope::AuditRead)?;
    let limit = page_size(q.limit, 100, 1000)?;
    let before_id = q
        .cursor
        .as_deref()
        .map(|c| {
            decode_cursor(c)?
                .parse::<u64>()
                .map_err(|_| ApiError::invalid("`cursor` is not one this API gave"))
        })
        .transpose()?;
    let mut entries = st
        .store()
        .api_audit(&ApiAuditFilter {
            tenant: Some(who.tenant.clone()),
            actor: q.actor,
            action: q.action,
            since_ms: parse_time(q.since.as_deref(), "since")?,
            before_id,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = (entries.len() > limit).then(|| {
        entries.truncate(limit);
        entries
            .last()
            .map(|e| encode_cursor(&e.id.to_string()))
            .unwrap_or_default()
    });
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(AuditView::from).collect(),
        next_cursor,
    }))
}

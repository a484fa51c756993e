//! `GET /v1/me`: who the credential is (tenant, role, scopes), so a client such as the
//! dashboard offers only the actions the credential may take.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiResult, ErrorBody};

/// The caller, as the gateway sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Me {
    pub(crate) tenant: String,
    /// `key:<key_id>` or `jwt:<subject>`.
    pub(crate) actor: String,
    /// `viewer`, `operator` or `admin`.
    pub(crate) role: String,
    /// Every scope it holds (its role's and any extra ones), sorted.
    pub(crate) scopes: Vec<String>,
}

/// Who am I.
///
/// The credential's tenant, actor, role and scopes. Any valid credential may ask.
#[utoipa::path(get, path = "/v1/me", tag = "keys", operation_id = "get_me",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn me(who: Principal) -> ApiResult<Json<Me>> {
    let mut scopes: Vec<String> = who.scopes.iter().map(|s| s.as_str().to_string()).collect();
    scopes.sort();
    Ok(Json(Me {
        tenant: who.tenant,
        actor: who.actor,
        role: who.role,
        scopes,
    }))
}

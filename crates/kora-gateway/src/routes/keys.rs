//! `/v1/keys`: API keys of the caller's tenant. Admin routes: `keys:admin`, and only from the
//! networks in `gateway.admin_allow`. A key never grants more than its creator holds.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kora_store::ApiKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Body;
use crate::extract::Path;
use crate::keys::{CreateKey, new_key};
use crate::scopes::{self, Scope};
use crate::state::{AppState, RequestCtx};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct KeyView {
    pub(crate) key_id: String,
    pub(crate) name: String,
    pub(crate) tenant: String,
    pub(crate) role: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) created_ms: u64,
    pub(crate) created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) revoked_ms: Option<u64>,
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        KeyView {
            key_id: k.key_id.clone(),
            name: k.name.clone(),
            tenant: k.tenant.clone(),
            role: k.role.clone(),
            scopes: k.scopes.clone(),
            created_ms: k.created_ms,
            created_by: k.created_by.clone(),
            expires_ms: k.expires_ms,
            revoked_ms: k.revoked_ms,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CreatedKey {
    #[serde(flatten)]
    pub(crate) view: KeyView,
    /// The credential, shown once: `Authorization: Bearer <key>`.
    pub(crate) key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct KeyList {
    pub(crate) keys: Vec<KeyView>,
}

/// Create an API key in the caller's tenant.
///
/// The key is in the answer once; only a keyed hash of its secret is stored.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", operation_id = "create_key",
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Body(body): Body<CreateKey>,
) -> ApiResult<Response> {
    let mut target = String::new();
    let done = async {
        st.require_admin_network(&ctx)?;
        who.require(Scope::KeysAdmin)?;
        let granted = scopes::grant(&body.role, &body.scopes).map_err(ApiError::unprocessable)?;
        if let Some(extra) = granted.difference(&who.scopes).next() {
            return Err(ApiError::forbidden(format!(
                "a key cannot grant more than its creator holds ({} is not yours)",
                extra.as_str()
            )));
        }
        let (key, credential) = new_key(
            st.cfg.key_pepper.expose(),
            &who.tenant,
            &body,
            &who.actor,
            kora_model::now_ms(),
        )
        .map_err(ApiError::unprocessable)?;
        st.store().create_api_key(&key).await?;
        target.clone_from(&key.key_id);
        Ok((
            StatusCode::CREATED,
            Json(CreatedKey {
                view: KeyView::from(&key),
                key: credential,
            }),
        )
            .into_response())
    }
    .await;
    let detail = serde_json::json!({"role": body.role, "scopes": body.scopes, "name": body.name});
    st.audited(&who, &ctx, "keys.create", &target, Some(detail), done)
        .await
}

/// List the tenant's API keys (never their secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "keys", operation_id = "list_keys",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
) -> ApiResult<Json<KeyList>> {
    st.require_admin_network(&ctx)?;
    who.require(Scope::KeysAdmin)?;
    let keys = st.store().api_keys(Some(&who.tenant)).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revoke an API key: refused by every gateway within `gateway.key_cache_ttl`.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys", operation_id = "revoke_key",
    params(("key_id" = String, Path, description = "the key's id (the part after `kora_`)")),
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "a key cannot revoke itself", body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn revoke(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Path(key_id): Path<String>,
) -> ApiResult<Response> {
    let done = async {
        st.require_admin_network(&ctx)?;
        who.require(Scope::KeysAdmin)?;
        if who.actor == format!("key:{key_id}") {
            return Err(ApiError::conflict(
                "a key cannot revoke itself (that would lock its holder out mid-request); revoke it with another admin key or `kora keys revoke`",
            ));
        }
        if st
            .store()
            .revoke_api_key(&key_id, Some(&who.tenant), kora_model::now_ms())
            .await?
        {
            st.auth.forget(&key_id).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(ApiError::not_found(format!("no key {key_id}")))
        }
    }
    .await;
    st.audited(&who, &ctx, "keys.revoke", &key_id, None, done)
        .await
}

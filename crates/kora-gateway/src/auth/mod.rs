//! Who is calling: `Authorization: Bearer <credential>`, an API key (`kora_<id>_<secret>`) or
//! a JWT, becomes a [`Principal`]: a tenant, an actor name for the audit trail, and scopes.
//! Every failure is the same `401` to the caller (the reason goes to the log and a metric).

pub mod jwt;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use kora_store::{ApiKey, Store};

use crate::config::{GatewayConfig, Secret};
use crate::error::ApiError;
use crate::keys::{self, Rejection};
use crate::scopes::{self, Scope};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    /// `key:<key_id>` or `jwt:<subject>`: who, in the audit trail and the access log.
    pub actor: String,
    pub role: String,
    pub scopes: BTreeSet<Scope>,
}

impl Principal {
    /// `403` unless it holds `scope`.
    pub(crate) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this credential lacks the scope {} (its role is {:?}); ask an admin for a key with it",
                scope.as_str(),
                self.role
            )))
        }
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure(pub &'static str);

impl Failure {
    pub(crate) fn to_api_error(self) -> ApiError {
        if self.0 == "missing" {
            ApiError::unauthenticated(
                "no credential: send `Authorization: Bearer <API key or token>` (`kora keys create` makes a key)",
            )
        } else {
            ApiError::unauthenticated(
                "the credential is not valid (malformed, unknown, expired or revoked)",
            )
        }
    }
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    pepper: Secret,
    /// Key records by id (`None`: no such key), kept `key_cache_ttl`.
    keys: moka::future::Cache<String, Option<Arc<ApiKey>>>,
    jwt: Option<jwt::JwtVerifier>,
}

impl Authenticator {
    pub fn new(cfg: &GatewayConfig, store: Arc<dyn Store>) -> Self {
        Authenticator {
            store,
            pepper: cfg.key_pepper.clone(),
            keys: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.key_cache_ttl.max(Duration::from_millis(1)))
                .build(),
            jwt: cfg.jwt.enabled().then(|| jwt::JwtVerifier::new(&cfg.jwt)),
        }
    }

    /// The credential of a request's `Authorization` header.
    pub fn bearer(headers: &HeaderMap) -> Result<&str, Failure> {
        let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(Failure("missing"));
        };
        let v = v.to_str().map_err(|_| Failure("malformed"))?;
        let (scheme, cred) = v.split_once(' ').ok_or(Failure("malformed"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || cred.trim().is_empty() {
            return Err(Failure("malformed"));
        }
        Ok(cred.trim())
    }

    pub async fn authenticate(&self, credential: &str) -> Result<Principal, Failure> {
        if keys::looks_like_key(credential) {
            return self
                .api_key(credential)
                .await
                .map_err(|r| Failure(r.as_str()));
        }
        if credential.split('.').count() == 3 {
            let Some(v) = &self.jwt else {
                return Err(Failure("jwt_not_accepted"));
            };
            let c = v
                .verify(credential)
                .await
                .map_err(|r| Failure(r.as_str()))?;
            let mut granted = scopes::role_scopes(&c.role).ok_or(Failure("jwt_unknown_role"))?;
            // Identity providers put their own scopes (`openid`, ...) in the same claim.
            granted.extend(c.scopes.iter().filter_map(|s| Scope::parse(s)));
            return Ok(Principal {
                tenant: c.tenant,
                actor: format!("jwt:{}", c.subject),
                role: c.role,
                scopes: granted,
            });
        }
        Err(Failure("malformed"))
    }

    async fn api_key(&self, credential: &str) -> Result<Principal, Rejection> {
        let (id, secret) = keys::split(credential).ok_or(Rejection::Malformed)?;
        let store = Arc::clone(&self.store);
        let key = self
            .keys
            .try_get_with(id.to_string(), async move {
                store.api_key(id).await.map(|k| k.map(Arc::new))
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read API keys from the ledger");
                Rejection::Unknown
            })?
            .ok_or(Rejection::Unknown)?;
        keys::check(self.pepper.expose(), &key, secret, kora_model::now_ms())?;
        let scopes = scopes::grant(&key.role, &key.scopes).map_err(|_| Rejection::Malformed)?;
        Ok(Principal {
            tenant: key.tenant.clone(),
            actor: format!("key:{}", key.key_id),
            role: key.role.clone(),
            scopes,
        })
    }

    /// Forgets a key at once on this gateway (after revoking it here).
    pub async fn forget(&self, key_id: &str) {
        self.keys.invalidate(key_id).await;
    }
}

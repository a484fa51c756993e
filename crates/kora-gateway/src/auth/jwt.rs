//! Bearer JWTs: HS256 with the configured secret, RS256/ES256 with keys from a JWKS URL
//! (cached for `jwks_ttl`, fetched again when a token names a `kid` the cache lacks, at most
//! every `jwks_refetch_interval`). `exp` is required; `nbf`, `iss` and `aud` are checked; the subject, tenant, role
//! and scopes come from the configured claims.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::config::JwtConfig;

/// What a valid token says.
#[derive(Debug, Clone)]
pub struct Claims {
    pub subject: String,
    pub tenant: String,
    pub role: String,
    pub scopes: Vec<String>,
}

/// Why a token is refused (logged; the caller hears only "invalid credential").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRejection {
    Malformed,
    NotConfigured,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    BadClaims,
}

impl JwtRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtRejection::Malformed => "jwt_malformed",
            JwtRejection::NotConfigured => "jwt_not_accepted",
            JwtRejection::UnknownKey => "jwt_unknown_key",
            JwtRejection::BadSignature => "jwt_bad_signature",
            JwtRejection::Expired => "expired",
            JwtRejection::NotYetValid => "jwt_not_yet_valid",
            JwtRejection::WrongIssuer => "jwt_wrong_issuer",
            JwtRejection::WrongAudience => "jwt_wrong_audience",
            JwtRejection::BadClaims => "jwt_bad_claims",
        }
    }
}

struct Jwks {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

pub struct JwtVerifier {
    cfg: JwtConfig,
    hs256: Option<DecodingKey>,
    jwks: RwLock<Jwks>,
    http: reqwest::Client,
}

impl JwtVerifier {
    pub fn new(cfg: &JwtConfig) -> Self {
        JwtVerifier {
            hs256: (!cfg.hs256_secret.is_empty())
                .then(|| DecodingKey::from_secret(cfg.hs256_secret.expose().as_bytes())),
            cfg: cfg.clone(),
            jwks: RwLock::new(Jwks {
                keys: HashMap::new(),
                fetched: None,
            }),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        if self.cfg.issuer.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&[&self.cfg.issuer]);
        }
        if self.cfg.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.cfg.audience);
        }
        v
    }

    /// Fetches the JWKS again (when `force`, or the cache is older than its TTL), unless it was
    /// fetched within `jwks_refetch_interval`.
    async fn refresh(&self, force: bool) {
        if self.cfg.jwks_url.is_empty() {
            return;
        }
        {
            let j = self.jwks.read().await;
            if let Some(at) = j.fetched {
                let age = at.elapsed();
                if age < self.cfg.jwks_refetch_interval || (!force && age < self.cfg.jwks_ttl) {
                    return;
                }
            }
        }
        let mut j = self.jwks.write().await;
        if j.fetched
            .is_some_and(|at| at.elapsed() < self.cfg.jwks_refetch_interval)
        {
            return;
        }
        j.fetched = Some(Instant::now());
        let fetched = async {
            let resp = self.http.get(&self.cfg.jwks_url).send().await?;
            resp.error_for_status()?.json::<JwkSet>().await
        }
        .await;
        match fetched {
            Ok(set) => {
                j.keys = set
                    .keys
                    .iter()
                    .filter_map(|k| {
                        let kid = k.common.key_id.clone()?;
                        let alg = match &k.algorithm {
                            AlgorithmParameters::RSA(_) => Algorithm::RS256,
                            AlgorithmParameters::EllipticCurve(p)
                                if p.curve == EllipticCurve::P256 =>
                            {
                                Algorithm::ES256
                            }
                            _ => return None,
                        };
                        Some((kid, (DecodingKey::from_jwk(k).ok()?, alg)))
                    })
                    .collect();
                tracing::info!(keys = j.keys.len(), url = %self.cfg.jwks_url, "fetched the JWKS");
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %self.cfg.jwks_url, "cannot fetch the JWKS; keeping the keys I had");
            }
        }
    }

    async fn key_for(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.refresh(false).await;
        if let Some(k) = self.jwks.read().await.keys.get(kid) {
            return Some(k.clone());
        }
        self.refresh(true).await;
        self.jwks.read().await.keys.get(kid).cloned()
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, JwtRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 => (
                self.hs256.clone().ok_or(JwtRejection::NotConfigured)?,
                Algorithm::HS256,
            ),
            Algorithm::RS256 | Algorithm::ES256 => {
                if self.cfg.jwks_url.is_empty() {
                    return Err(JwtRejection::NotConfigured);
                }
                let kid = header.kid.as_deref().ok_or(JwtRejection::UnknownKey)?;
                let (key, alg) = self.key_for(kid).await.ok_or(JwtRejection::UnknownKey)?;
                if alg != header.alg {
                    return Err(JwtRejection::BadSignature);
                }
                (key, alg)
            }
            _ => return Err(JwtRejection::NotConfigured),
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token,
            &key,
            &self.validation(alg),
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => JwtRejection::Expired,
                K::ImmatureSignature => JwtRejection::NotYetValid,
                K::InvalidIssuer => JwtRejection::WrongIssuer,
                K::InvalidAudience => JwtRejection::WrongAudience,
                K::InvalidSignature => JwtRejection::BadSignature,
                K::MissingRequiredClaim(_) => JwtRejection::BadClaims,
                _ => JwtRejection::Malformed,
            }
        })?;
        self.claims(&data.claims)
    }

    fn claims(&self, c: &serde_json::Map<String, Value>) -> Result<Claims, JwtRejection> {
        let text = |name: &str| c.get(name).and_then(Value::as_str).map(String::from);
        let subject = text(&self.cfg.subject_claim)
            .filter(|s| !s.is_empty())
            .ok_or(JwtRejection::BadClaims)?;
        let tenant = text(&self.cfg.tenant_claim).ok_or(JwtRejection::BadClaims)?;
        kora_model::tenant::check_name(&tenant).map_err(|_| JwtRejection::BadClaims)?;
        let role = text(&self.cfg.role_claim).unwrap_or_default();
        let scopes = match c.get(&self.cfg.scopes_claim) {
            Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(String::from).ok_or(JwtRejection::BadClaims))
                .collect::<Result<_, _>>()?,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(JwtRejection::BadClaims),
        };
        Ok(Claims {
            subject,
            tenant,
            role,
            scopes,
        })
    }
}

//! API keys: `kora_<key_id>_<secret>`. The id (12 hex digits) is public and names the key's
//! record; the secret (64 hex digits, 256 random bits) is shown once and stored only as
//! HMAC-SHA256 under the installation's key pepper, compared in constant time. `kora keys`
//! and the gateway's `/v1/keys` make them here.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use kora_store::ApiKey;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::Error;

const PREFIX: &str = "kora_";

/// A new key's parts: the id, and the whole credential to hand out once.
pub struct NewKey {
    pub key_id: String,
    pub credential: String,
    pub secret_hash: Vec<u8>,
}

/// `bytes` bytes from the system's random source, hex-encoded (key secrets, `kora dev`'s
/// pepper).
pub fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::Internal("the system's random source failed".into()))?;
    Ok(hex::encode(buf))
}

/// The keyed hash of a secret.
pub fn hash_secret(pepper: &str, secret: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, pepper.as_bytes());
    hmac::sign(&key, secret.as_bytes()).as_ref().to_vec()
}

/// Whether `secret` is the one `hash` was made from (constant time).
pub fn secret_matches(pepper: &str, secret: &str, hash: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, pepper.as_bytes());
    hmac::verify(&key, secret.as_bytes(), hash).is_ok()
}

/// Makes a new key's id, secret and hash.
pub fn generate(pepper: &str) -> Result<NewKey, Error> {
    let key_id = random_hex(6)?;
    let secret = random_hex(32)?;
    Ok(NewKey {
        credential: format!("{PREFIX}{key_id}_{secret}"),
        secret_hash: hash_secret(pepper, &secret),
        key_id,
    })
}

/// `(key_id, secret)` of a credential shaped like a key; `None` for anything else.
pub fn split(credential: &str) -> Option<(&str, &str)> {
    let rest = credential.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 12) && hex(secret, 64)).then_some((id, secret))
}

/// Whether a credential looks like an API key at all (to tell it from a JWT).
pub fn looks_like_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Why a presented key is not accepted (said to the caller only as "invalid credential").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    Unknown,
    WrongSecret,
    Expired,
    Revoked,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Unknown => "unknown_key",
            Rejection::WrongSecret => "wrong_secret",
            Rejection::Expired => "expired",
            Rejection::Revoked => "revoked",
        }
    }
}

/// Checks a presented secret against its key's record at `now_ms`.
pub fn check(pepper: &str, key: &ApiKey, secret: &str, now_ms: u64) -> Result<(), Rejection> {
    if !secret_matches(pepper, secret, &key.secret_hash) {
        return Err(Rejection::WrongSecret);
    }
    if key.revoked_ms.is_some_and(|r| r <= now_ms) {
        return Err(Rejection::Revoked);
    }
    if key.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(Rejection::Expired);
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What it is for.
    #[serde(default)]
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Scopes beyond the role's.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How long it is valid: `30d`, `12h`, ...; forever without it.
    pub expires_in: Option<String>,
}

/// Makes a key record (and its credential) for `tenant`: what `kora keys create` and
/// `POST /v1/keys` both do.
pub fn new_key(
    pepper: &str,
    tenant: &str,
    body: &CreateKey,
    by: &str,
    now_ms: u64,
) -> Result<(ApiKey, String), String> {
    crate::scopes::grant(&body.role, &body.scopes)?;
    let expires_ms = body
        .expires_in
        .as_deref()
        .map(|e| {
            kora_model::duration::parse(e)
                .map(|d| now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
                .map_err(|e| format!("`expires_in`: {e}"))
        })
        .transpose()?;
    let k = generate(pepper).map_err(|e| e.to_string())?;
    Ok((
        ApiKey {
            key_id: k.key_id,
            tenant: tenant.to_string(),
            name: body.name.clone(),
            role: body.role.clone(),
            scopes: body.scopes.clone(),
            secret_hash: k.secret_hash,
            created_ms: now_ms,
            created_by: by.to_string(),
            expires_ms,
            revoked_ms: None,
        },
        k.credential,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEPPER: &str = "0123456789abcdef0123456789abcdef";

    fn record(k: &NewKey) -> ApiKey {
        ApiKey {
            key_id: k.key_id.clone(),
            tenant: "t".into(),
            name: String::new(),
            role: "viewer".into(),
            scopes: vec![],
            secret_hash: k.secret_hash.clone(),
            created_ms: 0,
            created_by: String::new(),
            expires_ms: None,
            revoked_ms: None,
        }
    }

    #[test]
    fn a_key_verifies_and_nothing_else_does() {
        let k = generate(PEPPER).unwrap();
        let (id, secret) = split(&k.credential).unwrap();
        assert_eq!(id, k.key_id);
        let rec = record(&k);
        assert_eq!(check(PEPPER, &rec, secret, 1), Ok(()));
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert_eq!(check(PEPPER, &rec, &wrong, 1), Err(Rejection::WrongSecret));
        assert_eq!(
            check("another pepper, also 32 characters", &rec, secret, 1),
            Err(Rejection::WrongSecret)
        );
        let revoked = ApiKey {
            revoked_ms: Some(5),
            ..rec.clone()
        };
        assert_eq!(check(PEPPER, &revoked, secret, 5), Err(Rejection::Revoked));
        let expiring = ApiKey {
            expires_ms: Some(10),
            ..rec
        };
        assert_eq!(check(PEPPER, &expiring, secret, 9), Ok(()));
        assert_eq!(
            check(PEPPER, &expiring, secret, 10),
            Err(Rejection::Expired)
        );
        assert_ne!(generate(PEPPER).unwrap().key_id, k.key_id);
    }

    #[test]
    fn only_well_formed_keys_split() {
        let ok = format!("kora_{}_{}", "a".repeat(12), "b".repeat(64));
        assert!(split(&ok).is_some());
        for bad in [
            "kora_".to_string(),
            format!("kora_{}_{}", "a".repeat(11), "b".repeat(64)),
            format!("kora_{}_{}", "a".repeat(12), "g".repeat(64)),
            format!("kora_{}{}", "a".repeat(12), "b".repeat(64)),
            format!("kora_{}_{}_", "a".repeat(12), "b".repeat(64)),
        ] {
            assert!(split(&bad).is_none(), "{bad}");
        }
    }
}

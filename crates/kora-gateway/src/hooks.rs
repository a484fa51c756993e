//! Webhook signatures. A webhook trigger's secret is derived, not stored: HMAC-SHA256 of its
//! name and a random salt (kept on the trigger) under the installation's key pepper, so the
//! ledger alone cannot sign. A sender signs `<timestamp>.<body>` with HMAC-SHA256 under the
//! secret and sends `X-Kora-Timestamp: <unix seconds>` and `X-Kora-Signature: v1=<hex>`.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::Error;

pub const TIMESTAMP_HEADER: &str = "x-kora-timestamp";
pub const SIGNATURE_HEADER: &str = "x-kora-signature";

/// A new trigger's salt.
pub fn new_salt() -> Result<String, Error> {
    let mut buf = [0u8; 16];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::Internal("the system's random source failed".into()))?;
    Ok(hex::encode(buf))
}

/// A webhook trigger's signing secret.
pub fn secret(pepper: &str, trigger: &str, salt: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, pepper.as_bytes());
    let tag = hmac::sign(&key, format!("kora-webhook:{trigger}:{salt}").as_bytes());
    format!("whsec_{}", hex::encode(tag.as_ref()))
}

/// The `v1=<hex>` signature of a request (what a sender computes).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Why a delivery is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Stale,
    BadSignature,
}

/// Checks a delivery's timestamp (within `tolerance_secs` of `now_secs`) and signature
/// (constant time).
pub fn verify(
    secret: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), Refused> {
    let ts: u64 = timestamp.trim().parse().map_err(|_| Refused::Missing)?;
    if ts.abs_diff(now_secs) > tolerance_secs {
        return Err(Refused::Stale);
    }
    let given = signature
        .trim()
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(Refused::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &given).map_err(|_| Refused::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_body_and_a_fresh_time() {
        let pepper = "p".repeat(32);
        let s = secret(&pepper, "orders", "salt1");
        assert_ne!(
            s,
            secret(&pepper, "orders", "salt2"),
            "a new salt, a new secret"
        );
        assert_ne!(
            s,
            secret(&"q".repeat(32), "orders", "salt1"),
            "the pepper is in it"
        );
        let body = br#"{"order": 1}"#;
        let sig = sign(&s, "1000", body);
        assert_eq!(verify(&s, "1000", &sig, body, 1100, 300), Ok(()));
        assert_eq!(
            verify(&s, "1000", &sig, b"{}", 1100, 300),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(&s, "1001", &sig, body, 1100, 300),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(&s, "1000", &sig, body, 1400, 300),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(&s, "soon", &sig, body, 1100, 300),
            Err(Refused::Missing)
        );
        assert_eq!(
            verify(&s, "1000", "v1=zz", body, 1100, 300),
            Err(Refused::BadSignature)
        );
    }
}

//! JWT bearer tokens: HS256 with the configured secret and RS256 from a JWKS the test serves;
//! `exp`, `aud`, `iss` and the tenant claim are checked; a rotated key is fetched when a token
//! names it, and the retired one stops working.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::api::*;

/// Serves `jwks` at `http://127.0.0.1:<port>/jwks.json`; counts the fetches.
fn jwks_server(jwks: Arc<Mutex<String>>, fetches: Arc<Mutex<u32>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            *fetches.lock().unwrap() += 1;
            let body = jwks.lock().unwrap().clone();
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// An RSA key: its PEM, and its JWK under `kid`.
fn rsa_key(dir: &Path, kid: &str) -> (Vec<u8>, Value) {
    let pem = dir.join(format!("{kid}.pem"));
    let o = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&pem)
        .arg("2048")
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    let modulus = String::from_utf8(o.stdout).unwrap();
    let n = hex::decode(modulus.trim().trim_start_matches("Modulus=")).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64.encode(n), "e": "AQAB"});
    (std::fs::read(&pem).unwrap(), jwk)
}

fn now() -> u64 {
    kora_model::now_ms() / 1000
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "tenant": "acme", "role": "operator", "aud": "kora-api",
        "iss": "https://idp.example", "exp": now() + 300});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn hs(secret: &str, c: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn rs(pem: &[u8], kid: &str, c: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, c, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

#[tokio::test]
async fn tokens_are_verified_and_a_rotated_key_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let (pem1, jwk1) = rsa_key(dir.path(), "k1");
    let (pem2, jwk2) = rsa_key(dir.path(), "k2");
    let jwks = Arc::new(Mutex::new(json!({"keys": [jwk1]}).to_string()));
    let fetches = Arc::new(Mutex::new(0));
    let port = jwks_server(Arc::clone(&jwks), Arc::clone(&fetches));
    let secret = "an HS256 secret of the test, long enough";
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let Some((d, api)) = start(&[
        ("KORA_GATEWAY__JWT__HS256_SECRET", secret),
        ("KORA_GATEWAY__JWT__JWKS_URL", &url),
        ("KORA_GATEWAY__JWT__AUDIENCE", "[\"kora-api\"]"),
        ("KORA_GATEWAY__JWT__ISSUER", "https://idp.example"),
        ("KORA_GATEWAY__JWT__JWKS_REFETCH_INTERVAL", "1s"),
    ])
    .await
    else {
        return;
    };
    let ok = hs(secret, &claims(json!({})));
    let a = api.get("/v1/runs", &ok).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sub = api
        .post("/v1/runs?wait=30", &ok, &json!({"workflow": doubling()}))
        .await;
    assert_eq!(sub.status, 200, "{}", sub.body);
    let run = sub.body["run_id"].as_str().unwrap().to_string();
    // The token's tenant is the run's, and its role limits it (an operator reads no audit).
    let admin = key(&d, "acme", "admin", &[]);
    assert_eq!(
        api.get(&format!("/v1/runs/{run}"), &admin).await.status,
        200
    );
    assert_eq!(api.get("/v1/audit", &ok).await.status, 403);
    let audit = api.get("/v1/audit?action=runs.submit", &admin).await;
    assert_eq!(
        audit.body["entries"][0]["actor"], "jwt:alice",
        "{}",
        audit.body
    );
    // A waited submission is audited as accepted, written while the run ran.
    assert_eq!(audit.body["entries"][0]["target"], run.as_str());
    assert_eq!(audit.body["entries"][0]["status"], 202, "{}", audit.body);
    // Scopes add to the role; a provider's own scopes are ignored.
    let scoped = hs(
        secret,
        &claims(json!({"role": "viewer", "scope": "openid audit:read"})),
    );
    assert_eq!(api.get("/v1/audit", &scoped).await.status, 200);

    for (what, token) in [
        ("expired", hs(secret, &claims(json!({"exp": now() - 120})))),
        (
            "not yet valid",
            hs(secret, &claims(json!({"nbf": now() + 600}))),
        ),
        (
            "wrong audience",
            hs(secret, &claims(json!({"aud": "another-api"}))),
        ),
        (
            "wrong issuer",
            hs(secret, &claims(json!({"iss": "https://evil.example"}))),
        ),
        ("no exp", hs(secret, &claims(json!({"exp": null})))),
        ("no tenant", hs(secret, &claims(json!({"tenant": null})))),
        (
            "bad tenant",
            hs(secret, &claims(json!({"tenant": "Not A Tenant"}))),
        ),
        ("unknown role", hs(secret, &claims(json!({"role": "root"})))),
        (
            "wrong secret",
            hs("another secret altogether!!", &claims(json!({}))),
        ),
        ("unsigned", {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.",
                b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                b64.encode(claims(json!({})).to_string())
            )
        }),
        ("unknown kid", rs(&pem2, "k2", &claims(json!({})))),
    ] {
        let a = api.get("/v1/runs", &token).await;
        assert_eq!(a.status, 401, "{what}: {}", a.body);
    }
    // RS256 from the JWKS.
    let rs1 = rs(&pem1, "k1", &claims(json!({"sub": "svc"})));
    assert_eq!(api.get("/v1/runs", &rs1).await.status, 200);
    // Rotation: the provider now publishes k2 only. A token naming k2 makes the gateway fetch
    // the set again (at most every refetch interval); k1 is then gone.
    *jwks.lock().unwrap() = json!({"keys": [jwk2]}).to_string();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rs2 = rs(&pem2, "k2", &claims(json!({"sub": "svc"})));
    let a = api.get("/v1/runs", &rs2).await;
    assert_eq!(a.status, 200, "{}", a.body);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        api.get("/v1/runs", &rs1).await.status,
        401,
        "the retired key"
    );
    // Forged kids do not hammer the provider: a burst of them costs at most one fetch.
    let before = *fetches.lock().unwrap();
    for i in 0..20 {
        let forged = rs(&pem2, &format!("forged-{i}"), &claims(json!({})));
        assert_eq!(api.get("/v1/runs", &forged).await.status, 401);
    }
    assert!(
        *fetches.lock().unwrap() - before <= 1,
        "{} fetches",
        *fetches.lock().unwrap() - before
    );
    d.finish().await;
}

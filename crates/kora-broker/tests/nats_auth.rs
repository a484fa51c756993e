//! Connecting to a NATS server that wants credentials or TLS: private servers this test starts
//! (the current release, as `.ci/services-up` installs it), each with one way to authenticate.
//! Right credentials work (a message goes through a stream); missing or wrong ones are refused
//! at once with an error that says what to check and never holds the secret.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use kora_broker::nats::{JetStreamBroker, NatsConfig};
use kora_broker::nats_auth::Secret;
use kora_broker::testing::{self, TestServer};

fn server_bin() -> Option<PathBuf> {
    TestServer::current_bin_or_skip()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Connects with `cfg` and sends a message through a stream; the error text otherwise.
async fn works(cfg: NatsConfig) -> Result<(), String> {
    let b = JetStreamBroker::connect(&cfg)
        .await
        .map_err(|e| e.to_string())?;
    testing::publish_fetch_ack(&b, "authck").await;
    b.delete_streams_with_prefix("authck").await.unwrap();
    Ok(())
}

fn refused(r: Result<(), String>, secret: &str, says: &str) {
    let e = r.expect_err("connecting should have failed");
    assert!(e.contains(says), "{e}");
    assert!(!e.contains(secret), "the error holds the secret: {e}");
}

#[tokio::test]
async fn user_password_token_and_nkey_are_checked() {
    let Some(bin) = server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let password = "pw-7c1e-correct-horse";

    // A user and password, the password from a file.
    let server = TestServer::start_with(
        &bin,
        &[
            "--user".into(),
            "kora".into(),
            "--pass".into(),
            password.into(),
        ],
    );
    let base = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    let pw_file = write(dir.path(), "pw", &format!("{password}\n"));
    works(NatsConfig {
        user: "kora".into(),
        password_file: Some(pw_file.clone()),
        ..base.clone()
    })
    .await
    .unwrap();
    works(NatsConfig {
        user: "kora".into(),
        password: Secret(password.into()),
        ..base.clone()
    })
    .await
    .unwrap();
    refused(
        works(base.clone()).await,
        password,
        "refused the credentials",
    );
    refused(
        works(NatsConfig {
            user: "kora".into(),
            password: Secret("wrong".into()),
            ..base.clone()
        })
        .await,
        password,
        "refused the credentials",
    );
    // Credentials in the URL are refused by validation (they would reach logs and errors).
    let e = NatsConfig {
        url: format!(
            "nats://kora:{password}@{}",
            &server.url()["nats://".len()..]
        ),
        ..NatsConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        e.contains("nats.url holds credentials") && !e.contains(password),
        "{e}"
    );
    drop(server);

    // A token.
    let token = "tok-5d0b-battery-staple";
    let server = TestServer::start_with(&bin, &["--auth".into(), token.into()]);
    let base = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    works(NatsConfig {
        token_file: Some(write(dir.path(), "tok", token)),
        ..base.clone()
    })
    .await
    .unwrap();
    refused(works(base.clone()).await, token, "refused the credentials");
    drop(server);

    // An NKey: the server knows the public key, the process holds the seed.
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let conf = write(
        dir.path(),
        "nkey.conf",
        &format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    );
    let server = TestServer::start_with(&bin, &["-c".into(), conf.display().to_string()]);
    let base = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    let seed = user.seed().unwrap();
    works(NatsConfig {
        nkey_seed_file: Some(write(dir.path(), "user.nk", &seed)),
        ..base.clone()
    })
    .await
    .unwrap();
    let other = stranger.seed().unwrap();
    refused(
        works(NatsConfig {
            nkey_seed_file: Some(write(dir.path(), "stranger.nk", &other)),
            ..base.clone()
        })
        .await,
        &other,
        "refused the credentials",
    );
    refused(
        works(NatsConfig {
            nkey_seed_file: Some(pw_file),
            ..base.clone()
        })
        .await,
        password,
        "not an NKey seed",
    );
    // A file that is not a .creds file is named before any connection.
    refused(
        works(NatsConfig {
            creds_file: Some(dir.path().join("pw")),
            ..base.clone()
        })
        .await,
        password,
        "nats.creds_file",
    );
    // Two ways at once is a configuration error, named.
    let e = NatsConfig {
        nkey_seed_file: Some("x".into()),
        token: Secret(token.into()),
        ..base
    }
    .validate()
    .unwrap_err();
    assert!(e.contains("nats.token and nats.nkey_seed_file"), "{e}");
}

#[tokio::test]
async fn tls_with_a_ca_and_a_client_certificate() {
    let Some(bin) = server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kora_broker::test_ca::TestCerts {
        ca,
        server: cert,
        server_key: key,
        client,
        client_key,
        ..
    } = kora_broker::test_ca::certificates(dir.path());
    let arg = |p: &PathBuf| p.display().to_string();
    // The server verifies clients' certificates too.
    let server = TestServer::start_with(
        &bin,
        &[
            "--tls".into(),
            "--tlscert".into(),
            arg(&cert),
            "--tlskey".into(),
            arg(&key),
            "--tlsverify".into(),
            "--tlscacert".into(),
            arg(&ca),
        ],
    );
    let base = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    works(NatsConfig {
        tls_ca_file: Some(ca.clone()),
        tls_cert_file: Some(client.clone()),
        tls_key_file: Some(client_key.clone()),
        ..base.clone()
    })
    .await
    .unwrap();
    // No client certificate: the server refuses the handshake.
    assert!(
        works(NatsConfig {
            tls_ca_file: Some(ca.clone()),
            ..base.clone()
        })
        .await
        .is_err()
    );
    // The system's roots do not know the test's CA.
    refused(
        works(NatsConfig {
            tls_required: true,
            tls_cert_file: Some(client),
            tls_key_file: Some(client_key),
            ..base.clone()
        })
        .await,
        "-----BEGIN",
        "TLS failed",
    );
    // A certificate without its key is a configuration error, named.
    let e = NatsConfig {
        tls_cert_file: Some(cert),
        ..base
    }
    .validate()
    .unwrap_err();
    assert!(
        e.contains("nats.tls_cert_file and nats.tls_key_file"),
        "{e}"
    );
}

/// A server whose certificate names only `nats.internal`, reached at 127.0.0.1: refused by
/// the URL's host, accepted with `tls_server_name = "nats.internal"`; another name is refused.
#[tokio::test]
async fn tls_with_a_server_name_other_than_the_urls_host() {
    let Some(bin) = server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = kora_broker::test_ca::certificates(dir.path());
    let arg = |p: &PathBuf| p.display().to_string();
    let server = TestServer::start_with(
        &bin,
        &[
            "--tls".into(),
            "--tlscert".into(),
            arg(&certs.internal),
            "--tlskey".into(),
            arg(&certs.internal_key),
        ],
    );
    let base = NatsConfig {
        url: server.url(),
        tls_ca_file: Some(certs.ca.clone()),
        request_timeout: std::time::Duration::from_secs(3),
        ..NatsConfig::default()
    };
    let e = works(base.clone()).await.unwrap_err();
    assert!(e.contains("TLS failed"), "{e}");
    works(NatsConfig {
        tls_server_name: "nats.internal".into(),
        ..base.clone()
    })
    .await
    .unwrap();
    let e = works(NatsConfig {
        tls_server_name: "other.internal".into(),
        ..base.clone()
    })
    .await
    .unwrap_err();
    assert!(e.contains("TLS failed"), "{e}");
    // Without a CA the name has nothing to be checked against: a configuration error.
    let e = NatsConfig {
        tls_ca_file: None,
        tls_server_name: "nats.internal".into(),
        ..base
    }
    .validate()
    .unwrap_err();
    assert!(
        e.contains("nats.tls_server_name needs nats.tls_ca_file"),
        "{e}"
    );
}

/// A JWT as NATS signs them: `ed25519-nkey`, base64url without padding, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("kora-test-{name}"),
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let body = b64(claims.to_string().as_bytes());
    let signing = format!("{header}.{body}");
    let sig = issuer.sign(signing.as_bytes()).unwrap();
    format!("{signing}.{}", b64(&sig))
}

/// Decentralised JWT auth: an operator, an account with JetStream, a user whose `.creds` file
/// the process is given.
#[tokio::test]
async fn a_creds_file_under_decentralised_auth() {
    let Some(bin) = server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let op_jwt = jwt(
        &operator,
        &operator.public_key(),
        "op",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
    });
    let acc_jwt = jwt(
        &operator,
        &account.public_key(),
        "acc",
        serde_json::json!({"limits": unlimited, "default_permissions": {"pub": {}, "sub": {}},
                           "type": "account", "version": 2}),
    );
    // JetStream needs a system account.
    let system = nkeys::KeyPair::new_account();
    let sys_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "kora",
        serde_json::json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                           "type": "user", "version": 2}),
    );
    let conf = write(
        dir.path(),
        "op.conf",
        &format!(
            "operator: \"{op_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{ {acc}: \"{acc_jwt}\", {sys}: \"{sys_jwt}\" }}\n",
            acc = account.public_key(),
            sys = system.public_key(),
        ),
    );
    let server = TestServer::start_with(&bin, &["-c".into(), conf.display().to_string()]);
    let seed = user.seed().unwrap();
    let creds = write(
        dir.path(),
        "kora.creds",
        &format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    );
    let base = NatsConfig {
        url: server.url(),
        ..NatsConfig::default()
    };
    works(NatsConfig {
        creds_file: Some(creds),
        ..base.clone()
    })
    .await
    .unwrap();
    // A user the account never signed.
    let stranger = nkeys::KeyPair::new_account();
    let forged = jwt(
        &stranger,
        &user.public_key(),
        "kora",
        serde_json::json!({"pub": {}, "sub": {}, "type": "user", "version": 2}),
    );
    let bad = write(
        dir.path(),
        "forged.creds",
        &format!(
            "-----BEGIN NATS USER JWT-----\n{forged}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    );
    refused(
        works(NatsConfig {
            creds_file: Some(bad),
            ..base
        })
        .await,
        &seed,
        "refused the credentials",
    );
}

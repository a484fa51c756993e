//! An installation on a NATS server that wants credentials: every role and client command takes
//! them from the environment and files, and none of them reaches a log or an error.

use super::support::*;

#[tokio::test]
async fn every_role_works_on_a_nats_server_with_a_password() {
    let Some(bin) = kora_broker::testing::TestServer::current_bin() else {
        assert!(
            std::env::var("CI").is_err(),
            "no current nats-server: run .ci/services-up (CI must not skip)"
        );
        eprintln!("skipping: no current nats-server; run .ci/services-up");
        return;
    };
    let password = "pw-31f4-serve-secret";
    let server = kora_broker::testing::TestServer::start_with(
        &bin,
        &[
            "--user".into(),
            "kora".into(),
            "--pass".into(),
            password.into(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("nats-password");
    std::fs::write(&pw_file, password).unwrap();
    let url = server.url();
    let Some(mut d) = Deployment::new(&[
        ("KORA_NATS_URL", &url),
        ("KORA_NATS__USER", "kora"),
        ("KORA_NATS__PASSWORD_FILE", pw_file.to_str().unwrap()),
        ("KORA_LOG", "debug"),
    ])
    .await
    else {
        return;
    };
    let log = dir.path().join("serve.log");
    d.serve_logged("scheduler,coordinator,worker", &log);
    let wf = dir.path().join("wf.json");
    std::fs::write(
        &wf,
        r#"{"kora": 1, "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 41 + 1"}}]}"#,
    )
    .unwrap();
    let out = d.submit_wait(&wf, None);
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["results"]["a"]["result"], 42);

    // Without the password file the same command is refused at once, saying what to check.
    let o = d
        .command()
        .env_remove("KORA_NATS__PASSWORD_FILE")
        .env_remove("KORA_NATS__USER")
        .args(["submit", wf.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("refused the credentials"), "{err}");
    // A wrong password the same way, and neither password is repeated.
    let o = d
        .command()
        .env_remove("KORA_NATS__PASSWORD_FILE")
        .env("KORA_NATS__PASSWORD", "pw-wrong-0000")
        .args(["submit", wf.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(
        !err.contains("pw-wrong-0000") && !err.contains(password),
        "{err}"
    );
    d.finish().await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("nats connection event"), "{log}");
    assert!(!log.contains(password), "the password reached the log");
}

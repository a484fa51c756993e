//! Secrets hygiene (#15): an installation holding every kind of secret at once runs workflows
//! that use, print, return and fail with a secret, through the API and the CLI, with right and
//! wrong credentials; then every role's debug log, every answer and error the clients saw, and
//! a dump of every ledger table are searched for each secret, and none is found.

use serde_json::json;

use crate::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_an_error_or_the_ledger() {
    let Some(nats_bin) = kora_broker::testing::TestServer::current_bin_or_skip() else {
        return;
    };
    let Some(pg_bin) = PrivatePg::bin_or_skip() else {
        return;
    };
    // Every kind of secret an installation holds, each one distinctive.
    let nats_pw = "nats-pw-5e1d-hygiene";
    let pg_pw = "pg-pw-93b2-hygiene";
    let node_secret = "node-secret-c4f7-hygiene";
    let jwt_secret = "jwt-hs256-secret-8a0e-hygiene-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let server = kora_broker::testing::TestServer::start_with(
        &nats_bin,
        &[
            "--user".into(),
            "kora".into(),
            "--pass".into(),
            nats_pw.into(),
        ],
    );
    let certs = kora_broker::test_ca::certificates(dir.path());
    let pg = PrivatePg::start_new_tls(pg_bin, &certs);
    let (nats_file, pg_file) = (dir.path().join("nats-pw"), dir.path().join("pg-pw"));
    std::fs::write(&nats_file, nats_pw).unwrap();
    std::fs::write(&pg_file, format!("{pg_pw}\n")).unwrap();
    let url = server.url();
    let Some(mut d) = Deployment::on(
        &pg.admin_url(),
        &[
            ("KORA_NATS_URL", &url),
            ("KORA_NATS__USER", "kora"),
            ("KORA_NATS__PASSWORD_FILE", nats_file.to_str().unwrap()),
            ("KORA_GATEWAY__JWT__HS256_SECRET", jwt_secret),
            ("KORA_SECRET_API_TOKEN", node_secret),
            ("KORA_LOG", "debug"),
        ],
    )
    .await
    else {
        return;
    };
    pg.own_database("kora_app", pg_pw, &d.db).await;
    let db_url = format!(
        "postgres://kora_app@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
        pg.port,
        d.db,
        certs.ca.display()
    );
    d.env.push(("KORA_DATABASE_URL".into(), db_url));
    d.env.push((
        "KORA_DATABASE__PASSWORD_FILE".into(),
        pg_file.to_str().unwrap().into(),
    ));
    let pepper = d.var("KORA_GATEWAY__KEY_PEPPER");
    let log = dir.path().join("serve.log");
    d.serve_logged("all", &log);
    let api = Api {
        base: d.gateway.clone(),
        http: reqwest::Client::new(),
    };
    ready(&api).await;
    let key = key(&d, "default", "admin", &[]);
    let mut seen: Vec<String> = Vec::new();

    // A run that prints the secret, returns it, and fails with it in its error.
    let wf = json!({"kora": 1, "name": "uses-a-secret", "nodes": [
        {"id": "show", "type": "PythonCodeNode", "config": {"token": {"$secret": "api_token"},
            "code": "print('the token is', token)\nresult = {'echo': token, 'url': 'https://x/?k=' + token}"}},
        {"id": "leak", "type": "PythonCodeNode", "config": {"token": {"$secret": "api_token"},
            "code": "raise ValueError('bad token ' + token)"}}]});
    let answer = run_wait(&api, &key, &wf, json!({})).await;
    assert_eq!(
        answer["results"]["show"]["result"]["echo"], "***",
        "{answer}"
    );
    assert_eq!(answer["results"]["leak"]["failed"], true, "{answer}");
    seen.push(answer.to_string());
    let run_id = answer["run_id"].as_str().unwrap().to_string();
    for path in [
        format!("/v1/runs/{run_id}"),
        format!("/v1/runs/{run_id}/events"),
        "/v1/dead-letters".to_string(),
    ] {
        let a = api.get(&path, &key).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        seen.push(a.body.to_string());
    }
    // Wrong credentials: a made-up key, a JWT signed with another secret.
    for bad in [
        format!("{}x", &key[..key.len() - 1]),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmVkLXdpdGgtYW5vdGhlcg".to_string(),
    ] {
        let a = api.get("/v1/runs", &bad).await;
        assert_eq!(a.status, 401, "{}", a.body);
        seen.push(a.body.to_string());
    }
    // The CLI: the same run, its dead letters, and refusals for wrong passwords.
    for args in [
        vec!["runs", "show", &run_id, "--format", "json"],
        vec!["dlq", "list", "--format", "json"],
    ] {
        let o = d.kora(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        seen.push(String::from_utf8_lossy(&o.stdout).into_owned());
        seen.push(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let wf_file = dir.path().join("wf.json");
    std::fs::write(&wf_file, wf.to_string()).unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    for (var, file) in [
        ("KORA_NATS__PASSWORD_FILE", &wrong),
        ("KORA_DATABASE__PASSWORD_FILE", &wrong),
    ] {
        let o = d
            .command()
            .env(var, file)
            .args(["submit", wf_file.to_str().unwrap(), "--wait"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{var}");
        seen.push(String::from_utf8_lossy(&o.stdout).into_owned());
        seen.push(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    // Every ledger table, as pg_dump writes it (data and schema).
    let dump = std::process::Command::new(pg.bin.join("pg_dump"))
        .arg(format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            pg.port, d.db
        ))
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    d.finish().await;
    let log = std::fs::read_to_string(&log).unwrap();

    // The checks can fail: the print reached the log and the failure the ledger, masked.
    let print = log
        .lines()
        .find(|l| l.contains("the token is ***"))
        .expect("the print is not in the log");
    assert!(
        print.contains(&run_id) && print.contains("show"),
        "the print is logged without its run and node: {print}"
    );
    assert!(
        dump.contains("bad token ***"),
        "the failure is not in the ledger"
    );
    assert!(dump.contains("uses-a-secret"), "the dump holds the run");
    let api_key_secret = key.rsplit('_').next().unwrap();
    for (name, secret) in [
        ("the NATS password", nats_pw),
        ("the PostgreSQL password", pg_pw),
        ("the node's secret", node_secret),
        ("the JWT secret", jwt_secret),
        ("the API key's secret", api_key_secret),
        ("the key pepper", pepper.as_str()),
    ] {
        assert!(!log.contains(secret), "{name} is in the roles' log");
        assert!(!dump.contains(secret), "{name} is in the ledger");
        for text in &seen {
            assert!(
                !text.contains(secret),
                "{name} is in what a client saw: {text}"
            );
        }
    }
    drop(pg);
}

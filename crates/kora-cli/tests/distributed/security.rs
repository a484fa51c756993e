//! An installation on a NATS server that wants credentials: every role and client command takes
//! them from the environment and files, and none of them reaches a log or an error.

use super::support::*;

#[tokio::test]
async fn every_role_works_on_a_nats_server_with_a_password() {
    let Some(bin) = kora_broker::testing::TestServer::current_bin_or_skip() else {
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

/// The ledger on a PostgreSQL (one the test owns) that accepts only TLS and a password, used by
/// a role that is no superuser, may create neither databases nor roles, and owns just its own
/// database: every role works with `sslmode=verify-full`, the password from a file; a client
/// that trusts another CA, or asks for no TLS, is refused with a message that names the
/// cause; the password reaches neither the log nor an error.
#[tokio::test]
async fn the_ledger_over_verified_tls_with_a_password_file_as_a_least_privilege_role() {
    use sqlx::Connection;
    let Some(bin) = PrivatePg::bin_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = kora_broker::test_ca::certificates(dir.path());
    let pg = PrivatePg::start_new_tls(bin, &certs);
    let Some(mut d) = Deployment::on(&pg.admin_url(), &[("KORA_LOG", "debug")]).await else {
        return;
    };
    let password = "pg-7a1c-ledger-secret";
    pg.own_database("kora_app", password, &d.db).await;
    let mut admin = sqlx::PgConnection::connect(&pg.admin_url()).await.unwrap();
    let pw_file = dir.path().join("pg-password");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    let (port, db) = (pg.port, d.db.clone());
    let url = |mode: &str, ca: &std::path::Path| {
        format!(
            "postgres://kora_app@127.0.0.1:{port}/{db}?sslmode={mode}&sslrootcert={}",
            ca.display()
        )
    };
    let good = url("verify-full", &certs.ca);
    d.env.push(("KORA_DATABASE_URL".into(), good.clone()));
    d.env.push((
        "KORA_DATABASE__PASSWORD_FILE".into(),
        pw_file.to_str().unwrap().into(),
    ));
    let log = dir.path().join("serve.log");
    d.serve_logged("all", &log);
    let wf = dir.path().join("wf.json");
    std::fs::write(
        &wf,
        r#"{"kora": 1, "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 6 * 7"}}]}"#,
    )
    .unwrap();
    let out = d.submit_wait(&wf, None);
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["results"]["a"]["result"], 42);

    // Every connection of the role is encrypted (the server would refuse any other).
    let (conns, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'kora_app'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(conns > 0 && conns == encrypted, "{encrypted} of {conns}");

    // A client that trusts another CA refuses the server; one that asks for no TLS is refused
    // by it. Both say why, and neither repeats the password.
    let other = tempfile::tempdir().unwrap();
    let other_ca = kora_broker::test_ca::certificates(other.path()).ca;
    for (bad, why) in [
        (
            url("verify-full", &other_ca),
            "signed by the ca in sslrootcert",
        ),
        (url("disable", &certs.ca), "only over tls"),
    ] {
        let o = d
            .command()
            .env("KORA_DATABASE_URL", &bad)
            .args(["runs", "list"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad}: {err}");
        assert!(err.to_lowercase().contains(why), "{bad}: {err}");
        assert!(!err.contains(password), "{err}");
    }
    // A password in the URL as well as the file is a configuration error, not a guess.
    let o = d
        .command()
        .env(
            "KORA_DATABASE_URL",
            good.replace("kora_app@", "kora_app:pw-in-url@"),
        )
        .args(["runs", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("keep only the file"), "{err}");
    assert!(!err.contains("pw-in-url"), "{err}");

    d.finish().await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.is_empty());
    assert!(!log.contains(password), "the password reached the log");
    drop(admin);
    drop(pg);
}

/// The status of one check in `kora check --format json`'s answer.
fn status<'a>(findings: &'a serde_json::Value, check: &str) -> &'a str {
    findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no check {check}: {findings}"))["status"]
        .as_str()
        .unwrap()
}

/// `kora check` (#15 item 5) on an installation set up the way a first try would be: every
/// weakness is reported with its fix and the command exits 1; a secret in the configuration
/// file is named by its key, never shown. In production `kora serve` refuses to start, naming
/// the failures, and starts (logging each) once they are named in `checks.allow`. A worker
/// on a NATS server with TLS, a password and a current version passes with only the replica
/// check allowed.
#[tokio::test]
async fn the_deployment_checklist_fails_closed_and_names_each_fix() {
    let Some(mut d) = Deployment::new(&[("KORA_LOG", "info")]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = "jwt-short-5f0c";
    let weak = format!(
        "[gateway]\ndocs = true\n[gateway.jwt]\nhs256_secret = \"{secret}\"\n\
         [nodes]\ndata_root = \"/\"\n[nodes.sandbox]\nenabled = false\n[metrics]\naddr = \"0.0.0.0:0\"\n"
    );
    let file = dir.path().join("weak.toml");
    std::fs::write(&file, &weak).unwrap();
    // The deployment's own data root would win over the file's.
    let o = d
        .command()
        .env_remove("KORA_NODES__DATA_ROOT")
        .args([
            "check",
            "--config",
            file.to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!text.contains(secret), "the secret was shown: {text}");
    let findings: serde_json::Value = serde_json::from_str(&text).unwrap();
    for failed in [
        "nats-auth",
        "nats-tls",
        "stream-replicas",
        "ledger-role",
        "gateway-jwt-secret",
        "gateway-docs",
        "gateway-tls",
        "sandbox",
        "data-root",
        "metrics-address",
        "config-secrets",
    ] {
        assert_eq!(status(&findings, failed), "failed", "{failed}: {findings}");
    }
    // A wildcard CORS origin never gets this far: validation refuses it.
    for ok in ["nats-reachable", "ledger-reachable", "gateway-cors"] {
        assert_eq!(status(&findings, ok), "ok", "{ok}: {findings}");
    }
    let every: Vec<&serde_json::Value> = findings.as_array().unwrap().iter().collect();
    assert!(
        every
            .iter()
            .filter(|f| f["status"] == "failed")
            .all(|f| !f["fix"].as_str().unwrap_or_default().is_empty()),
        "each failure says how to fix it: {findings}"
    );
    let secrets = every
        .iter()
        .find(|f| f["check"] == "config-secrets")
        .unwrap();
    assert!(
        secrets["detail"]
            .as_str()
            .unwrap()
            .contains("gateway.jwt.hs256_secret")
    );
    // The machine's NATS is 2.9.10, older than recommended.
    let version = every.iter().find(|f| f["check"] == "nats-version").unwrap();
    if version["detail"].as_str().unwrap().contains("2.9.") {
        assert_eq!(version["status"], "failed", "{version}");
    }

    // In production, serve refuses to start and names what failed.
    let o = d
        .command()
        .env("KORA_ENVIRONMENT", "production")
        .env_remove("KORA_NODES__DATA_ROOT")
        .args([
            "serve",
            "--role",
            "worker",
            "--config",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("refusing to start in production"), "{err}");
    assert!(
        err.contains("sandbox") && err.contains("data-root"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
    // Every failure named in checks.allow: it starts, and logs each one it starts despite.
    let allowed = dir.path().join("allowed.toml");
    std::fs::write(
        &allowed,
        format!(
            "{weak}[checks]\nallow = [\"nats-auth\", \"nats-tls\", \"nats-version\", \"stream-replicas\", \"sandbox\", \"data-root\", \"metrics-address\", \"config-secrets\"]\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let child = d
        .command()
        .env("KORA_ENVIRONMENT", "production")
        .env_remove("KORA_NODES__DATA_ROOT")
        .args([
            "serve",
            "--role",
            "worker",
            "--config",
            allowed.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    d.procs.push(child);
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("kora serving") {
            let despite: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("starting despite a failed deployment check"))
                .collect();
            for check in [
                "nats-auth",
                "stream-replicas",
                "sandbox",
                "data-root",
                "config-secrets",
            ] {
                assert!(
                    despite.iter().any(|l| l.contains(check)),
                    "{check} not logged: {text}"
                );
            }
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "never started: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A worker done right: NATS with TLS and a password, a current server.
    let Some(bin) = kora_broker::testing::TestServer::current_bin_or_skip() else {
        return;
    };
    let certs = kora_broker::test_ca::certificates(dir.path());
    let arg = |p: &std::path::Path| p.display().to_string();
    let server = kora_broker::testing::TestServer::start_with(
        &bin,
        &[
            "--user".into(),
            "kora".into(),
            "--pass".into(),
            "pw-check-77aa".into(),
            "--tls".into(),
            "--tlscert".into(),
            arg(&certs.server),
            "--tlskey".into(),
            arg(&certs.server_key),
        ],
    );
    let pw = dir.path().join("nats-pw");
    std::fs::write(&pw, "pw-check-77aa").unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[nats]\nurl = \"{}\"\nuser = \"kora\"\npassword_file = {:?}\ntls_ca_file = {:?}\n[checks]\nallow = [\"stream-replicas\"]\n",
            server.url(),
            arg(&pw),
            arg(&certs.ca)
        ),
    )
    .unwrap();
    let o = d
        .command()
        .env_remove("KORA_NATS_URL")
        .args([
            "check",
            "--role",
            "worker",
            "--config",
            good.to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert!(o.status.success(), "{findings}");
    assert_eq!(status(&findings, "stream-replicas"), "allowed");
    for ok in [
        "nats-auth",
        "nats-tls",
        "nats-version",
        "nats-reachable",
        "sandbox",
        "data-root",
    ] {
        assert_eq!(status(&findings, ok), "ok", "{ok}: {findings}");
    }
    assert_eq!(status(&findings, "ledger-role"), "skipped");
    d.finish().await;
}

/// Drops a PostgreSQL role when the test ends (after the deployment dropped its database,
/// which holds the role's grants), even when the test failed.
struct RoleGuard(Option<String>);

impl Drop for RoleGuard {
    fn drop(&mut self) {
        let Some(role) = self.0.take() else { return };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                    let sql = format!("DROP ROLE IF EXISTS {role}");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// No DDL outside migrations (#15 item 2): the roles run as a PostgreSQL role that may read and
/// write the ledger's rows but not change its schema, with `database.migrate = false`; before
/// `kora setup` they refuse to start and say to run it; that role cannot run it either; once the
/// owner has, a run goes through every role.
#[tokio::test]
async fn roles_run_as_a_role_that_cannot_change_the_schema() {
    let mut guard = RoleGuard(None);
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let app = format!("{}_app", d.db);
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {app} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    guard.0 = Some(app.clone());
    let base = d.db_url.rsplit_once('/').unwrap().0.to_string();
    let app_url = format!(
        "{}{app}@{}/{}",
        &base[..base.find("://").unwrap() + 3],
        base.rsplit_once('@')
            .map_or(&base[base.find("://").unwrap() + 3..], |(_, h)| h),
        d.db
    );
    let as_app = [
        ("KORA_DATABASE_URL", app_url.as_str()),
        ("KORA_DATABASE__MIGRATE", "false"),
    ];
    // Before setup: the role says what to run.
    let o = d
        .command()
        .envs(as_app)
        .args(["serve", "--role", "coordinator"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("kora setup") && err.contains("migration 0"),
        "{err}"
    );
    // The role cannot migrate, so it cannot set up either.
    let o = d
        .command()
        .env("KORA_DATABASE_URL", &app_url)
        .args(["setup"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the app role changed the schema");
    assert!(err.contains("permission denied"), "{err}");
    // The owner sets up, and grants the app role its rows.
    let o = d.kora(&["setup"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut owner = sqlx::PgConnection::connect(&d.db_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}; \
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {app};"
    )))
    .execute(&mut owner)
    .await
    .unwrap();
    drop(owner);
    d.env
        .extend(as_app.map(|(k, v)| (k.to_string(), v.to_string())));
    d.serve("all", &[]);
    let out = d.submit_wait(&root().join("examples/diamond/workflow.json"), None);
    assert_eq!(out["status"], "succeeded", "{out}");
    // The app role still cannot change the schema.
    let mut conn = sqlx::PgConnection::connect(&app_url).await.unwrap();
    let e = sqlx::raw_sql("CREATE TABLE intruder (x int)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("permission denied"), "{e}");
    drop(conn);
    d.finish().await;
}

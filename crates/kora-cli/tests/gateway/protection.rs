//! What protects the API: security headers, request ids, the body limit, rate limits and
//! tenant quotas (429 with Retry-After), CORS, the admin network allowlist behind trusted
//! proxies, TLS, and no secret in logs, answers or the ledger.

use reqwest::Method;
use serde_json::json;

use crate::api::*;

#[tokio::test]
async fn headers_ids_body_limit_cors_and_admin_networks() {
    let Some((d, api)) = start(&[
        ("KORA_GATEWAY__MAX_BODY_BYTES", "2048"),
        (
            "KORA_GATEWAY__CORS_ORIGINS",
            "[\"https://app.example.com\"]",
        ),
        ("KORA_GATEWAY__ADMIN_ALLOW", "[\"10.9.9.9/32\"]"),
        ("KORA_GATEWAY__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"),
    ])
    .await
    else {
        return;
    };
    let k = key(&d, "acme", "admin", &[]);
    for (status, a) in [
        (200, api.get("/v1/runs", &k).await),
        (401, api.call(Method::GET, "/v1/runs", None, None).await),
        (404, api.get("/v1/nothing", &k).await),
    ] {
        assert_eq!(a.status, status);
        let h = &a.headers;
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert!(
            !h.contains_key("strict-transport-security"),
            "HSTS only over TLS"
        );
        assert!(h.contains_key("x-request-id"));
        assert!(
            a.body["error"].is_object() || status == 200,
            "one error shape: {}",
            a.body
        );
    }
    // A caller's request id comes back and is in the audit trail.
    let resp = api
        .http
        .post(format!("{}/v1/runs", api.base))
        .bearer_auth(&k)
        .header("X-Request-Id", "trace-abc-123")
        .header("X-Forwarded-For", "10.9.9.9")
        .json(&json!({"workflow": doubling()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    // The body limit: 413 in the API's shape.
    let big = json!({"workflow": doubling(), "params": {"pad": "x".repeat(5000)}});
    let a = api.post("/v1/runs", &k, &big).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "payload_too_large");
    // Not JSON: 415; malformed JSON: 400; an unknown field: 400 naming it.
    let resp = api
        .http
        .post(format!("{}/v1/runs", api.base))
        .bearer_auth(&k)
        .body("workflow=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let a = api
        .post(
            "/v1/runs",
            &k,
            &json!({"workflow": doubling(), "colour": 1}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        a.body
    );

    // CORS: the allowed origin is answered; another is not.
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://evil.example", false),
    ] {
        let resp = api
            .http
            .request(Method::OPTIONS, format!("{}/v1/runs", api.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }

    // Admin routes only from 10.9.9.9: directly we are 127.0.0.1 (refused); through the
    // trusted proxy (127.0.0.1) as 10.9.9.9, allowed; a spoofed leftmost hop does not count.
    let keys_as = |xff: Option<&'static str>| {
        let mut req = api
            .http
            .get(format!("{}/v1/keys", api.base))
            .bearer_auth(&k);
        if let Some(x) = xff {
            req = req.header("X-Forwarded-For", x);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(keys_as(None).await, 403);
    assert_eq!(keys_as(Some("10.9.9.9")).await, 200);
    assert_eq!(keys_as(Some("10.9.9.9, 6.6.6.6")).await, 403);
    let metrics = api.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, 403);
    let audit = api
        .http
        .get(format!("{}/v1/audit?action=runs.submit", api.base))
        .bearer_auth(&k)
        .header("X-Forwarded-For", "10.9.9.9")
        .send()
        .await
        .unwrap();
    let audit: serde_json::Value = audit.json().await.unwrap();
    let e = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["request_id"] == "trace-abc-123")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(e["client_addr"], "10.9.9.9", "the client behind the proxy");
    d.finish().await;
}

#[tokio::test]
async fn rate_limits_and_tenant_quotas_answer_429_with_retry_after() {
    let Some((d, api)) = start(&[
        ("KORA_GATEWAY__RATE_LIMIT__PER_CREDENTIAL", "1"),
        ("KORA_GATEWAY__RATE_LIMIT__CREDENTIAL_BURST", "3"),
        (
            "KORA_GATEWAY__QUOTAS__TENANTS__SLOW__MAX_CONCURRENT_RUNS",
            "1",
        ),
        (
            "KORA_GATEWAY__QUOTAS__TENANTS__BURSTY__SUBMISSIONS_PER_SEC",
            "0.5",
        ),
        (
            "KORA_GATEWAY__QUOTAS__TENANTS__BURSTY__SUBMISSIONS_BURST",
            "2",
        ),
    ])
    .await
    else {
        return;
    };
    let k = key(&d, "acme", "viewer", &[]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(api.get("/v1/runs", &k).await);
    }
    assert_eq!(
        statuses.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 200, 200, 429]
    );
    let limited = &statuses[3];
    assert_eq!(limited.body["error"]["code"], "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another credential has its own budget.
    let k2 = key(&d, "acme", "viewer", &[]);
    assert_eq!(api.get("/v1/runs", &k2).await.status, 200);

    // Submissions per second, per tenant.
    let bursty: Vec<String> = (0..3).map(|_| key(&d, "bursty", "operator", &[])).collect();
    let mut got = Vec::new();
    for k in &bursty {
        got.push(
            api.post("/v1/runs", k, &json!({"workflow": doubling()}))
                .await
                .status,
        );
    }
    assert_eq!(got, [202, 202, 429], "the tenant's rate, across its keys");

    // Concurrent runs: one running, the next refused until it ends.
    let slow = key(&d, "slow", "operator", &[]);
    let sleepy = json!({"kora": 1, "nodes": [{"id": "s", "type": "PythonCodeNode",
        "config": {"code": "import time\ntime.sleep(3)\nresult = 1"}}]});
    let first = api
        .post("/v1/runs", &slow, &json!({"workflow": sleepy}))
        .await;
    assert_eq!(first.status, 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = api
        .post("/v1/runs", &slow, &json!({"workflow": doubling()}))
        .await;
    assert_eq!(second.status, 429, "{}", second.body);
    assert!(
        second.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit is 1")
    );
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let third = api
        .post("/v1/runs", &slow, &json!({"workflow": doubling()}))
        .await;
    assert_eq!(third.status, 202, "{}", third.body);
    d.finish().await;
}

#[tokio::test]
async fn tls_serves_with_hsts_and_secrets_stay_out_of_logs_answers_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    // A CA of the test's own, and the gateway's certificate signed by it.
    let certs = kora_broker::test_ca::certificates(dir.path());
    let (cert, keyf) = (certs.server.clone(), certs.server_key.clone());
    let Some(mut d) = Deployment::new(&[
        ("KORA_GATEWAY__TLS__CERT_PATH", cert.to_str().unwrap()),
        ("KORA_GATEWAY__TLS__KEY_PATH", keyf.to_str().unwrap()),
        ("KORA_LOG", "debug"),
    ])
    .await
    else {
        return;
    };
    let log = dir.path().join("serve.log");
    d.serve_logged("all", &log);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let api = Api {
        base: d.gateway.replace("http://", "https://"),
        http: reqwest::Client::builder()
            .add_root_certificate(root)
            .build()
            .unwrap(),
    };
    ready(&api).await;
    let k = key(&d, "acme", "admin", &[]);
    let a = api
        .post("/v1/runs?wait=30", &k, &json!({"workflow": doubling()}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let wrong = format!("kora_{}_{}", k.split('_').nth(1).unwrap(), "f".repeat(64));
    assert_eq!(api.get("/v1/runs", &wrong).await.status, 401);
    let created = api
        .post(
            "/v1/keys",
            &k,
            &json!({"role": "viewer", "name": "made-over-https"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let made = created.body["key"].as_str().unwrap().to_string();
    let hook = api
        .post(
            "/v1/triggers",
            &k,
            &json!({"name": "h", "webhook": true, "workflow": doubling()}),
        )
        .await;
    let hook_secret = hook.body["secret"].as_str().unwrap().to_string();
    // Plain HTTP to the TLS port gets nowhere.
    let plain = reqwest::get(format!("{}/healthz", d.gateway)).await;
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "no plain HTTP on the TLS port"
    );
    d.procs[0].kill().unwrap();
    d.procs[0].wait().unwrap();
    let pepper = d.var("KORA_GATEWAY__KEY_PEPPER");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("request"), "the access log is there");
    let dump = Command::new("pg_dump").arg(&d.db_url).output().unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(
        dump.contains("made-over-https"),
        "the dump has the keys table"
    );
    for secret in [&k, &wrong, &made, &hook_secret, &pepper] {
        let tail = &secret[secret.len() - 40..];
        assert!(!logs.contains(tail), "a secret is in the log");
        assert!(!dump.contains(tail), "a secret is in the ledger");
    }
    d.finish().await;
}

//! Tenant isolation: tenant B cannot list, read, cancel, replay or stream anything of tenant
//! A's; for B it does not exist.

use serde_json::json;

use crate::api::*;

#[tokio::test]
async fn another_tenant_sees_nothing_of_a_tenants_resources() {
    let Some((d, api)) = start(&[]).await else {
        return;
    };
    let a = key(&d, "acme", "admin", &[]);
    let b = key(&d, "globex", "admin", &[]);
    let ok = run_wait(&api, &a, &doubling(), json!({})).await;
    let run = ok["run_id"].as_str().unwrap().to_string();
    let failed = run_wait(&api, &a, &dividing(), json!({})).await;
    let failed_run = failed["run_id"].as_str().unwrap().to_string();
    let dead = format!("{failed_run}:d:0:1");
    api.post(
        "/v1/workflows",
        &a,
        &json!({"name": "orders", "workflow": doubling()}),
    )
    .await;
    api.post(
        "/v1/triggers",
        &a,
        &json!({"name": "acme-hook", "webhook": true, "workflow": doubling()}),
    )
    .await;
    // B's own, with the same workflow name: separate.
    api.post(
        "/v1/workflows",
        &b,
        &json!({"name": "orders", "workflow": dividing()}),
    )
    .await;

    // Lists: nothing of A's.
    for (path, field) in [
        ("/v1/runs", "runs"),
        ("/v1/dead-letters?state=any", "dead_letters"),
        ("/v1/triggers", "triggers"),
        ("/v1/keys", "keys"),
        ("/v1/audit", "entries"),
    ] {
        let got = api.get(path, &b).await;
        assert_eq!(got.status, 200, "{path}: {}", got.body);
        let text = got.body.to_string();
        for secret in [&run, &failed_run, "acme-hook", "acme"] {
            assert!(!text.contains(secret), "{path} shows {secret}: {text}");
        }
        let _ = field;
    }
    let wf = api.get("/v1/workflows/orders", &b).await;
    assert_eq!(
        wf.body["workflow"]["name"], "divide",
        "B's own orders, not A's"
    );
    // Reads, actions and streams: 404, exactly like something that does not exist.
    let missing = "01a00000-0000-7000-8000-000000000000";
    for (method, path) in [
        ("GET", format!("/v1/runs/{run}")),
        ("GET", format!("/v1/runs/{run}/events")),
        ("POST", format!("/v1/runs/{run}/cancel")),
        ("POST", format!("/v1/runs/{failed_run}/retry")),
        ("GET", format!("/v1/dead-letters/{dead}")),
        ("POST", format!("/v1/dead-letters/{dead}/replay")),
        ("GET", "/v1/triggers/acme-hook".into()),
        ("POST", "/v1/triggers/acme-hook/pause".into()),
        ("DELETE", "/v1/triggers/acme-hook".into()),
        ("GET", format!("/v1/runs/{missing}")),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method == "POST").then(|| json!({}));
        let got = api.call(m, &path, Some(&b), body.as_ref()).await;
        assert_eq!(got.status, 404, "{method} {path}: {}", got.body);
        assert_eq!(got.body["error"]["code"], "not_found");
    }
    // B's bulk operations select nothing of A's.
    let bulk = api.post("/v1/dead-letters/replay", &b, &json!({})).await;
    assert_eq!(bulk.body["count"], 0, "{}", bulk.body);
    let purge = api.post("/v1/dead-letters/purge", &b, &json!({})).await;
    assert_eq!(purge.body["count"], 0, "{}", purge.body);
    // A's are untouched.
    let still = api.get(&format!("/v1/dead-letters/{dead}"), &a).await;
    assert_eq!(still.body["dead_letter"]["state"], "open", "{}", still.body);
    let t = api.get("/v1/triggers/acme-hook", &a).await;
    assert_eq!(t.body["paused"], false);
    // A trigger name is the installation's: B cannot take A's.
    let taken = api
        .post(
            "/v1/triggers",
            &b,
            &json!({"name": "acme-hook", "webhook": true, "workflow": doubling()}),
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    d.finish().await;
}

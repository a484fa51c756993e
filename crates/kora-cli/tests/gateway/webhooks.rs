//! Webhook triggers: a signed delivery starts a run whose parameters are the body; a wrong,
//! missing or stale signature is refused; the same delivery again is the same run; a paused
//! trigger answers 503.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::*;

async fn deliver(api: &Api, name: &str, ts: &str, sig: &str, body: &Value) -> Answer {
    let resp = api
        .http
        .post(format!("{}/v1/hooks/{name}", api.base))
        .header("X-Kora-Timestamp", ts)
        .header("X-Kora-Signature", sig)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Answer {
        status,
        body: resp.json().await.unwrap_or(Value::Null),
        headers,
    }
}

#[tokio::test]
async fn signed_deliveries_start_runs_and_nothing_else_does() {
    let Some((d, api)) = start(&[]).await else {
        return;
    };
    let k = key(&d, "acme", "operator", &[]);
    let created = api
        .post(
            "/v1/triggers",
            &k,
            &json!({"name": "orders-hook", "webhook": true, "workflow": doubling(), "params": {"a": {"x": 1}}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["kind"], "webhook");
    assert_eq!(created.body["hook_path"], "/v1/hooks/orders-hook");
    let secret = created.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    // The secret is shown once: reading the trigger does not give it.
    let shown = api.get("/v1/triggers/orders-hook", &k).await;
    assert!(shown.body.get("secret").is_none(), "{}", shown.body);

    let now = (kora_model::now_ms() / 1000).to_string();
    let body = json!({"a": {"x": 21}});
    let sig = kora_gateway::hooks::sign(&secret, &now, body.to_string().as_bytes());
    let ok = deliver(&api, "orders-hook", &now, &sig, &body).await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    let run = ok.body["run_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    loop {
        let v = api.get(&format!("/v1/runs/{run}"), &k).await;
        if v.body["status"] == "succeeded" {
            assert_eq!(
                v.body["results"]["a"]["result"], 42,
                "the body is the params: {}",
                v.body
            );
            assert_eq!(v.body["tenant"], "acme", "the trigger's tenant");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{}", v.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same delivery again (a retry, or a replay by someone who saw it): the same run.
    let again = deliver(&api, "orders-hook", &now, &sig, &body).await;
    assert_eq!(
        (again.status, again.body["run_id"].as_str()),
        (200, Some(run.as_str())),
        "{}",
        again.body
    );
    assert_eq!(again.body["duplicate"], true);

    // Refused: a wrong signature, another body, a stale timestamp, no signature, a wrong secret.
    let wrong_body = json!({"a": {"x": 1000}});
    let stale = (kora_model::now_ms() / 1000 - 3600).to_string();
    let stale_sig = kora_gateway::hooks::sign(&secret, &stale, body.to_string().as_bytes());
    let other_secret = kora_gateway::hooks::sign("whsec_guess", &now, body.to_string().as_bytes());
    for (what, ts, s, b) in [
        ("tampered body", now.as_str(), sig.as_str(), &wrong_body),
        ("stale", stale.as_str(), stale_sig.as_str(), &body),
        ("garbage", now.as_str(), "v1=00", &body),
        ("wrong secret", now.as_str(), other_secret.as_str(), &body),
    ] {
        let a = deliver(&api, "orders-hook", ts, s, b).await;
        assert_eq!(a.status, 401, "{what}: {}", a.body);
    }
    let unsigned = api
        .call(Method::POST, "/v1/hooks/orders-hook", None, Some(&body))
        .await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);
    let unknown = deliver(&api, "no-such-hook", &now, &sig, &body).await;
    assert_eq!(unknown.status, 404);
    // A subject trigger is not a webhook.
    api.post(
        "/v1/triggers",
        &k,
        &json!({"name": "subject-trig", "subject": "shop.orders", "workflow": doubling()}),
    )
    .await;
    let not_hook = deliver(&api, "subject-trig", &now, &sig, &body).await;
    assert_eq!(not_hook.status, 404);

    // Paused: 503 with Retry-After; resumed: accepted again.
    api.post("/v1/triggers/orders-hook/pause", &k, &json!({}))
        .await;
    let body2 = json!({"a": {"x": 2}});
    let sig2 = kora_gateway::hooks::sign(&secret, &now, body2.to_string().as_bytes());
    let paused = deliver(&api, "orders-hook", &now, &sig2, &body2).await;
    assert_eq!(paused.status, 503, "{}", paused.body);
    assert!(paused.headers.contains_key("retry-after"));
    api.post("/v1/triggers/orders-hook/resume", &k, &json!({}))
        .await;
    let resumed = deliver(&api, "orders-hook", &now, &sig2, &body2).await;
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    // Deliveries are audited under the trigger's tenant.
    let admin = key(&d, "acme", "admin", &[]);
    let audit = api.get("/v1/audit?action=hooks.deliver", &admin).await;
    let entries = audit.body["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "webhook:orders-hook" && e["status"] == 503)
    );
    d.finish().await;
}

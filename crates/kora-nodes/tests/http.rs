//! The HTTP nodes against a real HTTP server the test runs on loopback.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kora_nodes::testing::{Seen, server};
use kora_nodes::testing::{registry, run_node as run};
use serde_json::{Value, json};

fn reg() -> kora_nodes::Registry {
    registry(std::path::Path::new("."))
}

#[tokio::test]
async fn http_request_sends_methods_bodies_and_auth() {
    let (base, seen) = server(Arc::new(|req: &Seen, _| match req.target.as_str() {
        t if t.starts_with("/missing") => (404, "application/json", r#"{"error":"nope"}"#.into()),
        _ => (
            200,
            "application/json",
            json!({"method": req.method, "target": req.target, "body": req.body}).to_string(),
        ),
    }))
    .await;
    let r = reg();
    let o = run(
        &r,
        "HTTPRequestNode",
        json!({"url": format!("{base}/items"), "method": "POST", "params": {"page": 2},
               "json_data": {"name": "Ada"}, "headers": {"X-Trace": "t1"},
               "auth_type": "bearer", "auth_token": "tok"}),
    )
    .await
    .unwrap();
    assert_eq!(o["success"], true);
    assert_eq!(o["status_code"], 200);
    assert_eq!(o["response"]["content"]["target"], "/items?page=2");
    assert!(o["response"]["response_time_ms"].as_f64().unwrap() >= 0.0);
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first.method, "POST");
    assert_eq!(first.json(), json!({"name": "Ada"}));
    assert_eq!(first.header("authorization"), Some("Bearer tok"));
    assert_eq!(first.header("x-trace"), Some("t1"));
    // A form body with basic auth and an API key header.
    run(
        &r,
        "HTTPRequestNode",
        json!({"url": format!("{base}/form"), "method": "PUT", "data": {"a": 1, "b": "x y"},
               "auth_type": "basic", "auth_username": "u", "auth_password": "p"}),
    )
    .await
    .unwrap();
    run(
        &r,
        "HTTPRequestNode",
        json!({"url": format!("{base}/key"), "auth_type": "api_key", "auth_token": "k1",
               "api_key_header": "X-Key", "method": "DELETE"}),
    )
    .await
    .unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s[1].method, "PUT");
        assert_eq!(s[1].body, "a=1&b=x+y");
        assert_eq!(s[1].header("authorization"), Some("Basic dTpw"));
        assert_eq!(
            (s[2].method.as_str(), s[2].header("x-key")),
            ("DELETE", Some("k1"))
        );
    }
    // An HTTP error status is a response, not an error.
    let o = run(
        &r,
        "HTTPRequestNode",
        json!({"url": format!("{base}/missing")}),
    )
    .await
    .unwrap();
    assert_eq!(
        (o["status_code"].clone(), o["success"].clone()),
        (json!(404), json!(false))
    );
    assert_eq!(o["response"]["content"]["error"], "nope");
    // Nothing listens: a retryable ConnectionError naming the host, after the retries.
    let e = run(
        &r,
        "HTTPRequestNode",
        json!({"url": "http://127.0.0.1:9/x?key=secret", "retry_count": 1, "retry_backoff": 0.01}),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.error_type(), "ConnectionError");
    assert!(
        e.to_string().contains("127.0.0.1:9") && !e.to_string().contains("secret"),
        "{e}"
    );
    // A retry backoff is checked like every duration: a negative one is refused, named.
    let e = run(
        &r,
        "HTTPRequestNode",
        json!({"url": "http://127.0.0.1:9/x", "retry_count": 1, "retry_backoff": -1}),
    )
    .await
    .unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("retry_backoff"),
        "{e}"
    );
    let e = run(
        &r,
        "HTTPRequestNode",
        json!({"url": "ftp://x", "method": "GET"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("http:// or https://"), "{e}");
}

#[tokio::test]
async fn http_request_retries_a_busy_server_until_it_answers() {
    let (base, seen) = server(Arc::new(|_: &Seen, n| {
        if n < 2 {
            (503, "text/plain", "busy".into())
        } else {
            (200, "text/plain", "ok".into())
        }
    }))
    .await;
    let o = run(
        &reg(),
        "HTTPRequestNode",
        json!({"url": base, "retry_count": 3, "retry_backoff": 0.05}),
    )
    .await
    .unwrap();
    assert_eq!(o["response"]["content"], "ok");
    let s = seen.lock().unwrap();
    assert_eq!(s.len(), 3);
    assert!(s[1].at - s[0].at >= Duration::from_millis(45), "backoff");
    assert!(s[2].at - s[1].at >= Duration::from_millis(95), "doubling");
}

#[tokio::test]
async fn rest_client_fills_the_resource_and_parses_data() {
    let (base, seen) = server(Arc::new(|req: &Seen, _| {
        (
            200,
            "application/json",
            json!({"id": 42, "path": req.target}).to_string(),
        )
    }))
    .await;
    let o = run(
        &reg(),
        "RESTClientNode",
        json!({"base_url": format!("{base}/api/v1/"), "resource": "/users/{id}/orders",
               "path_params": {"id": "a b"}, "query_params": {"limit": 5}}),
    )
    .await
    .unwrap();
    assert_eq!(o["data"]["id"], 42);
    assert_eq!(
        seen.lock().unwrap()[0].target,
        "/api/v1/users/a%20b/orders?limit=5"
    );
    let e = run(
        &reg(),
        "RESTClientNode",
        json!({"base_url": base, "resource": "/users/{id}"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("path_params"), "{e}");
}

#[tokio::test]
async fn rate_limited_api_shares_one_bucket_across_tasks() {
    let (base, seen) = server(Arc::new(|_: &Seen, _| (200, "text/plain", "ok".into()))).await;
    let r = Arc::new(reg());
    let input =
        json!({"url": base, "requests_per_second": 10, "burst_size": 2, "rate_limit_key": "k"});
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (r, input) = (Arc::clone(&r), input.clone());
        tasks.push(tokio::spawn(async move {
            run(&r, "RateLimitedAPINode", input).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap()["success"], true);
    }
    // 2 at once, then 4 more at 10/s: about 400 ms.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(380), "took {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(seen.lock().unwrap().len(), 6);
    // Not waiting: a retryable RateLimited while the bucket is empty.
    let quick = json!({"url": base, "requests_per_second": 0.5, "rate_limit_key": "q", "wait_on_rate_limit": false});
    run(&r, "RateLimitedAPINode", quick.clone()).await.unwrap();
    let e = run(&r, "RateLimitedAPINode", quick).await.unwrap_err();
    assert_eq!(e.error_type(), "RateLimited");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn alerts_post_their_payloads_and_honour_levels_and_rate_limits() {
    let (base, seen) = server(Arc::new(|req: &Seen, _| {
        if req.target.starts_with("/discord") {
            (204, "text/plain", String::new())
        } else if req.target.starts_with("/gone") {
            (404, "text/plain", "unknown webhook".into())
        } else {
            (200, "text/plain", "ok".into())
        }
    }))
    .await;
    let r = reg();
    let o = run(
        &r,
        "WebhookAlertNode",
        json!({"url": format!("{base}/hook"), "title": "Disk", "alert_type": "critical",
               "message_template": "{severity}: {host} at {pct}%", "context": {"host": "db1", "pct": 93}}),
    )
    .await
    .unwrap();
    assert_eq!(
        (o["sent"].clone(), o["message"].clone()),
        (json!(true), json!("critical: db1 at 93%"))
    );
    let o = run(
        &r,
        "SlackAlertNode",
        json!({"webhook_url": format!("{base}/slack"), "title": "Deploy", "message": "done", "alert_type": "success",
               "channel": "#ops", "context": {"version": "1.2"}}),
    )
    .await
    .unwrap();
    assert_eq!(o["sent"], true);
    let o = run(
        &r,
        "DiscordAlertNode",
        json!({"webhook_url": format!("{base}/discord"), "title": "Deadlock", "alert_type": "error",
               "alert_templates": {"error": "victim {victim}"}, "victim": "tx9", "mentions": ["123", "@here"],
               "thread_id": "77", "footer_text": "kora"}),
    )
    .await
    .unwrap();
    assert_eq!(o["status_code"], 204, "Discord's 204 is success");
    {
        let s = seen.lock().unwrap();
        let hook = s[0].json();
        assert_eq!(hook["context"]["host"], "db1");
        assert_eq!(hook["run_id"], "r");
        let slack = s[1].json();
        assert_eq!(slack["channel"], "#ops");
        assert_eq!(slack["attachments"][0]["color"], "good");
        assert_eq!(slack["attachments"][0]["fields"][0]["title"], "version");
        let discord = s[2].json();
        assert_eq!(s[2].target, "/discord?thread_id=77");
        assert_eq!(discord["content"], "<@123> @here");
        assert_eq!(discord["embeds"][0]["description"], "victim tx9");
        assert_eq!(discord["embeds"][0]["footer"]["text"], "kora");
    }
    // Filtered by level: not posted.
    let o = run(
        &r,
        "WebhookAlertNode",
        json!({"url": format!("{base}/hook"), "alert_type": "info", "alert_levels": ["high", "critical"]}),
    )
    .await
    .unwrap();
    assert_eq!(
        (o["sent"].clone(), o["suppressed"].clone()),
        (json!(false), json!("alert_levels"))
    );
    // Two a minute, then a cooldown.
    let limited = json!({"url": format!("{base}/limited"), "rate_limit": {"max_alerts_per_minute": 2, "cooldown_seconds": 300}});
    let mut sent = Vec::new();
    for _ in 0..4 {
        let o = run(&r, "WebhookAlertNode", limited.clone()).await.unwrap();
        sent.push((o["sent"].as_bool().unwrap(), o["suppressed"].clone()));
    }
    assert_eq!(
        sent,
        [
            (true, Value::Null),
            (true, Value::Null),
            (false, json!("rate_limit")),
            (false, json!("cooldown"))
        ]
    );
    // A refused webhook is a permanent error.
    let e = run(
        &r,
        "SlackAlertNode",
        json!({"webhook_url": format!("{base}/gone")}),
    )
    .await
    .unwrap_err();
    assert!(!e.is_retryable() && e.to_string().contains("404"), "{e}");
}

#[tokio::test]
async fn llm_agent_speaks_the_chat_completions_api() {
    let (base, seen) = server(Arc::new(|req: &Seen, _| {
        if req.header("authorization") != Some("Bearer sk-test") {
            return (401, "application/json", r#"{"error": {"message": "bad key"}}"#.into());
        }
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or(Value::Null);
        (
            200,
            "application/json",
            json!({"id": "cmpl-1", "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": format!("echo: {}", last["content"].as_str().unwrap_or(""))}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})
            .to_string(),
        )
    }))
    .await;
    let r = reg();
    let o = run(
        &r,
        "LLMAgentNode",
        json!({"base_url": format!("{base}/v1"), "api_key": "sk-test", "model": "tiny",
               "system_prompt": "be brief", "prompt": "hello",
               "generation_config": {"temperature": 0.2, "max_tokens": 16}}),
    )
    .await
    .unwrap();
    assert_eq!(o["success"], true);
    assert_eq!(o["response"]["content"], "echo: hello");
    assert_eq!(o["usage"]["total_tokens"], 12);
    assert_eq!(o["metadata"]["model"], "tiny");
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.target, "/v1/chat/completions");
    let body = sent.json();
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 16);
    let e = run(
        &r,
        "LLMAgentNode",
        json!({"base_url": format!("{base}/v1"), "api_key": "wrong", "model": "tiny", "prompt": "x"}),
    )
    .await
    .unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("bad key"),
        "{e}"
    );
    let e = run(
        &r,
        "LLMAgentNode",
        json!({"base_url": base, "model": "tiny"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("give messages or prompt"), "{e}");
}

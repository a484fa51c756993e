//! Node policy at admission (#15 item 4, `[gateway.policy]`): a service key without
//! `nodes:code` cannot submit a code node inline but can run the workflow an operator
//! registered; a tenant limited to some hosts cannot point an HTTP node elsewhere, through the
//! workflow or its parameters; each refusal names the node and the rule.

use serde_json::json;

use crate::api::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_nodes_and_hosts_follow_the_policy() {
    let Some((d, api)) = start(&[(
        "KORA_GATEWAY__POLICY__TENANTS__ACME__HTTP_HOSTS",
        "[\"*.example.com\"]",
    )])
    .await
    else {
        return;
    };
    let operator = key(&d, "acme", "operator", &[]);
    let service = key(&d, "acme", "viewer", &["--scopes", "runs:write"]);

    let a = api
        .post(
            "/v1/runs",
            &service,
            &json!({"workflow": doubling(), "params": {}}),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let message = a.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("node 'a' (PythonCodeNode): rule nodes:code"),
        "{message}"
    );
    // The same code, reviewed and registered by an operator, runs for the service.
    let r = api
        .post(
            "/v1/workflows",
            &operator,
            &json!({"name": "double", "workflow": doubling()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ran = api
        .post(
            "/v1/runs?wait=30",
            &service,
            &json!({"workflow_name": "double", "params": {"a": {"x": 21}}}),
        )
        .await;
    assert_eq!(ran.status, 200, "{}", ran.body);
    assert_eq!(ran.body["results"]["a"]["result"], 42, "{}", ran.body);
    // The service cannot register it itself either (it lacks workflows:write anyway); an
    // operator can submit it inline.
    let answer = run_wait(&api, &operator, &doubling(), json!({})).await;
    assert_eq!(answer["status"], "succeeded", "{answer}");

    // Hosts: a target outside *.example.com, in the workflow or in the parameters.
    let http = json!({"kora": 1, "name": "call", "nodes": [
        {"id": "get", "type": "HTTPRequestNode", "config": {"url": "https://evil.test/steal"}}]});
    let a = api
        .post(
            "/v1/runs",
            &operator,
            &json!({"workflow": http, "params": {}}),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let message = a.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("node 'get' (HTTPRequestNode): rule http_hosts")
            && message.contains("evil.test"),
        "{message}"
    );
    let fine = json!({"kora": 1, "name": "call", "nodes": [
        {"id": "get", "type": "HTTPRequestNode", "config": {"url": "https://api.example.com/x"}}]});
    let a = api
        .post(
            "/v1/runs",
            &operator,
            &json!({"workflow": fine, "params": {"get": {"url": "http://evil.test/"}}}),
        )
        .await;
    assert_eq!(a.status, 403, "a parameter redirected the node: {}", a.body);
    // Registering it is refused the same way, before anything is stored.
    let r = api
        .post(
            "/v1/workflows",
            &operator,
            &json!({"name": "call", "workflow": http}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let listed = api.get("/v1/workflows", &operator).await;
    assert!(
        !listed.body.to_string().contains("\"call\""),
        "{}",
        listed.body
    );
    d.finish().await;
}

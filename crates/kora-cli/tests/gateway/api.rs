//! Talking to a deployment's gateway: an HTTP client, keys made with `kora keys`, and the
//! resources the tests act on.

use reqwest::Method;
use serde_json::{Value, json};

pub(crate) use crate::support::*;

/// One gateway.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

/// An answer: status, JSON body (or `Null`), headers.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        }
    }
    pub(crate) async fn get(&self, path: &str, key: &str) -> Answer {
        self.call(Method::GET, path, Some(key), None).await
    }
    pub(crate) async fn post(&self, path: &str, key: &str, body: &Value) -> Answer {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }
}

/// A deployment serving every role (the gateway too), once the gateway is ready.
pub(crate) async fn start(env: &[(&str, &str)]) -> Option<(Deployment, Api)> {
    let mut d = Deployment::new(env).await?;
    d.serve("all", &[]);
    let api = Api {
        base: d.gateway.clone(),
        http: reqwest::Client::new(),
    };
    ready(&api).await;
    Some((d, api))
}

/// Waits for the gateway to answer `/readyz` with 200.
pub(crate) async fn ready(api: &Api) {
    let t = Instant::now();
    loop {
        let last = match api.http.get(format!("{}/readyz", api.base)).send().await {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => format!("{}", r.status()),
            Err(e) => format!("{e:?}"),
        };
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the gateway never got ready: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kora keys create`: the key.
pub(crate) fn key(d: &Deployment, tenant: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "keys", "create", "--tenant", tenant, "--role", role, "--format", "json",
    ];
    args.extend_from_slice(extra);
    let o = d.kora(&args);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    v["key"].as_str().unwrap().to_string()
}

/// A workflow that succeeds: one node doubling `x`.
pub(crate) fn doubling() -> Value {
    json!({"kora": 1, "name": "double", "nodes": [
        {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = x * 2", "x": 1}}]})
}

/// A workflow whose node fails permanently (division by zero): one dead letter.
pub(crate) fn dividing() -> Value {
    json!({"kora": 1, "name": "divide", "nodes": [
        {"id": "d", "type": "PythonCodeNode", "config": {"code": "result = 1 / x", "x": 0}}]})
}

/// Submits and waits: the run's answer.
pub(crate) async fn run_wait(api: &Api, key: &str, workflow: &Value, params: Value) -> Value {
    let a = api
        .post(
            "/v1/runs?wait=30",
            key,
            &json!({"workflow": workflow, "params": params}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

//! Nodes that call HTTP services: HTTPRequestNode, RESTClientNode, RateLimitedAPINode, the
//! alert nodes (Webhook, Slack, Discord) and LLMAgentNode (OpenAI-compatible chat completions).
//!
//! One pooled client per worker. RateLimitedAPINode's token buckets and the alert nodes' rate
//! limits live in the worker and are shared by its tasks (each worker process limits itself;
//! for an installation-wide limit, route the nodes to a queue with a rate limit).

use kora_model::error_type;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::py_str;
use kora_model::{Map, Value};
use serde_json::json;

use crate::builtin::{info, input_error};
use crate::{Node, NodeContext, NodeError};

/// What the HTTP nodes of one worker share.
pub(crate) struct Http {
    client: reqwest::Client,
    insecure: reqwest::Client,
    /// RateLimitedAPINode's buckets by key, with the quota each was made for.
    #[allow(clippy::type_complexity)]
    buckets: Mutex<HashMap<String, (governor::Quota, Arc<governor::DefaultDirectRateLimiter>)>>,
    alerts: Mutex<HashMap<String, AlertWindow>>,
}

#[derive(Default)]
struct AlertWindow {
    sent: Vec<Instant>,
    quiet_until: Option<Instant>,
}

impl Http {
    pub(crate) fn new() -> Arc<Http> {
        let build = |verify: bool| {
            reqwest::Client::builder()
                .user_agent(concat!("kora/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(16)
                .danger_accept_invalid_certs(!verify)
                .build()
                .unwrap_or_default()
        };
        Arc::new(Http {
            client: build(true),
            insecure: build(false),
            buckets: Mutex::new(HashMap::new()),
            alerts: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token from `key`'s bucket (`rate` a second, up to `burst` at once; governor's
    /// GCRA): waits for one when `wait`, else fails with a retryable `RateLimited` that says
    /// when to try again. A key given another rate starts a new bucket.
    async fn take_token(
        &self,
        key: &str,
        rate: f64,
        burst: u32,
        wait: bool,
    ) -> Result<(), NodeError> {
        let quota = Duration::try_from_secs_f64(1.0 / rate)
            .ok()
            .and_then(governor::Quota::with_period)
            .map(|q| q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
            .ok_or_else(|| {
                NodeError::permanent(
                    error_type::VALUE,
                    format!("rate limit of {rate}/s cannot be kept"),
                )
            })?;
        let limiter = {
            let mut b = self
                .buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = b
                .entry(key.to_string())
                .or_insert_with(|| (quota, Arc::new(governor::RateLimiter::direct(quota))));
            if entry.0 != quota {
                *entry = (quota, Arc::new(governor::RateLimiter::direct(quota)));
            }
            Arc::clone(&entry.1)
        };
        loop {
            let Err(not_until) = limiter.check() else {
                return Ok(());
            };
            let delay = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            if !wait {
                return Err(NodeError::retryable(
                    "RateLimited",
                    format!(
                        "rate limit of {rate}/s for {key:?} reached; next token in {} ms",
                        delay.as_millis()
                    ),
                )
                .retry_after(Some(delay)));
            }
            tokio::time::sleep(delay).await;
        }
    }
}

pub(crate) fn all(http: &Arc<Http>) -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(HttpRequest::new(Arc::clone(http))),
        Arc::new(RestClient::new(Arc::clone(http))),
        Arc::new(RateLimitedApi::new(Arc::clone(http))),
        Arc::new(Alert::new(Arc::clone(http), AlertKind::Webhook)),
        Arc::new(Alert::new(Arc::clone(http), AlertKind::Slack)),
        Arc::new(Alert::new(Arc::clone(http), AlertKind::Discord)),
        Arc::new(LlmAgent::new(Arc::clone(http))),
    ]
}

// ---------------------------------------------------------------------------------------------
// The request core shared by the API nodes.

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn request_params() -> Vec<ParamInfo> {
    vec![
        ParamInfo::optional("method", "HTTP method").kind(ParamKind::OneOf(METHODS)).default("GET"),
        ParamInfo::optional("headers", "request headers").kind(ParamKind::Map),
        ParamInfo::optional("params", "query parameters").kind(ParamKind::Map),
        ParamInfo::optional("json_data", "a JSON request body"),
        ParamInfo::optional("data", "a form body (a map) or a raw body (a string)"),
        ParamInfo::optional("response_format", "how the body is read: auto (JSON when the content type says so), json or text")
            .kind(ParamKind::OneOf(&["auto", "json", "text"]))
            .default("auto"),
        ParamInfo::optional("timeout", "seconds for the whole request").kind(ParamKind::Seconds).default("30"),
        ParamInfo::optional("verify_ssl", "check the server's TLS certificate").kind(ParamKind::Bool).default("true"),
        ParamInfo::optional("retry_count", "retries after a connection error, a timeout, 429 or 502-504")
            .kind(ParamKind::Integer)
            .default("0"),
        ParamInfo::optional("retry_backoff", "seconds before the first retry, doubling each time (Retry-After wins)")
            .kind(ParamKind::Seconds)
            .default("0.5"),
        ParamInfo::optional("auth_type", "bearer (auth_token), basic (auth_username, auth_password) or api_key (auth_token in api_key_header)")
            .kind(ParamKind::OneOf(&["bearer", "basic", "api_key"])),
        ParamInfo::optional("auth_token", "token for bearer or api_key auth (use a secret reference)").kind(ParamKind::String),
        ParamInfo::optional("auth_username", "user for basic auth").kind(ParamKind::String),
        ParamInfo::optional("auth_password", "password for basic auth (use a secret reference)").kind(ParamKind::String),
        ParamInfo::optional("api_key_header", "header carrying the API key").kind(ParamKind::String).default("X-API-Key"),
    ]
}

enum Body {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
    Raw(String),
}

pub(crate) struct Request {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Body,
    timeout: Duration,
    verify: bool,
    retries: u32,
    backoff: f64,
    format: String,
}

fn str_map(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), py_str(v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn num(input: &Map, k: &str, default: f64) -> f64 {
    input.get(k).and_then(Value::as_f64).unwrap_or(default)
}

/// Reads the request parameters common to the API nodes; `url` is given by the caller.
pub(crate) fn request(node: &str, input: &Map, url: String) -> Result<Request, NodeError> {
    let method = input
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(input_error(
            node,
            format!(
                "method must be one of {}, found {method:?}",
                METHODS.join(", ")
            ),
        ));
    }
    let mut headers = str_map(input.get("headers"));
    match input.get("auth_type").and_then(Value::as_str) {
        None => {}
        Some(t) => {
            let token = || {
                input
                    .get("auth_token")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .ok_or_else(|| input_error(node, format!("auth_type {t} needs auth_token")))
            };
            match t.to_ascii_lowercase().as_str() {
                "bearer" => headers.push(("Authorization".into(), format!("Bearer {}", token()?))),
                "api_key" => {
                    let h = input
                        .get("api_key_header")
                        .and_then(Value::as_str)
                        .unwrap_or("X-API-Key");
                    headers.push((h.to_string(), token()?));
                }
                "basic" => {
                    let user = input
                        .get("auth_username")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let pass = input
                        .get("auth_password")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    headers.push((
                        "Authorization".into(),
                        format!("Basic {}", base64(&format!("{user}:{pass}"))),
                    ));
                }
                other => {
                    return Err(input_error(
                        node,
                        format!("auth_type must be bearer, basic or api_key, found {other:?}"),
                    ));
                }
            }
        }
    }
    let body = match (input.get("json_data"), input.get("data")) {
        (Some(v), _) if !v.is_null() => Body::Json(v.clone()),
        (_, Some(Value::Object(m))) => Body::Form(str_map(Some(&Value::Object(m.clone())))),
        (_, Some(Value::String(s))) => Body::Raw(s.clone()),
        (_, Some(Value::Null) | None) => Body::None,
        (_, Some(other)) => Body::Json(other.clone()),
    };
    let url = url.trim().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(input_error(
            node,
            format!("url must start with http:// or https://, found {url:?}"),
        ));
    }
    Ok(Request {
        method: reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET),
        url,
        headers,
        query: str_map(input.get("params")),
        body,
        timeout: Duration::from_secs_f64(num(input, "timeout", 30.0).clamp(0.001, 3600.0)),
        verify: input
            .get("verify_ssl")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        retries: u32::try_from(
            input
                .get("retry_count")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(20),
        )
        .unwrap_or(0),
        backoff: num(input, "retry_backoff", 0.5).clamp(0.0, 60.0),
        format: input
            .get("response_format")
            .and_then(Value::as_str)
            .unwrap_or("auto")
            .to_ascii_lowercase(),
    })
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A response as the API nodes output it.
pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Map,
    content_type: String,
    content: Value,
    elapsed_ms: f64,
}

impl Response {
    fn output(self) -> Map {
        let success = (200..300).contains(&self.status);
        let mut out = Map::new();
        out.insert(
            "response".into(),
            json!({
                "status_code": self.status,
                "headers": self.headers,
                "content_type": self.content_type,
                "content": self.content,
                "response_time_ms": self.elapsed_ms,
            }),
        );
        out.insert("status_code".into(), Value::from(self.status));
        out.insert("success".into(), Value::Bool(success));
        out
    }
}

/// A `Retry-After` header's wait: seconds, or an HTTP date (RFC 9110), from now.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// How long a response asks the client to wait before trying again, if it says.
fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    parse_retry_after(
        r.headers()
            .get(reqwest::header::RETRY_AFTER)?
            .to_str()
            .ok()?,
    )
}

impl Response {
    /// The response's `Retry-After`, for a retryable error's wait hint.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| v.as_str())
            .and_then(parse_retry_after)
    }
}

impl Http {
    /// Sends `req`, retrying transport failures and 429/502/503/504 up to `req.retries` times.
    /// A transport failure left after the retries is a retryable error; an HTTP error status is
    /// a response (`success: false`).
    pub(crate) async fn send(&self, node: &str, req: &Request) -> Result<Response, NodeError> {
        let client = if req.verify {
            &self.client
        } else {
            &self.insecure
        };
        let mut attempt = 0;
        loop {
            let mut b = client
                .request(req.method.clone(), &req.url)
                .timeout(req.timeout)
                .query(&req.query);
            for (k, v) in &req.headers {
                b = b.header(k, v);
            }
            b = match &req.body {
                Body::None => b,
                Body::Json(v) => b.json(v),
                Body::Form(f) => b.form(f),
                Body::Raw(s) => b.body(s.clone()),
            };
            let started = Instant::now();
            let sent = b.send().await;
            let again = attempt < req.retries;
            let pause = Duration::from_secs_f64(
                req.backoff * 2f64.powi(i32::try_from(attempt).unwrap_or(0)),
            );
            attempt += 1;
            let r = match sent {
                Ok(r) => r,
                Err(e) if again => {
                    tracing::debug!(node, error = %e, "request failed; retrying");
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Err(e) => {
                    let kind = if e.is_timeout() {
                        error_type::TIMEOUT
                    } else {
                        error_type::CONNECTION
                    };
                    return Err(NodeError::retryable(
                        kind,
                        format!(
                            "{node}: {} {} failed after {attempt} attempt(s): {}",
                            req.method,
                            host_of(&req.url),
                            chain(&e.without_url())
                        ),
                    ));
                }
            };
            let status = r.status().as_u16();
            if again && matches!(status, 429 | 502 | 503 | 504) {
                // Waits in the node are short; a longer Retry-After is the coordinator's to keep.
                let wait = retry_after(&r)
                    .unwrap_or(pause)
                    .min(Duration::from_secs(60));
                tokio::time::sleep(wait).await;
                continue;
            }
            let headers: Map = r
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        Value::String(v.to_str().unwrap_or_default().to_string()),
                    )
                })
                .collect();
            let content_type = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = r.bytes().await.map_err(|e| {
                NodeError::retryable(
                    error_type::CONNECTION,
                    format!(
                        "{node}: reading the response failed: {}",
                        chain(&e.without_url())
                    ),
                )
            })?;
            let text = String::from_utf8_lossy(&bytes).to_string();
            let want_json =
                req.format == "json" || (req.format == "auto" && content_type.contains("json"));
            let content = if want_json && !text.trim().is_empty() {
                match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(_) if req.format == "auto" => Value::String(text),
                    Err(e) => {
                        return Err(NodeError::permanent(
                            error_type::VALUE,
                            format!("{node}: response_format json, but the body is not JSON: {e}"),
                        ));
                    }
                }
            } else {
                Value::String(text)
            };
            return Ok(Response {
                status,
                headers,
                content_type,
                content,
                elapsed_ms: (started.elapsed().as_secs_f64() * 1e5).round() / 100.0,
            });
        }
    }
}

/// The host of a URL, for messages (never the query: it may hold a key).
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "(bad url)".into())
}

/// An error with its causes (reqwest's own message says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn url_param(node: &str, input: &Map, k: &str) -> Result<String, NodeError> {
    match input.get(k) {
        Some(Value::String(u)) if !u.is_empty() => Ok(u.clone()),
        _ => Err(input_error(
            node,
            format!("required parameter '{k}' must be a URL string"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct HttpRequest {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl HttpRequest {
    fn new(http: Arc<Http>) -> Self {
        let mut params = vec![
            ParamInfo::required("url", "the URL, http:// or https://").kind(ParamKind::String),
        ];
        params.extend(request_params());
        HttpRequest {
            info: info(
                "HTTPRequestNode",
                "Sends an HTTP request and outputs the response; success is true for a 2xx status.",
                params,
                vec!["response", "status_code", "success"],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for HttpRequest {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "HTTPRequestNode";
        let req = request(NODE, &input, url_param(NODE, &input, "url")?)?;
        Ok(self.http.send(NODE, &req).await?.output())
    }
}

pub(crate) struct RestClient {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl RestClient {
    fn new(http: Arc<Http>) -> Self {
        let mut params = vec![
            ParamInfo::required("base_url", "the API's base URL").kind(ParamKind::String),
            ParamInfo::required(
                "resource",
                "the resource path, with {name} placeholders filled from path_params",
            )
            .kind(ParamKind::String),
            ParamInfo::optional("path_params", "values of the resource's placeholders")
                .kind(ParamKind::Map),
            ParamInfo::optional("query_params", "query parameters (params works too)")
                .kind(ParamKind::Map),
        ];
        params.extend(request_params());
        RestClient {
            info: info(
                "RESTClientNode",
                "Calls a REST resource (base_url + resource with path parameters) and outputs its parsed data.",
                params,
                vec!["data", "status_code", "success", "response"],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for RestClient {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, mut input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "RESTClientNode";
        let base = url_param(NODE, &input, "base_url")?;
        let mut resource = input
            .get("resource")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(Value::Object(p)) = input.get("path_params") {
            for (k, v) in p {
                let enc: String = py_str(v)
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                resource = resource.replace(&format!("{{{k}}}"), &enc);
            }
        }
        if let Some(missing) = resource.find('{') {
            return Err(input_error(
                NODE,
                format!(
                    "resource {resource:?} still has a placeholder at {missing}: give it in path_params"
                ),
            ));
        }
        if let Some(q) = input.remove("query_params") {
            input.insert("params".into(), q);
        }
        let url = format!(
            "{}/{}",
            base.trim_end_matches('/'),
            resource.trim_start_matches('/')
        );
        let resp = self.http.send(NODE, &request(NODE, &input, url)?).await?;
        let data = resp.content.clone();
        let mut out = resp.output();
        out.insert("data".into(), data);
        Ok(out)
    }
}

pub(crate) struct RateLimitedApi {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl RateLimitedApi {
    fn new(http: Arc<Http>) -> Self {
        let mut params = vec![
            ParamInfo::required("url", "the URL, http:// or https://").kind(ParamKind::String),
            ParamInfo::required("requests_per_second", "the bucket's refill rate")
                .kind(ParamKind::Number),
            ParamInfo::optional("burst_size", "requests allowed at once after a quiet spell")
                .kind(ParamKind::Integer)
                .default("1"),
            ParamInfo::optional(
                "rate_limit_key",
                "the bucket: nodes sharing a key share the limit",
            )
            .kind(ParamKind::String)
            .default("the URL's host"),
            ParamInfo::optional(
                "wait_on_rate_limit",
                "wait for a token; false fails at once with a retryable RateLimited",
            )
            .kind(ParamKind::Bool)
            .default("true"),
        ];
        params.extend(request_params());
        RateLimitedApi {
            info: info(
                "RateLimitedAPINode",
                "HTTPRequestNode behind a token bucket shared by every task of the worker.",
                params,
                vec!["response", "status_code", "success", "rate_limit"],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for RateLimitedApi {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "RateLimitedAPINode";
        let url = url_param(NODE, &input, "url")?;
        let rate = crate::params::rate(NODE, &input, "requests_per_second")?;
        let burst = num(&input, "burst_size", 1.0).clamp(1.0, 1e6) as u32;
        let key = input
            .get("rate_limit_key")
            .and_then(Value::as_str)
            .map_or_else(|| host_of(&url), String::from);
        let wait = input
            .get("wait_on_rate_limit")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let req = request(NODE, &input, url)?;
        let queued = Instant::now();
        self.http.take_token(&key, rate, burst, wait).await?;
        let waited = queued.elapsed().as_secs_f64() * 1000.0;
        let mut out = self.http.send(NODE, &req).await?.output();
        out.insert(
            "rate_limit".into(),
            json!({"key": key, "requests_per_second": rate, "burst_size": burst, "waited_ms": (waited * 100.0).round() / 100.0}),
        );
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Alerts.

#[derive(Clone, Copy, PartialEq)]
enum AlertKind {
    Webhook,
    Slack,
    Discord,
}

pub(crate) struct Alert {
    info: NodeTypeInfo,
    http: Arc<Http>,
    kind: AlertKind,
}

fn alert_params(url_name: &'static str) -> Vec<ParamInfo> {
    vec![
        ParamInfo::required(url_name, "where the alert is posted (use a secret reference)").kind(ParamKind::String),
        ParamInfo::optional("title", "the alert's title").kind(ParamKind::String).default("Kora alert"),
        ParamInfo::optional("message", "the alert's text").kind(ParamKind::String),
        ParamInfo::optional("message_template", "text with {name} placeholders filled from context, the inputs, title, alert_type, severity and timestamp")
            .kind(ParamKind::String),
        ParamInfo::optional("alert_templates", "a template per alert_type (over message_template)").kind(ParamKind::Map),
        ParamInfo::optional("alert_type", "success, warning, error, critical or info").kind(ParamKind::String).default("info"),
        ParamInfo::optional("severity", "shown in the alert; defaults to alert_type").kind(ParamKind::String),
        ParamInfo::optional("context", "details shown as fields").kind(ParamKind::Map),
        ParamInfo::optional("alert_levels", "send only alerts whose alert_type or severity is listed").kind(ParamKind::List),
        ParamInfo::optional("rate_limit", "{max_alerts_per_minute, cooldown_seconds}: past the maximum, alerts are suppressed for the cooldown")
            .kind(ParamKind::Map),
        ParamInfo::optional("timeout", "seconds for the post").kind(ParamKind::Seconds).default("10"),
    ]
}

impl Alert {
    fn new(http: Arc<Http>, kind: AlertKind) -> Self {
        let (name, description, mut params) = match kind {
            AlertKind::Webhook => (
                "WebhookAlertNode",
                "Posts an alert as JSON ({title, message, alert_type, severity, context, timestamp}) to any URL.",
                {
                    let mut p = alert_params("url");
                    p.push(ParamInfo::optional("headers", "request headers").kind(ParamKind::Map));
                    p.push(
                        ParamInfo::optional("method", "POST or PUT")
                            .kind(ParamKind::OneOf(&["POST", "PUT"]))
                            .default("POST"),
                    );
                    p
                },
            ),
            AlertKind::Slack => (
                "SlackAlertNode",
                "Posts an alert to a Slack incoming webhook (text plus a colored attachment with context fields).",
                {
                    let mut p = alert_params("webhook_url");
                    p.push(
                        ParamInfo::optional("channel", "channel override").kind(ParamKind::String),
                    );
                    p.push(ParamInfo::optional("username", "sender name").kind(ParamKind::String));
                    p.push(
                        ParamInfo::optional("icon_emoji", "sender icon, e.g. :rotating_light:")
                            .kind(ParamKind::String),
                    );
                    p
                },
            ),
            AlertKind::Discord => (
                "DiscordAlertNode",
                "Posts an alert to a Discord webhook as an embed (accepts 200 and 204).",
                {
                    let mut p = alert_params("webhook_url");
                    p.push(ParamInfo::optional("username", "sender name").kind(ParamKind::String));
                    p.push(
                        ParamInfo::optional("embed", "send an embed; false sends plain text")
                            .kind(ParamKind::Bool)
                            .default("true"),
                    );
                    p.push(
                        ParamInfo::optional(
                            "color",
                            "embed color as an integer; defaults by alert_type",
                        )
                        .kind(ParamKind::Integer),
                    );
                    p.push(
                        ParamInfo::optional(
                            "fields",
                            "extra embed fields: [{name, value, inline}]",
                        )
                        .kind(ParamKind::List),
                    );
                    p.push(
                        ParamInfo::optional("mentions", "user ids, @here or @everyone to mention")
                            .kind(ParamKind::List),
                    );
                    p.push(
                        ParamInfo::optional("thread_id", "post into this thread")
                            .kind(ParamKind::String),
                    );
                    p.push(
                        ParamInfo::optional("footer_text", "embed footer").kind(ParamKind::String),
                    );
                    p
                },
            ),
        };
        params.sort_by_key(|p| !p.required);
        let mut i = info(
            name,
            description,
            params,
            vec!["success", "sent", "status_code", "message", "suppressed"],
        );
        i.open_inputs = true;
        Alert {
            info: i,
            http,
            kind,
        }
    }
}

/// Python `str.format`-style filling of `{name}` from `vars`; unknown names stay as written.
fn fill(template: &str, vars: &Map) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open].replace("}}", "}"));
        let after = &rest[open + 1..];
        if let Some(stripped) = after.strip_prefix('{') {
            out.push('{');
            rest = stripped;
            continue;
        }
        match after.find('}') {
            Some(close) => {
                let key = &after[..close];
                match vars.get(key) {
                    Some(v) => out.push_str(&py_str(v)),
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(&rest.replace("}}", "}"));
    out
}

fn color_of(alert_type: &str) -> (u32, &'static str) {
    match alert_type.to_ascii_lowercase().as_str() {
        "success" => (0x2E_CC71, "good"),
        "warning" => (0xF1_C40F, "warning"),
        "error" => (0xE7_4C3C, "danger"),
        "critical" => (0x99_2D22, "danger"),
        _ => (0x34_98DB, "#3498db"),
    }
}

#[async_trait]
impl Node for Alert {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let node = self.info.name;
        let url_key = if self.kind == AlertKind::Webhook {
            "url"
        } else {
            "webhook_url"
        };
        let url = url_param(node, &input, url_key)?;
        let alert_type = input
            .get("alert_type")
            .and_then(Value::as_str)
            .unwrap_or("info")
            .to_string();
        let severity = input
            .get("severity")
            .and_then(Value::as_str)
            .unwrap_or(&alert_type)
            .to_string();
        let title = input
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("Kora alert")
            .to_string();
        let context = match input.get("context") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let timestamp = chrono_now();
        // Template variables: the inputs, then the context, then the alert's own fields.
        let mut vars = input.clone();
        vars.extend(context.clone());
        for (k, v) in [
            ("title", &title),
            ("alert_type", &alert_type),
            ("severity", &severity),
            ("timestamp", &timestamp),
        ] {
            vars.insert(k.into(), Value::String(v.clone()));
        }
        let template = input
            .get("alert_templates")
            .and_then(|t| t.get(&alert_type))
            .and_then(Value::as_str)
            .or_else(|| input.get("message_template").and_then(Value::as_str))
            .or_else(|| input.get("message").and_then(Value::as_str))
            .unwrap_or("{title}");
        let message = fill(template, &vars);
        let skipped = |reason: &str| {
            let mut out = Map::new();
            out.insert("success".into(), Value::Bool(true));
            out.insert("sent".into(), Value::Bool(false));
            out.insert("suppressed".into(), Value::String(reason.into()));
            out.insert("message".into(), Value::String(message.clone()));
            out
        };
        if let Some(Value::Array(levels)) = input.get("alert_levels")
            && !levels
                .iter()
                .filter_map(Value::as_str)
                .any(|l| l.eq_ignore_ascii_case(&alert_type) || l.eq_ignore_ascii_case(&severity))
        {
            return Ok(skipped("alert_levels"));
        }
        if let Some(Value::Object(rl)) = input.get("rate_limit") {
            let max = rl
                .get("max_alerts_per_minute")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let cooldown = crate::params::seconds_or(node, rl, "cooldown_seconds", 0.0)?;
            let key = format!("{}|{}|{}", node, ctx.node_id, host_of(&url));
            let mut w = self
                .http
                .alerts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let win = w.entry(key).or_default();
            let now = Instant::now();
            if win.quiet_until.is_some_and(|t| now < t) {
                return Ok(skipped("cooldown"));
            }
            win.sent
                .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
            if u64::try_from(win.sent.len()).unwrap_or(u64::MAX) >= max {
                win.quiet_until = now.checked_add(cooldown);
                return Ok(skipped("rate_limit"));
            }
            win.sent.push(now);
        }
        let (color, slack_color) = color_of(&alert_type);
        let fields: Vec<(String, String)> = context
            .iter()
            .map(|(k, v)| (k.clone(), py_str(v)))
            .collect();
        let (url, body) = match self.kind {
            AlertKind::Webhook => (
                url,
                json!({"title": title, "message": message, "alert_type": alert_type, "severity": severity,
                       "context": context, "timestamp": timestamp, "source": "kora", "run_id": ctx.run_id, "node_id": ctx.node_id}),
            ),
            AlertKind::Slack => {
                let mut b = json!({
                    "text": format!("*{title}*\n{message}"),
                    "attachments": [{"color": slack_color, "title": title, "text": message, "ts": now_secs(),
                        "fields": fields.iter().map(|(k, v)| json!({"title": k, "value": v, "short": v.len() < 40})).collect::<Vec<_>>()}],
                });
                for k in ["channel", "username", "icon_emoji"] {
                    if let Some(v) = input.get(k).filter(|v| !v.is_null()) {
                        b[k] = v.clone();
                    }
                }
                (url, b)
            }
            AlertKind::Discord => {
                let mentions: Vec<String> = match input.get("mentions") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|m| {
                            let m = py_str(m);
                            if m.starts_with('@') {
                                m
                            } else {
                                format!("<@{m}>")
                            }
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let prefix = if mentions.is_empty() {
                    String::new()
                } else {
                    format!("{} ", mentions.join(" "))
                };
                let embed = input.get("embed").and_then(Value::as_bool).unwrap_or(true);
                let mut b = if embed {
                    let mut f: Vec<Value> = fields
                        .iter()
                        .map(|(k, v)| json!({"name": k, "value": v, "inline": v.len() < 40}))
                        .collect();
                    if let Some(Value::Array(extra)) = input.get("fields") {
                        f.extend(extra.iter().cloned());
                    }
                    let mut e = json!({"title": title, "description": message,
                        "color": input.get("color").and_then(Value::as_u64).unwrap_or(u64::from(color)),
                        "fields": f, "timestamp": timestamp});
                    if let Some(t) = input.get("footer_text").and_then(Value::as_str) {
                        e["footer"] = json!({"text": t});
                    }
                    json!({"content": prefix.trim_end(), "embeds": [e]})
                } else {
                    json!({"content": format!("{prefix}**{title}**\n{message}")})
                };
                if let Some(u) = input.get("username").filter(|v| !v.is_null()) {
                    b["username"] = u.clone();
                }
                let url = match input.get("thread_id").map(py_str).filter(|t| !t.is_empty()) {
                    Some(t) => format!(
                        "{url}{}thread_id={t}",
                        if url.contains('?') { '&' } else { '?' }
                    ),
                    None => url,
                };
                (url, b)
            }
        };
        let mut req_input = Map::new();
        req_input.insert(
            "method".into(),
            input
                .get("method")
                .cloned()
                .unwrap_or(Value::String("POST".into())),
        );
        req_input.insert("json_data".into(), body);
        if let Some(h) = input.get("headers") {
            req_input.insert("headers".into(), h.clone());
        }
        req_input.insert(
            "timeout".into(),
            input.get("timeout").cloned().unwrap_or(Value::from(10)),
        );
        let resp = self
            .http
            .send(node, &request(node, &req_input, url)?)
            .await?;
        match resp.status {
            200..=299 => {}
            429 | 500..=599 => {
                return Err(NodeError::retryable(
                    "AlertDeliveryError",
                    format!(
                        "{node}: the webhook answered {}; the alert was not delivered",
                        resp.status
                    ),
                )
                .retry_after(resp.retry_after()));
            }
            s => {
                return Err(NodeError::permanent(
                    "AlertDeliveryError",
                    format!(
                        "{node}: the webhook refused the alert with {s}: {}",
                        py_str(&resp.content)
                    ),
                ));
            }
        }
        let mut out = Map::new();
        out.insert("success".into(), Value::Bool(true));
        out.insert("sent".into(), Value::Bool(true));
        out.insert("status_code".into(), Value::from(resp.status));
        out.insert("message".into(), Value::String(message));
        out.insert("suppressed".into(), Value::Null);
        Ok(out)
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Now as ISO 8601 UTC, e.g. 2026-12-01T03:04:05Z.
fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct LlmAgent {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl LlmAgent {
    fn new(http: Arc<Http>) -> Self {
        LlmAgent {
            info: info(
                "LLMAgentNode",
                "Asks an OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama, LiteLLM, ...) and outputs the reply.",
                vec![
                    ParamInfo::required("model", "the model name").kind(ParamKind::String),
                    ParamInfo::optional("base_url", "the API's base URL (…/v1)")
                        .kind(ParamKind::String)
                        .default("https://api.openai.com/v1"),
                    ParamInfo::optional("api_key", "bearer token (use a secret reference)")
                        .kind(ParamKind::String),
                    ParamInfo::optional("messages", "the conversation: [{role, content}]")
                        .kind(ParamKind::List),
                    ParamInfo::optional("prompt", "a user message appended to messages")
                        .kind(ParamKind::String),
                    ParamInfo::optional("system_prompt", "a system message put first")
                        .kind(ParamKind::String),
                    ParamInfo::optional(
                        "generation_config",
                        "temperature, max_tokens, top_p, stop, seed, ... passed through",
                    )
                    .kind(ParamKind::Map),
                    ParamInfo::optional(
                        "provider",
                        "informational; any OpenAI-compatible server works",
                    )
                    .kind(ParamKind::String)
                    .default("openai"),
                    ParamInfo::optional("conversation_id", "echoed in the output")
                        .kind(ParamKind::String),
                    ParamInfo::optional("timeout", "seconds for the call")
                        .kind(ParamKind::Seconds)
                        .default("120"),
                ],
                vec![
                    "success",
                    "response",
                    "usage",
                    "conversation_id",
                    "metadata",
                ],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for LlmAgent {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "LLMAgentNode";
        let model = match input.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(input_error(
                    NODE,
                    "required parameter 'model' must be a model name",
                ));
            }
        };
        let base = input
            .get("base_url")
            .and_then(Value::as_str)
            .unwrap_or("https://api.openai.com/v1");
        let mut messages: Vec<Value> = Vec::new();
        if let Some(s) = input.get("system_prompt").and_then(Value::as_str) {
            messages.push(json!({"role": "system", "content": s}));
        }
        match input.get("messages") {
            Some(Value::Array(a)) => {
                for (i, m) in a.iter().enumerate() {
                    if m.get("role").and_then(Value::as_str).is_none() || m.get("content").is_none()
                    {
                        return Err(input_error(
                            NODE,
                            format!("messages[{i}] must be {{\"role\", \"content\"}}, found {m}"),
                        ));
                    }
                    messages.push(m.clone());
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => {
                return Err(input_error(
                    NODE,
                    format!("messages must be a list, found {other}"),
                ));
            }
        }
        if let Some(p) = input.get("prompt").filter(|p| !p.is_null()) {
            messages.push(json!({"role": "user", "content": py_str(p)}));
        }
        if !messages.iter().any(|m| m["role"] != "system") {
            return Err(input_error(NODE, "nothing to ask: give messages or prompt"));
        }
        let mut body = json!({"model": model, "messages": messages});
        if let Some(Value::Object(g)) = input.get("generation_config") {
            for (k, v) in g {
                body[k] = v.clone();
            }
        }
        let mut req_input = Map::new();
        req_input.insert("method".into(), Value::String("POST".into()));
        req_input.insert("json_data".into(), body);
        req_input.insert("response_format".into(), Value::String("json".into()));
        req_input.insert(
            "timeout".into(),
            input.get("timeout").cloned().unwrap_or(Value::from(120)),
        );
        if let Some(k) = input
            .get("api_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
        {
            req_input.insert("auth_type".into(), Value::String("bearer".into()));
            req_input.insert("auth_token".into(), Value::String(k.into()));
        }
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let resp = self
            .http
            .send(NODE, &request(NODE, &req_input, url)?)
            .await?;
        let api_error = || {
            resp.content
                .get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .map_or_else(|| py_str(&resp.content), py_str)
        };
        match resp.status {
            200..=299 => {}
            408 | 409 | 429 | 500..=599 => {
                return Err(NodeError::retryable(
                    "LLMError",
                    format!("{NODE}: the API answered {}: {}", resp.status, api_error()),
                )
                .retry_after(resp.retry_after()));
            }
            s => {
                return Err(NodeError::permanent(
                    "LLMError",
                    format!("{NODE}: the API refused the request ({s}): {}", api_error()),
                ));
            }
        }
        let choice = resp
            .content
            .get("choices")
            .and_then(|c| c.get(0))
            .cloned()
            .unwrap_or(Value::Null);
        let Some(message) = choice.get("message") else {
            return Err(NodeError::permanent(
                "LLMError",
                format!(
                    "{NODE}: the reply has no choices[0].message: {}",
                    resp.content
                ),
            ));
        };
        let mut response = json!({
            "content": message.get("content").cloned().unwrap_or(Value::Null),
            "role": message.get("role").cloned().unwrap_or(Value::String("assistant".into())),
            "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
        });
        if let Some(t) = message.get("tool_calls") {
            response["tool_calls"] = t.clone();
        }
        let mut out = Map::new();
        out.insert("success".into(), Value::Bool(true));
        out.insert("response".into(), response);
        out.insert(
            "usage".into(),
            resp.content.get("usage").cloned().unwrap_or(json!({})),
        );
        out.insert(
            "conversation_id".into(),
            input
                .get("conversation_id")
                .cloned()
                .unwrap_or_else(|| Value::String(format!("{}:{}", ctx.run_id, ctx.node_id))),
        );
        out.insert(
            "metadata".into(),
            json!({"model": resp.content.get("model").cloned().unwrap_or(Value::String(model)), "id": resp.content.get("id"),
                   "provider": input.get("provider").cloned().unwrap_or(Value::String("openai".into())),
                   "latency_ms": resp.elapsed_ms}),
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_like_str_format() {
        let vars: Map = json!({"severity": "high", "n": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            fill("{severity}: {n} left {{x}} {missing}", &vars),
            "high: 3 left {x} {missing}"
        );
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(
            base64("Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64("ab"), "YWI=");
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let d = parse_retry_after(&soon).unwrap();
        assert!((85..=90).contains(&d.as_secs()), "{d:?}");
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            None,
            "in the past"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
    }
}

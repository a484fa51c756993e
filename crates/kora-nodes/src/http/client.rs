//! The shared client: a request's parameters, sending it (retries, Retry-After), and its response.

use std::time::{Duration, Instant};

use kora_model::catalog::{ParamInfo, ParamKind};
use kora_model::error_type;
use kora_model::value::py_str;
use kora_model::{Map, Value};
use serde_json::json;

use crate::NodeError;
use crate::builtin::input_error;

use super::Http;

/// The wait before retry `attempt + 1`: `backoff` doubling each time, at most [`MAX_PAUSE`].
fn backoff_pause(backoff: Duration, attempt: u32) -> Duration {
    backoff
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(MAX_PAUSE)
}

/// The longest a node waits between its own retries (a backoff, a Retry-After); a longer
/// wait is the coordinator's to keep.
const MAX_PAUSE: Duration = Duration::from_secs(60);

pub(super) const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub(super) fn request_params() -> Vec<ParamInfo> {
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
        ParamInfo::optional("retry_backoff", "seconds before the first retry, doubling each time, at most 60 (Retry-After wins)")
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

pub(crate) enum Body {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
    Raw(String),
}

pub(crate) struct Request {
    pub(crate) method: reqwest::Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Body,
    pub(crate) timeout: Duration,
    pub(crate) verify: bool,
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) format: String,
}

pub(super) fn str_map(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), py_str(v)))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn num(input: &Map, k: &str, default: f64) -> f64 {
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
        timeout: crate::params::seconds_or(node, input, "timeout", 30.0)?
            .clamp(Duration::from_millis(1), Duration::from_secs(3600)),
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
        // Checked like every duration (refused when negative or not a number, naming it).
        backoff: crate::params::seconds_or(node, input, "retry_backoff", 0.5)?,
        format: input
            .get("response_format")
            .and_then(Value::as_str)
            .unwrap_or("auto")
            .to_ascii_lowercase(),
    })
}

pub(super) fn base64(s: &str) -> String {
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
    pub(crate) headers: Map,
    pub(crate) content_type: String,
    pub(crate) content: Value,
    pub(crate) elapsed_ms: f64,
}

impl Response {
    pub(crate) fn output(self) -> Map {
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
pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
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
pub(super) fn retry_after(r: &reqwest::Response) -> Option<Duration> {
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
        let client = self.client(req.verify);
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
            let pause = backoff_pause(req.backoff, attempt);
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
                let wait = retry_after(&r).unwrap_or(pause).min(MAX_PAUSE);
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
pub(crate) fn host_of(url: &str) -> String {
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
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub(super) fn url_param(node: &str, input: &Map, k: &str) -> Result<String, NodeError> {
    match input.get(k) {
        Some(Value::String(u)) if !u.is_empty() => Ok(u.clone()),
        _ => Err(input_error(
            node,
            format!("required parameter '{k}' must be a URL string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_retry_pause_doubles_up_to_a_minute_and_never_panics() {
        use std::time::Duration;
        let half = Duration::from_millis(500);
        assert_eq!(super::backoff_pause(half, 0), half);
        assert_eq!(super::backoff_pause(half, 2), Duration::from_secs(2));
        assert_eq!(
            super::backoff_pause(Duration::from_secs(60), 19),
            super::MAX_PAUSE
        );
        assert_eq!(super::backoff_pause(half, u32::MAX), super::MAX_PAUSE);
        assert_eq!(
            super::backoff_pause(Duration::ZERO, u32::MAX),
            Duration::ZERO
        );
    }

    use super::*;

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

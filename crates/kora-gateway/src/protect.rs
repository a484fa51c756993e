//! What wraps every request: its id and client address, the per-address rate limit, the
//! request timeout, security headers, the access log (method, route, status, time, caller;
//! never a header or a body) and the request metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use crate::error::ApiError;
use crate::metrics::{RequestLabels, RouteLabels};
use crate::state::{AppState, RequestCtx};

/// Where the authenticated caller is noted for the access log.
#[derive(Clone, Default)]
pub(crate) struct ActorSlot(Arc<Mutex<Option<(String, String)>>>);

impl ActorSlot {
    pub(crate) fn set(&self, actor: &str, tenant: &str) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some((actor.to_string(), tenant.to_string()));
        }
    }
    fn get(&self) -> (String, String) {
        self.0
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_else(|| ("-".into(), "-".into()))
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's request id if it is short and plain, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), String::from)
}

/// The client: the peer, unless it is a trusted proxy; then the `X-Forwarded-For` hops are
/// read from the right, skipping trusted proxies, and the first other one is the client.
pub(crate) fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
}

/// How long this request may take: the configured timeout, plus its `?wait=` if it has one.
fn time_limit(st: &AppState, req: &Request) -> Option<Duration> {
    if req.uri().path().ends_with("/events") {
        // A stream: its headers come at once, and the body lasts as long as the run.
        return None;
    }
    let wait = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|w| st.cfg.wait_of(w))
        .unwrap_or(Duration::ZERO);
    Some(st.cfg.request_timeout + wait)
}

/// Whether the path or the query decodes to a NUL character (nothing may hold one).
fn has_nul(uri: &axum::http::Uri) -> bool {
    let encoded = |s: &str| s.to_ascii_lowercase().contains("%00");
    encoded(uri.path()) || uri.query().is_some_and(encoded)
}

fn security_headers(h: &mut HeaderMap, path: &str, tls: bool) {
    let set = |h: &mut HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if path == "/ui" || path.starts_with("/ui/") {
        set(h, header::CONTENT_SECURITY_POLICY, crate::ui::CSP);
    } else if path.starts_with("/docs") {
        set(
            h,
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        );
    } else {
        set(
            h,
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        );
        if !h.contains_key(header::CACHE_CONTROL) {
            set(h, header::CACHE_CONTROL, "no-store");
        }
    }
    if tls {
        set(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
}

pub(crate) async fn wrap(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let ctx = RequestCtx {
        request_id: request_id(req.headers()),
        client: client_addr(peer, req.headers(), &st.trusted_proxies),
        traceparent: req
            .headers()
            .get(kora_model::trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(kora_model::trace::TraceParent::parse),
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let slot = ActorSlot::default();
    req.extensions_mut().insert(ctx.clone());
    req.extensions_mut().insert(slot.clone());
    let limit = time_limit(&st, &req);
    let mut resp = if let Err(e) = st.limits.check_ip(ctx.client) {
        e.into_response()
    } else if has_nul(req.uri()) {
        ApiError::invalid("the path or query holds a NUL character (%00)").into_response()
    } else {
        match limit {
            Some(l) => match tokio::time::timeout(l, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    axum::http::StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!(
                        "the request took over {} (gateway.request_timeout); what it asked may still happen",
                        kora_model::duration::format(l)
                    ),
                )
                .into_response(),
            },
            None => next.run(req).await,
        }
    };
    let status = resp.status().as_u16();
    if status == 429 {
        st.metrics.rate_limited.inc();
    }
    let h = resp.headers_mut();
    security_headers(h, &path, st.cfg.tls.enabled());
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert(REQUEST_ID, v);
    }
    let took = started.elapsed();
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.clone(),
            status,
        })
        .inc();
    st.metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(took.as_secs_f64());
    let (actor, tenant) = slot.get();
    tracing::info!(
        target: "kora_gateway::access",
        request_id = %ctx.request_id,
        client = %ctx.client,
        %method,
        %route,
        status,
        ms = took.as_secs_f64() * 1000.0,
        %actor,
        %tenant,
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap_or_else(|_| IpNet::default())];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.7"),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let stranger: IpAddr = "8.8.8.8".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            client_addr(stranger, &h, &trusted),
            stranger,
            "header ignored"
        );
        assert_eq!(
            client_addr(proxy, &h, &trusted).to_string(),
            "1.2.3.4",
            "the hop before the trusted ones, not the spoofable leftmost"
        );
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id\"<x>"));
        assert_ne!(request_id(&h), "bad id\"<x>");
    }
}

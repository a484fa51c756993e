//! Kora's HTTP gateway: the authenticated, multi-tenant REST API over the control API
//! (`kora_client`): runs (submit, wait, read, list, cancel, retry, events), registered
//! workflows, dead letters, triggers and webhooks, API keys and the audit trail; `/healthz`,
//! `/readyz`, `/metrics`, `/openapi.json`, the dashboard at `/ui/` ([`ui`]) and (when enabled)
//! `/docs`.
//!
//! Owns: the `[gateway]` configuration, authentication (API keys as keyed hashes, JWTs with
//! HS256 or a JWKS), scopes and roles ([`scopes`]), tenant scoping, rate limits and quotas,
//! the API audit trail, security headers, the OpenAPI document, and webhook signatures.
//!
//! Must not: hold state of its own (any number run behind a load balancer; keys, workflows and
//! the audit trail are in the ledger) or decide anything about a run: it submits requests and
//! asks the coordinator through `kora_client`, as the CLI does.

mod audit;
pub mod auth;
pub mod config;
mod error;
mod extract;
pub mod hooks;
pub mod keys;
mod limits;
pub mod metrics;
mod openapi;
pub mod policy;
mod protect;
mod routes;
pub mod scopes;
mod state;
mod ui;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kora_broker::Broker;
use kora_model::subjects::Subjects;
use kora_store::Store;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

pub use config::GatewayConfig;
pub use error::Error;
pub use keys::{CreateKey, new_key};
pub use metrics::GatewayMetrics;

use crate::error::ApiError;
use crate::state::{AppState, RequestCtx};

/// What the gateway serves from.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub subjects: Subjects,
    /// The node types runs may use (submissions are checked against them).
    pub catalog: Arc<dyn kora_model::Catalog + Send + Sync>,
    /// The process's metrics, served on `/metrics`.
    pub registry: Option<Arc<prometheus_client::registry::Registry>>,
    pub metrics: Arc<GatewayMetrics>,
}

/// The OpenAPI document (JSON), as `/openapi.json` serves it.
pub fn openapi_json() -> String {
    let (_, doc) = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::api())
        .split_for_parts();
    let mut doc = doc;
    openapi::add_links(&mut doc);
    openapi::add_common_responses(&mut doc);
    doc.to_pretty_json().unwrap_or_default()
}

async fn metrics(State(st): State<AppState>, ctx: RequestCtx) -> Response {
    if let Err(e) = st.require_admin_network(&ctx) {
        return e.into_response();
    }
    let Some(registry) = &st.registry else {
        return ApiError::not_found("this process exports no metrics").into_response();
    };
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("cannot encode metrics: {e}")).into_response(),
    }
}

/// The gateway's router (everything but the listener).
pub fn app(cfg: &GatewayConfig, deps: Deps) -> Result<Router, Error> {
    cfg.validate_for_serving().map_err(Error::Config)?;
    let control = kora_client::Control::new(
        Arc::clone(&deps.store),
        Arc::clone(&deps.broker),
        deps.subjects.clone(),
    );
    let st = AppState {
        cfg: Arc::new(cfg.clone()),
        control,
        auth: Arc::new(auth::Authenticator::new(cfg, Arc::clone(&deps.store))),
        limits: Arc::new(limits::Limits::new(cfg, Arc::clone(&deps.store))),
        audit: audit::AuditWriter::start(Arc::clone(&deps.store)),
        metrics: deps.metrics,
        admin_allow: Arc::new(
            config::parse_nets(&cfg.admin_allow, "gateway.admin_allow").map_err(Error::Config)?,
        ),
        trusted_proxies: Arc::new(
            config::parse_nets(&cfg.trusted_proxies, "gateway.trusted_proxies")
                .map_err(Error::Config)?,
        ),
        registry: deps.registry,
        catalog: deps.catalog,
        workers: Arc::new(workers::Workers::default()),
    };
    workers::Workers::watch(
        &st.workers,
        Arc::clone(&deps.broker),
        deps.subjects.worker_status(),
    );
    let (api, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::api())
        .split_for_parts();
    openapi::add_links(&mut doc);
    openapi::add_common_responses(&mut doc);
    let spec = Arc::new(
        doc.to_pretty_json()
            .map_err(|e| Error::Internal(e.to_string()))?,
    );
    let mut router = api
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || {
                let spec = Arc::clone(&spec);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        (*spec).clone(),
                    )
                }
            }),
        )
        .fallback(|| async {
            ApiError::not_found("no such route: the API is under /v1 (see /openapi.json)")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid",
                "this route does not take that method (see /openapi.json)",
            )
        });
    if cfg.ui {
        router = router.merge(ui::router());
    }
    if cfg.docs {
        router =
            router.merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/docs/openapi.json", doc));
    }
    let cors = if cfg.cors_origins.is_empty() {
        None
    } else {
        let origins: Vec<HeaderValue> = cfg
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::HeaderName::from_static("x-request-id"),
                    header::HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    header::HeaderName::from_static("x-request-id"),
                    header::RETRY_AFTER,
                ])
                .max_age(Duration::from_secs(600)),
        )
    };
    let mut router = router
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            protect::wrap,
        ))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes));
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    let limits = Arc::clone(&st.limits);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if Arc::strong_count(&limits) == 1 {
                return;
            }
            limits.shrink();
        }
    });
    Ok(router.with_state(st))
}

/// Serves the gateway on `cfg.addr` until `shutdown` is cancelled (then stops taking requests
/// and lets the ones in flight finish).
pub async fn run(cfg: GatewayConfig, deps: Deps, shutdown: CancellationToken) -> Result<(), Error> {
    let router = app(&cfg, deps)?;
    let addr: SocketAddr = cfg
        .addr
        .parse()
        .map_err(|_| Error::Config(format!("gateway.addr {:?} is not an address", cfg.addr)))?;
    let make = router.into_make_service_with_connect_info::<SocketAddr>();
    if cfg.tls.enabled() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(
            &cfg.tls.cert_path,
            &cfg.tls.key_path,
        )
        .await
        .map_err(|e| {
            Error::Tls(format!(
                "cannot load {} and {}: {e}",
                cfg.tls.cert_path, cfg.tls.key_path
            ))
        })?;
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stopper.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        tracing::info!(addr = %cfg.addr, "gateway serving HTTPS");
        axum_server::bind_rustls(addr, tls)
            .handle(handle)
            .serve(make)
            .await
            .map_err(Error::Serve)
    } else {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: cfg.addr.clone(),
                source,
            })?;
        tracing::info!(addr = %cfg.addr, "gateway serving HTTP");
        axum::serve(listener, make)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(Error::Serve)
    }
}

#[cfg(test)]
mod tests {
    fn doc() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/gateway.md");
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// docs/gateway.md's scope table is the one in `scopes.rs`: every scope, with exactly the
    /// roles that hold it.
    #[test]
    fn the_docs_list_every_scope_and_role() {
        let doc = doc();
        for scope in crate::scopes::Scope::ALL {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", scope.as_str())))
                .unwrap_or_else(|| panic!("docs/gateway.md has no row for {}", scope.as_str()));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            // "", scope, allows, viewer, operator, admin, ""
            for (i, role) in crate::scopes::ROLES.iter().enumerate() {
                let documented = cells.get(3 + i) == Some(&"yes");
                let held = crate::scopes::role_scopes(role).is_some_and(|s| s.contains(&scope));
                assert_eq!(
                    documented,
                    held,
                    "docs/gateway.md says {role} {} {}",
                    if documented { "holds" } else { "lacks" },
                    scope.as_str()
                );
            }
        }
    }

    /// Every route of the OpenAPI document has its row in docs/gateway.md.
    #[test]
    fn the_docs_list_every_route() {
        let doc = doc();
        let api: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let mut missing = Vec::new();
        for (path, ops) in api["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                let row = format!("| {} | `{path}` |", method.to_uppercase());
                if !doc.contains(&row) {
                    missing.push(row);
                }
            }
        }
        assert!(missing.is_empty(), "docs/gateway.md lacks: {missing:?}");
    }
    /// Every `$ref` in the document names a schema it defines: a client generator or a fuzzer
    /// given the document must not meet a dangling reference.
    #[test]
    fn every_schema_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        fn walk(v: &serde_json::Value, refs: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                        refs.push(r.clone());
                    }
                    m.values().for_each(|x| walk(x, refs));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, refs)),
                _ => {}
            }
        }
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        let dangling: Vec<_> = refs
            .iter()
            .filter(|r| {
                let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
                !schemas.contains_key(name)
            })
            .collect();
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }
}

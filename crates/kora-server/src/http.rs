//! The operator endpoint of `kora serve` (`metrics.addr`): `GET /metrics` (the process's
//! metrics in OpenMetrics text), `GET /healthz` (liveness: 200 while every role runs, 503 with
//! each role's state otherwise) and `GET /readyz` (readiness: 200 when NATS, the ledger and
//! the roles' consumers answer and no role is stopping; 503 naming what failed). `router` is
//! testable without a socket.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::health::Health;
use crate::ready::Readiness;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Arc<Health>,
    ready: Option<Arc<Readiness>>,
}

/// The endpoint's routes; without `ready`, `/readyz` answers as `/healthz` does.
pub fn router(
    registry: Arc<Registry>,
    health: Arc<Health>,
    ready: Option<Arc<Readiness>>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /readyz\n",
            )
        })
        .with_state(AppState {
            registry,
            health,
            ready,
        })
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let running = s.health.healthy();
    let checks = match &s.ready {
        Some(r) => r.checks().await,
        None => Vec::new(),
    };
    let ready = running && checks.iter().all(|c| c.ok);
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "roles_running": running,
        "checks": checks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {e}\n"),
        ),
    }
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let healthy = s.health.healthy();
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "roles": s.health.snapshot(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

/// Binds `addr` (fails at start-up, not later, when the port is taken).
pub async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::Config(format!(
            "cannot listen on {addr} for /metrics and /healthz: {e} (set metrics.addr or --metrics-addr to a free address, or \"\" to turn it off)"
        ))
    })
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::State as RoleState;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        use tower_like::call;
        call(router, path).await
    }

    /// A request through the router without a socket.
    mod tower_like {
        use axum::Router;
        use axum::body::Body;
        use axum::http::{Request, StatusCode};

        pub(super) async fn call(router: Router, path: &str) -> (StatusCode, String) {
            use tower::ServiceExt;
            let response = router
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    #[tokio::test]
    async fn metrics_and_health_are_served() {
        let mut registry = Registry::with_prefix("kora");
        let m = kora_coordinator::Metrics::registered(&mut registry);
        m.runs_started.inc();
        m.ledger_commit_seconds.observe(0.002);
        let health = Arc::new(Health::default());
        health.set("coordinator", RoleState::Running, None);
        let r = router(Arc::new(registry), Arc::clone(&health), None);
        let (status, body) = get(r.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("kora_runs_started_total 1\n"), "{body}");
        assert!(
            body.contains("kora_ledger_commit_seconds_count 1\n"),
            "{body}"
        );
        assert!(
            body.contains("kora_ledger_commit_seconds_bucket{le=\"0.002\"} 1"),
            "{body}"
        );
        let (status, body) = get(r.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = get(r.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        health.set(
            "coordinator",
            RoleState::Failed,
            Some("ledger unreachable".into()),
        );
        let (status, body) = get(r.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("ledger unreachable"), "{body}");
        assert_eq!(
            get(r.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(r, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}

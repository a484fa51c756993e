//! `GET /healthz` (the gateway answers) and `GET /readyz` (and can reach NATS and the ledger):
//! for load balancers and orchestrators, no credential.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `unavailable`.
    pub(crate) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nats: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ledger: Option<String>,
}

/// The gateway is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz",
    responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        nats: None,
        ledger: None,
    })
}

/// The gateway can serve: NATS and the ledger answer.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn readyz(State(st): State<AppState>) -> Response {
    let subjects = st.control.subjects();
    let nats = st
        .control
        .broker()
        .stream_info(&subjects.stream_runs())
        .await
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| format!("unreachable: {e}"));
    let ledger = st
        .store()
        .run("readyz-probe")
        .await
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| format!("unreachable: {e}"));
    let ok = nats == "ok" && ledger == "ok";
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: if ok { "ok" } else { "unavailable" }.into(),
            nats: Some(nats),
            ledger: Some(ledger),
        }),
    )
        .into_response()
}

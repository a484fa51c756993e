//! The gateway's errors: [`Error`] for what stops it (configuration, the listener), and
//! [`ApiError`], the one JSON shape every failed request is answered with:
//! `{"error": {"code", "message", "details"?}}`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error(
        "cannot listen on {addr} (set gateway.addr or KORA_GATEWAY__ADDR to a free address): {source}"
    )]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("gateway.tls: {0}")]
    Tls(String),
    #[error("the gateway's listener failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Internal(String),
}

/// A failed request's answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Box<serde_json::Value>>,
    /// Seconds, for `429` and `503`.
    pub(crate) retry_after: Option<u64>,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, for programs: `unauthenticated`, `forbidden`, `not_found`, `invalid`,
    /// `conflict`, `rate_limited`, `payload_too_large`, `timeout`, `unavailable`, `internal`.
    pub(crate) code: String,
    /// For people: what went wrong and what to do.
    pub(crate) message: String,
    /// More, where there is more (each problem of an invalid workflow, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }
    pub(crate) fn details(mut self, d: serde_json::Value) -> Self {
        self.details = Some(Box::new(d));
        self
    }
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub(crate) fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).retry_after(retry_after)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(5)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details.map(|d| *d),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kora\""),
            );
        }
        resp
    }
}

impl From<kora_client::Error> for ApiError {
    fn from(e: kora_client::Error) -> Self {
        use kora_client::Error as E;
        match e {
            E::NotFound(m) => ApiError::not_found(m),
            E::Invalid(m) => ApiError::unprocessable(m),
            E::Conflict(m) => ApiError::conflict(m),
            E::NoAnswer(m) => ApiError::unavailable(m),
            E::Timeout(m) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", m),
            E::Store(e) => ApiError::from(e),
            E::Broker(e) => {
                ApiError::unavailable(format!("the message broker is not reachable: {e}"))
            }
            E::Wire(e) => ApiError::internal(format!("cannot encode a message: {e}")),
        }
    }
}

impl From<kora_store::Error> for ApiError {
    fn from(e: kora_store::Error) -> Self {
        match e {
            kora_store::Error::Taken(m) => ApiError::conflict(m),
            kora_store::Error::Db(e) => {
                tracing::warn!(error = %e, "ledger error");
                ApiError::unavailable("the ledger is not reachable; try again")
            }
            e => ApiError::internal(e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is over the gateway's limit (gateway.max_body_bytes)",
                )
            }
            other => ApiError::invalid(format!(
                "the request body is not valid: {}",
                other.body_text()
            )),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid(format!("the query string is not valid: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::invalid(format!("the path is not valid: {}", r.body_text()))
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

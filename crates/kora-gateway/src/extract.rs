//! The extractors of every route (JSON body, query string, path), so that a request they
//! cannot read gets an error in the API's shape: a body over the limit is `413`, a body that is
//! not JSON `415`, anything else malformed `400`; an empty body is the request's defaults where
//! a route allows that.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
pub(crate) struct Body<T>(pub T);

/// A JSON body, or `T::default()` when the request has none.
pub(crate) struct OptionalBody<T>(pub T);

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid =
        |e: serde_json::Error| ApiError::invalid(format!("the request body is not valid: {e}"));
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
    // The ledger cannot store a NUL character; refused here, named.
    if let Some(path) = kora_model::value::find_nul(&v) {
        return Err(ApiError::invalid(format!(
            "the request body holds a NUL character (\\u0000) at {path}, which cannot be stored"
        )));
    }
    serde_json::from_value(v).map_err(invalid)
}

async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), ApiError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or_default().trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    let bytes = Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is over the gateway's limit (gateway.max_body_bytes)",
            )
        } else {
            ApiError::invalid(format!("cannot read the request body: {}", r.body_text()))
        }
    })?;
    Ok((json, bytes))
}

fn not_json() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid",
        "send the body as JSON with Content-Type: application/json",
    )
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (json, bytes) = read(req, state).await?;
        if !json {
            return Err(not_json());
        }
        parse(&bytes).map(Body)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (json, bytes) = read(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        parse(&bytes).map(OptionalBody)
    }
}

/// A query string, read like axum's `Query`.
pub(crate) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r) => Err(ApiError::invalid(format!(
                "the query string is not valid: {}",
                r.body_text()
            ))),
        }
    }
}

/// The path's parameters, read like axum's `Path`.
pub(crate) struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(r) => Err(ApiError::invalid(format!(
                "the path is not valid: {}",
                r.body_text()
            ))),
        }
    }
}

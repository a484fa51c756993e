//! `POST /v1/hooks/{trigger}`: a webhook delivery starts a run of the trigger's workflow whose
//! parameters are the trigger's, then the body's (a JSON object's keys, else the body as
//! `event`). No bearer credential: the request's signature is the credential.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kora_client::Submission;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Path;
use crate::hooks::{self, Refused};
use crate::state::{AppState, RequestCtx};

/// Namespace of webhook run ids (UUIDv5 of the trigger and the signature).
const HOOK_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b6f_7261_686f_4f6b_8000_7765_6268_6f6b);

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Delivered {
    pub(crate) run_id: String,
    /// `true` when this exact delivery (same signature) was seen before: the same run.
    pub(crate) duplicate: bool,
}

fn refused(why: Refused) -> ApiError {
    match why {
        Refused::Missing => ApiError::unauthenticated(format!(
            "sign the request: send {} (unix seconds) and {} (v1=<hex HMAC-SHA256 of \"<timestamp>.<body>\">)",
            hooks::TIMESTAMP_HEADER,
            hooks::SIGNATURE_HEADER
        )),
        Refused::Stale => ApiError::unauthenticated(
            "the signed timestamp is too old or in the future (check the sender's clock; replays are refused)",
        ),
        Refused::BadSignature => ApiError::unauthenticated("the signature does not match"),
    }
}

/// Deliver a webhook.
///
/// Starts a run of the trigger's workflow. Sign `<timestamp>.<body>` with HMAC-SHA256 under
/// the secret the trigger was created with, and send `X-Kora-Timestamp` (unix seconds) and
/// `X-Kora-Signature: v1=<hex>`. A delivery repeated with the same signature is the same run.
#[utoipa::path(post, path = "/v1/hooks/{trigger}", tag = "triggers", operation_id = "deliver_webhook",
    params(("trigger" = String, Path, description = "the webhook trigger's name"),
        ("X-Kora-Timestamp" = String, Header, description = "unix seconds"),
        ("X-Kora-Signature" = String, Header, description = "v1=<hex HMAC-SHA256>")),
    request_body(content = Object, description = "the run's parameters (any JSON, or text)"),
    responses((status = 202, body = Delivered), (status = 200, description = "a repeated delivery", body = Delivered),
        (status = 401, description = "unsigned, stale or wrongly signed", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, description = "the trigger is paused", body = ErrorBody)))]
pub(crate) async fn deliver(
    State(st): State<AppState>,
    ctx: RequestCtx,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let (Some(ts), Some(sig)) = (
        header(hooks::TIMESTAMP_HEADER),
        header(hooks::SIGNATURE_HEADER),
    ) else {
        return Err(refused(Refused::Missing));
    };
    // The trigger is looked up across tenants: its name is unique.
    let not_found = || ApiError::not_found(format!("no webhook trigger {name:?}"));
    let t = st
        .control
        .triggers()
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(not_found)?;
    let Some(salt) = t.webhook_salt.as_deref() else {
        return Err(not_found());
    };
    let secret = hooks::secret(st.cfg.key_pepper.expose(), &t.name, salt);
    let now = kora_model::now_ms() / 1000;
    hooks::verify(
        &secret,
        &ts,
        &sig,
        &body,
        now,
        st.cfg.webhook_tolerance.as_secs(),
    )
    .map_err(|why| {
        st.metrics.auth_failure("webhook_signature");
        refused(why)
    })?;
    let who = Principal {
        tenant: t.tenant.clone(),
        actor: format!("webhook:{name}"),
        role: String::new(),
        scopes: Default::default(),
    };
    let run_id =
        uuid::Uuid::new_v5(&HOOK_NAMESPACE, format!("hook:{name}:{sig}").as_bytes()).to_string();
    let done = async {
        if t.paused {
            return Err(ApiError::unavailable(format!(
                "trigger {name:?} is paused; deliver again later"
            )));
        }
        if st.store().run(&run_id).await?.is_some() {
            return Ok((
                StatusCode::OK,
                Json(Delivered {
                    run_id: run_id.clone(),
                    duplicate: true,
                }),
            )
                .into_response());
        }
        st.limits.check_submission(&t.tenant).await?;
        let params = kora_model::trigger::params_of(&t.params, &body);
        if let Some(path) = kora_model::value::find_nul(&kora_model::Value::Object(params.clone()))
        {
            return Err(ApiError::invalid(format!(
                "the body holds a NUL character (\\u0000) at {path}, which cannot be stored"
            )));
        }
        let submission = Submission {
            run_id: run_id.clone(),
            tenant: t.tenant.clone(),
            ..Submission::new(t.spec.clone(), params)
        };
        kora_client::runs::submit(
            st.control.broker().as_ref(),
            st.control.subjects(),
            submission,
        )
        .await?;
        tracing::info!(trigger = %name, %run_id, tenant = %t.tenant, "webhook delivered");
        Ok((
            StatusCode::ACCEPTED,
            Json(Delivered {
                run_id: run_id.clone(),
                duplicate: false,
            }),
        )
            .into_response())
    }
    .await;
    st.audited(&who, &ctx, "hooks.deliver", &run_id, None, done)
        .await
}

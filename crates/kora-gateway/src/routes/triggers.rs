//! `/v1/triggers`: what starts runs without a request per run. A subject trigger starts one
//! per NATS message, a cron trigger one per tick, a webhook trigger one per signed request to
//! `/v1/hooks/{name}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kora_client::TriggerSource;
use kora_model::{Map, Value};
use kora_store::TriggerRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{check_name, check_workflow, load_workflow};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Body;
use crate::extract::Path;
use crate::scopes::Scope;
use crate::state::{AppState, RequestCtx};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTrigger {
    /// 1-64 letters, digits, `-` or `_`; unique across the installation.
    pub(crate) name: String,
    /// Start a run per message on this NATS subject (give one of `subject`, `schedule`,
    /// `webhook`).
    pub(crate) subject: Option<String>,
    /// Start a run per tick of this cron schedule (5 fields, or 6 with seconds first).
    pub(crate) schedule: Option<String>,
    /// Start a run per signed request to `/v1/hooks/{name}`.
    #[serde(default)]
    pub(crate) webhook: bool,
    /// An inline workflow (any shape `kora run` accepts), or give `workflow_name`.
    #[schema(value_type = Object)]
    pub(crate) workflow: Option<Value>,
    pub(crate) workflow_name: Option<String>,
    pub(crate) version: Option<u32>,
    /// Parameters of every run it starts (the message's, tick's or request's come on top).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) params: Map,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TriggerView {
    pub(crate) name: String,
    /// `subject`, `cron` or `webhook`.
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) schedule: Option<String>,
    pub(crate) paused: bool,
    /// The workflow's name (or id).
    pub(crate) workflow: String,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
}

impl From<&TriggerRecord> for TriggerView {
    fn from(t: &TriggerRecord) -> Self {
        let kind = if t.webhook_salt.is_some() {
            "webhook"
        } else if t.schedule.is_some() {
            "cron"
        } else {
            "subject"
        };
        TriggerView {
            name: t.name.clone(),
            kind: kind.into(),
            subject: (!t.subject.is_empty()).then(|| t.subject.clone()),
            schedule: t.schedule.clone(),
            paused: t.paused,
            workflow: if t.spec.name.is_empty() {
                t.spec.id.clone()
            } else {
                t.spec.name.clone()
            },
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CreatedTrigger {
    #[serde(flatten)]
    pub(crate) trigger: TriggerView,
    /// A webhook trigger's path: `POST` signed requests here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hook_path: Option<String>,
    /// A webhook trigger's signing secret, shown once: sign each request's
    /// `<timestamp>.<body>` with HMAC-SHA256 under it (see `/v1/hooks/{trigger}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TriggerList {
    pub(crate) triggers: Vec<TriggerView>,
}

/// Create a trigger (or replace one of the caller's with the same name).
#[utoipa::path(post, path = "/v1/triggers", tag = "triggers", operation_id = "create_trigger",
    request_body = CreateTrigger,
    responses((status = 201, body = CreatedTrigger), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Body(body): Body<CreateTrigger>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::TriggersWrite)?;
        check_name(&body.name, "trigger")?;
        let spec = match (&body.workflow, &body.workflow_name) {
            (Some(doc), None) => load_workflow(&st, doc, "workflow")?,
            (None, Some(name)) => {
                st.store()
                    .workflow(&who.tenant, name, body.version)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("no workflow {name:?}")))?
                    .spec
            }
            _ => {
                return Err(ApiError::unprocessable(
                    "give either `workflow` (inline) or `workflow_name`, not both",
                ));
            }
        };
        check_workflow(&st, &spec, None)?;
        // A trigger runs its workflow later, as a registration would: an inline one is
        // judged as a registration, a registered one as a run of it.
        super::runs::check_policy(
            &st,
            &who,
            &spec,
            &body.params,
            if body.workflow.is_some() {
                crate::policy::Source::Registering
            } else {
                crate::policy::Source::Registered
            },
        )?;
        let source = match (&body.subject, &body.schedule, body.webhook) {
            (Some(s), None, false) => TriggerSource::Subject(s.clone()),
            (None, Some(c), false) => TriggerSource::Cron(c.clone()),
            (None, None, true) => TriggerSource::Webhook {
                salt: crate::hooks::new_salt().map_err(|e| ApiError::internal(e.to_string()))?,
            },
            _ => {
                return Err(ApiError::unprocessable(
                    "give exactly one of `subject`, `schedule` or `webhook: true`",
                ));
            }
        };
        let control = st.control_for(&who);
        control
            .add_trigger(&body.name, source, spec, body.params.clone())
            .await?;
        let t = control.trigger(&body.name).await?;
        let secret = t
            .webhook_salt
            .as_deref()
            .map(|salt| crate::hooks::secret(st.cfg.key_pepper.expose(), &t.name, salt));
        Ok((
            StatusCode::CREATED,
            Json(CreatedTrigger {
                trigger: TriggerView::from(&t),
                hook_path: secret.as_ref().map(|_| format!("/v1/hooks/{}", t.name)),
                secret,
            }),
        )
            .into_response())
    }
    .await;
    st.audited(&who, &ctx, "triggers.create", &body.name, None, done)
        .await
}

/// List triggers.
#[utoipa::path(get, path = "/v1/triggers", tag = "triggers", operation_id = "list_triggers",
    responses((status = 200, body = TriggerList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<TriggerList>> {
    who.require(Scope::TriggersRead)?;
    let all = st.control_for(&who).triggers().await?;
    Ok(Json(TriggerList {
        triggers: all.iter().map(TriggerView::from).collect(),
    }))
}

/// Read a trigger.
#[utoipa::path(get, path = "/v1/triggers/{name}", tag = "triggers", operation_id = "get_trigger",
    params(("name" = String, Path, description = "the trigger's name")),
    responses((status = 200, body = TriggerView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(st): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<TriggerView>> {
    who.require(Scope::TriggersRead)?;
    let t = st.control_for(&who).trigger(&name).await?;
    Ok(Json(TriggerView::from(&t)))
}

async fn set_paused(
    st: &AppState,
    who: &Principal,
    ctx: &RequestCtx,
    name: &str,
    paused: bool,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::TriggersWrite)?;
        let control = st.control_for(who);
        control.set_trigger_paused(name, paused).await?;
        Ok(Json(TriggerView::from(&control.trigger(name).await?)).into_response())
    }
    .await;
    let action = if paused {
        "triggers.pause"
    } else {
        "triggers.resume"
    };
    st.audited(who, ctx, action, name, None, done).await
}

/// Pause a trigger: a subject trigger's messages wait and start their runs on resume; a
/// webhook trigger answers `503` meanwhile (senders retry); a cron trigger skips its ticks.
#[utoipa::path(post, path = "/v1/triggers/{name}/pause", tag = "triggers", operation_id = "pause_trigger",
    params(("name" = String, Path, description = "the trigger's name")),
    responses((status = 200, body = TriggerView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn pause(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    set_paused(&st, &who, &ctx, &name, true).await
}

/// Resume a paused trigger.
#[utoipa::path(post, path = "/v1/triggers/{name}/resume", tag = "triggers", operation_id = "resume_trigger",
    params(("name" = String, Path, description = "the trigger's name")),
    responses((status = 200, body = TriggerView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn resume(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    set_paused(&st, &who, &ctx, &name, false).await
}

/// Delete a trigger: no more runs start from it.
#[utoipa::path(delete, path = "/v1/triggers/{name}", tag = "triggers", operation_id = "delete_trigger",
    params(("name" = String, Path, description = "the trigger's name")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::TriggersWrite)?;
        st.control_for(&who).delete_trigger(&name).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    st.audited(&who, &ctx, "triggers.delete", &name, None, done)
        .await
}

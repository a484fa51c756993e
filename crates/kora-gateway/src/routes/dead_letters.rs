//! `/v1/dead-letters`: node attempts that failed for good. List and read them, replay one (with
//! input overrides) or many by filter (`dry_run` counts first), purge.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use kora_model::Map;
use kora_store::{DeadLetterFilter, DeadLetterRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::runs::{AttemptView, Replayed};
use super::{page_size, parse_time};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, OptionalBody};
use crate::extract::{Path, Query};
use crate::scopes::Scope;
use crate::state::{AppState, RequestCtx};

/// A dead-lettered attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeadLetterView {
    /// Its id, the attempt's task id: `<run_id>:<node_id>:<iteration>:<attempt>`.
    pub(crate) id: String,
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    pub(crate) workflow: String,
    /// `permanent_error`, `retries_exhausted`, ...
    pub(crate) reason: String,
    /// `open`, `replayed` or `purged`.
    pub(crate) state: String,
    pub(crate) run_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_type: Option<String>,
    /// The inputs the failed attempt ran with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) inputs: Option<Map>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failed_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replayed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replayed_ms: Option<u64>,
}

impl From<&DeadLetterRecord> for DeadLetterView {
    fn from(d: &DeadLetterRecord) -> Self {
        let a = &d.attempt;
        let info = a.dead_letter.as_ref();
        DeadLetterView {
            id: d.id.clone(),
            run_id: a.run_id.clone(),
            node_id: a.node_id.clone(),
            workflow: d.workflow_name.clone(),
            reason: info.map(|i| i.reason.clone()).unwrap_or_default(),
            state: info.map(|i| i.state.clone()).unwrap_or_default(),
            run_status: d.run_status.as_str().into(),
            error: a.error.clone(),
            error_type: a.error_type.clone(),
            inputs: info.and_then(|i| i.inputs.clone()),
            failed_ms: a.finished_ms,
            replayed_by: info.and_then(|i| i.replayed_by.clone()),
            replayed_ms: info.and_then(|i| i.replayed_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeadLetterList {
    pub(crate) dead_letters: Vec<DeadLetterView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeadLetterDetail {
    pub(crate) dead_letter: DeadLetterView,
    /// Every attempt of its node in that run.
    pub(crate) attempts: Vec<AttemptView>,
}

#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// A workflow's name.
    pub(crate) workflow: Option<String>,
    /// `permanent_error`, `retries_exhausted`, ...
    pub(crate) reason: Option<String>,
    /// Failed at or after: `30m`, `12h`, `7d`, or epoch ms.
    pub(crate) since: Option<String>,
    pub(crate) run_id: Option<String>,
    /// `any` to include replayed and purged ones (list only).
    #[param(inline)]
    #[schema(inline)]
    pub(crate) state: Option<StateParam>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    #[schema(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<usize>,
}

/// Which dead letters: the open ones, or any.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateParam {
    Open,
    Any,
}

impl Filter {
    fn to_filter(&self, default_limit: usize) -> ApiResult<DeadLetterFilter> {
        let any_state = self.state == Some(StateParam::Any);
        Ok(DeadLetterFilter {
            workflow: self.workflow.clone(),
            reason: self.reason.clone(),
            since_ms: parse_time(self.since.as_deref(), "since")?,
            any_state,
            run_id: self.run_id.clone(),
            limit: page_size(self.limit, default_limit, 1000)?,
            ..Default::default()
        })
    }
}

/// List dead letters.
///
/// Open ones, oldest first, unless `state=any`.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead letters", operation_id = "list_dead_letters",
    params(Filter),
    responses((status = 200, body = DeadLetterList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(st): State<AppState>,
    who: Principal,
    Query(f): Query<Filter>,
) -> ApiResult<Json<DeadLetterList>> {
    who.require(Scope::DlqRead)?;
    let all = st
        .control_for(&who)
        .dead_letters(&f.to_filter(100)?)
        .await?;
    Ok(Json(DeadLetterList {
        dead_letters: all.iter().map(DeadLetterView::from).collect(),
    }))
}

/// Read a dead letter, with every attempt of its node in that run.
#[utoipa::path(get, path = "/v1/dead-letters/{id}", tag = "dead letters", operation_id = "get_dead_letter",
    params(("id" = String, Path, description = "`<run_id>:<node_id>:<iteration>:<attempt>`")),
    responses((status = 200, body = DeadLetterDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DeadLetterDetail>> {
    who.require(Scope::DlqRead)?;
    let (d, attempts) = st
        .control_for(&who)
        .dead_letter(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no dead letter {id}")))?;
    Ok(Json(DeadLetterDetail {
        dead_letter: DeadLetterView::from(&d),
        attempts: attempts.iter().map(AttemptView::from).collect(),
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayOne {
    /// Inputs to override, over the ones the attempt had.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) set: Map,
}

/// Replay a dead letter.
///
/// A new attempt of its node (with `set` over its inputs); the run reopens and resumes from
/// there. Completed nodes keep their outputs.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/replay", tag = "dead letters", operation_id = "replay_dead_letter",
    params(("id" = String, Path, description = "`<run_id>:<node_id>:<iteration>:<attempt>`")),
    request_body = Option<ReplayOne>,
    responses((status = 200, body = Replayed), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "already replayed or purged", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn replay(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<ReplayOne>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::DlqReplay)?;
        let out = st
            .control_for(&who)
            .replay(&id, body.set, &who.actor)
            .await?;
        Ok(Json(Replayed::from(out)).into_response())
    }
    .await;
    st.audited(&who, &ctx, "dead_letters.replay", &id, None, done)
        .await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Bulk {
    pub(crate) workflow: Option<String>,
    pub(crate) reason: Option<String>,
    /// `30m`, `12h`, `7d`, or epoch ms.
    pub(crate) since: Option<String>,
    pub(crate) run_id: Option<String>,
    /// Only count what would be done.
    #[serde(default)]
    pub(crate) dry_run: bool,
    /// At most this many to replay (default and most 1000; a purge takes every match).
    #[schema(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<usize>,
}

impl Bulk {
    fn to_filter(&self) -> ApiResult<DeadLetterFilter> {
        Filter {
            workflow: self.workflow.clone(),
            reason: self.reason.clone(),
            since: self.since.clone(),
            run_id: self.run_id.clone(),
            state: None,
            limit: self.limit,
        }
        .to_filter(1000)
    }
    fn detail(&self) -> serde_json::Value {
        serde_json::json!({"workflow": self.workflow, "reason": self.reason, "since": self.since,
            "run_id": self.run_id, "dry_run": self.dry_run})
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BulkReplayAnswer {
    /// How many open dead letters the filter selects.
    pub(crate) count: usize,
    pub(crate) dry_run: bool,
    pub(crate) replayed: Vec<Replayed>,
    /// Those that could not be replayed, with why.
    pub(crate) failed: Vec<BulkFailure>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BulkFailure {
    pub(crate) id: String,
    pub(crate) error: String,
}

/// Replay dead letters by filter.
///
/// Every open dead letter the filter selects, as they are (no overrides). With `dry_run`, only
/// the count.
#[utoipa::path(post, path = "/v1/dead-letters/replay", tag = "dead letters", operation_id = "replay_dead_letters",
    request_body = Bulk,
    responses((status = 200, body = BulkReplayAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn replay_bulk(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Body(body): Body<Bulk>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::DlqReplay)?;
        let control = st.control_for(&who);
        let selected = control.dead_letters(&body.to_filter()?).await?;
        let mut answer = BulkReplayAnswer {
            count: selected.len(),
            dry_run: body.dry_run,
            replayed: Vec::new(),
            failed: Vec::new(),
        };
        if !body.dry_run {
            for d in &selected {
                match control.replay(&d.id, Map::new(), &who.actor).await {
                    Ok(out) => answer.replayed.push(Replayed::from(out)),
                    Err(e) => answer.failed.push(BulkFailure {
                        id: d.id.clone(),
                        error: e.to_string(),
                    }),
                }
            }
        }
        Ok(Json(answer).into_response())
    }
    .await;
    st.audited(
        &who,
        &ctx,
        "dead_letters.replay_bulk",
        "",
        Some(body.detail()),
        done,
    )
    .await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PurgeAnswer {
    /// How many were purged (or, with `dry_run`, would be).
    pub(crate) count: usize,
    pub(crate) dry_run: bool,
}

/// Purge dead letters by filter.
///
/// Closes the open dead letters the filter selects without replaying them (their attempts stay
/// in the ledger). With `dry_run`, only the count.
#[utoipa::path(post, path = "/v1/dead-letters/purge", tag = "dead letters", operation_id = "purge_dead_letters",
    request_body = Bulk,
    responses((status = 200, body = PurgeAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn purge(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Body(body): Body<Bulk>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::DlqPurge)?;
        let control = st.control_for(&who);
        let filter = body.to_filter()?;
        let count = if body.dry_run {
            control.dead_letters(&filter).await?.len()
        } else {
            control.purge(&filter, &who.actor).await?
        };
        Ok(Json(PurgeAnswer {
            count,
            dry_run: body.dry_run,
        })
        .into_response())
    }
    .await;
    st.audited(
        &who,
        &ctx,
        "dead_letters.purge",
        "",
        Some(body.detail()),
        done,
    )
    .await
}

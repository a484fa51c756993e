//! `/v1/runs`: submit (optionally waiting for the result), list, read, cancel and retry runs.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kora_client::{RunReport, Submission};
use kora_model::{Map, Value};
use kora_store::{AttemptRecord, RunFilter, RunRecord, RunStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{check_workflow, decode_cursor, encode_cursor, load_workflow, page_size, parse_time};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, OptionalBody};
use crate::extract::{Path, Query};
use crate::scopes::Scope;
use crate::state::{AppState, RequestCtx};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRun {
    /// An inline workflow in any shape `kora run` accepts (an object, or JSON/YAML text).
    /// Give this or `workflow_name`.
    #[schema(value_type = Object)]
    pub(crate) workflow: Option<Value>,
    /// A registered workflow's name (its latest version unless `version`).
    pub(crate) workflow_name: Option<String>,
    pub(crate) version: Option<u32>,
    /// Runtime parameters: `{node_id: {param: value}}` and workflow-level `{param: value}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) params: Map,
    /// Submitting again with the same key (within the idempotency window) is the same run.
    pub(crate) idempotency_key: Option<String>,
    pub(crate) priority: Option<Priority>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Priority {
    Normal,
    High,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SubmitQuery {
    /// Wait up to this many seconds for the run to end; then answer `200` with its results,
    /// or `202` if it is still running.
    #[param(minimum = 0)]
    pub(crate) wait: Option<f64>,
}

/// A run that was accepted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Submitted {
    pub(crate) run_id: String,
    /// `accepted`; `duplicate` when the idempotency key belongs to an earlier run (whose id
    /// this is); or (with `wait`) `running` when the run did not end in time.
    pub(crate) status: String,
}

/// How long an async submission with an idempotency key waits for its admission.
const ADMISSION_WAIT: Duration = Duration::from_secs(5);

fn submitted(run_id: &str, status: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Submitted {
            run_id: run_id.into(),
            status: status.into(),
        }),
    )
        .into_response()
}

/// A finished run, exactly as `kora run --format json` prints it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RunResult {
    pub(crate) run_id: String,
    /// `succeeded`, `failed`, `cancelled` or `rejected`.
    pub(crate) status: String,
    /// `{node_id: output or null}`; a failed node has `{"error", "error_type", "failed": true}`.
    #[schema(value_type = Object)]
    pub(crate) results: Map,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) error: Option<Value>,
}

/// One attempt of one node.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AttemptView {
    pub(crate) node_id: String,
    pub(crate) iteration: u32,
    pub(crate) attempt: u32,
    pub(crate) node_type: String,
    /// `dispatched`, `succeeded`, `failed` or `skipped`.
    pub(crate) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) worker_id: Option<String>,
    pub(crate) dispatched_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finished_ms: Option<u64>,
    /// Set when this attempt was dead-lettered: `open`, `replayed` or `purged`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dead_letter: Option<String>,
}

impl From<&AttemptRecord> for AttemptView {
    fn from(a: &AttemptRecord) -> Self {
        AttemptView {
            node_id: a.node_id.clone(),
            iteration: a.iteration,
            attempt: a.attempt,
            node_type: a.node_type.clone(),
            status: a.status.as_str().into(),
            error: a.error.clone(),
            error_type: a.error_type.clone(),
            worker_id: a.worker_id.clone(),
            dispatched_ms: a.dispatched_ms,
            finished_ms: a.finished_ms,
            dead_letter: a.dead_letter.as_ref().map(|d| d.state.clone()),
        }
    }
}

/// A run: what `kora run` prints, plus its state, timings and every attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RunView {
    pub(crate) run_id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or `rejected`.
    pub(crate) status: String,
    #[schema(value_type = Object)]
    pub(crate) results: Map,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) error: Option<Value>,
    /// The workflow's name (or id, when it has no name).
    pub(crate) workflow: String,
    pub(crate) tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idempotency_key: Option<String>,
    /// The parent attempt of a child run (a WorkflowNode's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<String>,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finished_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration_ms: Option<u64>,
    pub(crate) attempts: Vec<AttemptView>,
}

/// A run in a list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RunSummary {
    pub(crate) run_id: String,
    pub(crate) status: String,
    pub(crate) workflow: String,
    pub(crate) created_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finished_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RunPage {
    pub(crate) runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_cursor: Option<String>,
}

/// A run's state, as a filter.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StatusParam {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Rejected,
}

impl StatusParam {
    fn status(self) -> RunStatus {
        match self {
            StatusParam::Queued => RunStatus::Queued,
            StatusParam::Running => RunStatus::Running,
            StatusParam::Succeeded => RunStatus::Succeeded,
            StatusParam::Failed => RunStatus::Failed,
            StatusParam::Cancelled => RunStatus::Cancelled,
            StatusParam::Rejected => RunStatus::Rejected,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    #[param(inline)]
    pub(crate) status: Option<StatusParam>,
    /// A workflow's name.
    pub(crate) workflow: Option<String>,
    /// Created at or after: `30m`, `12h`, `7d` back from now, or epoch ms.
    pub(crate) since: Option<String>,
    /// Created before (same forms).
    pub(crate) until: Option<String>,
    /// Runs per page (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
    /// Only the run submitted with this idempotency key (with the other filters, if any).
    pub(crate) idempotency_key: Option<String>,
}

fn workflow_of(r: &RunRecord) -> String {
    if r.workflow_name.is_empty() {
        r.workflow_id.clone()
    } else {
        r.workflow_name.clone()
    }
}

/// The workflow a submission names, checked.
async fn workflow_of_request(
    st: &AppState,
    who: &Principal,
    body: &SubmitRun,
) -> ApiResult<kora_model::WorkflowSpec> {
    let mut spec = match (&body.workflow, &body.workflow_name) {
        (Some(doc), None) => load_workflow(st, doc, "workflow")?,
        (None, Some(name)) => {
            st.store()
                .workflow(&who.tenant, name, body.version)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(match body.version {
                        Some(v) => format!(
                            "no workflow {name:?} version {v} (GET /v1/workflows lists them)"
                        ),
                        None => format!("no workflow {name:?} (GET /v1/workflows lists them)"),
                    })
                })?
                .spec
        }
        _ => {
            return Err(ApiError::unprocessable(
                "give either `workflow` (inline) or `workflow_name`, not both",
            ));
        }
    };
    if body.version.is_some() && body.workflow_name.is_none() {
        return Err(ApiError::unprocessable(
            "`version` goes with `workflow_name`",
        ));
    }
    if let Some(p) = body.priority {
        spec.priority = match p {
            Priority::Normal => kora_model::Priority::Normal,
            Priority::High => kora_model::Priority::High,
        };
    }
    check_workflow(st, &spec, Some(&body.params))?;
    let source = if body.workflow_name.is_some() {
        crate::policy::Source::Registered
    } else {
        crate::policy::Source::Inline
    };
    check_policy(st, who, &spec, &body.params, source)?;
    Ok(spec)
}

/// `[gateway.policy]`'s rules for this credential: one refusal listing every node and rule.
pub(crate) fn check_policy(
    st: &AppState,
    who: &Principal,
    spec: &kora_model::WorkflowSpec,
    params: &Map,
    source: crate::policy::Source,
) -> ApiResult<()> {
    let broken = crate::policy::violations(
        &st.cfg.policy,
        spec,
        params,
        &who.tenant,
        who.scopes.contains(&Scope::NodesCode),
        source,
    );
    if broken.is_empty() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "refused by the node policy: {}",
            broken.join("; ")
        )))
    }
}

/// Submit a run.
///
/// The run is stored before the answer; a coordinator admits it within moments. With `wait`,
/// the answer is the run's result (exactly what `kora run --format json` prints) if it ends in
/// time.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", operation_id = "submit_run",
    params(SubmitQuery), request_body = SubmitRun,
    responses(
        (status = 202, description = "accepted (or, with `wait`, still running)", body = Submitted),
        (status = 200, description = "with `wait`: the run ended", body = RunResult),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "no such registered workflow", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, description = "the workflow is not valid", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn submit(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Query(q): Query<SubmitQuery>,
    Body(body): Body<SubmitRun>,
) -> ApiResult<Response> {
    who.require(Scope::RunsWrite)?;
    let wait =
        match q.wait {
            None => None,
            Some(w) => Some(st.cfg.wait_of(w).ok_or_else(|| {
                ApiError::invalid("`wait` must be a number of seconds, 0 or more")
            })?),
        };
    let run_id = uuid::Uuid::now_v7().to_string();
    let detail = serde_json::json!({
        "workflow": body.workflow_name.clone().unwrap_or_else(|| "(inline)".into()),
        "idempotency_key": body.idempotency_key,
    });
    let (broker, subjects) = (st.control.broker(), st.control.subjects());
    let keyed = body.idempotency_key.is_some();
    let accepted = async {
        st.limits.check_submission(&who.tenant).await?;
        let spec = workflow_of_request(&st, &who, &body).await?;
        if let Some(k) = &body.idempotency_key
            && (k.is_empty() || k.len() > 256)
        {
            return Err(ApiError::unprocessable(
                "`idempotency_key` must be 1-256 characters",
            ));
        }
        let node_ids: Vec<String> = spec.nodes.iter().map(|n| n.id.clone()).collect();
        let may_amend = kora_model::exits::may_amend(&spec);
        let submission = Submission {
            idempotency_key: body.idempotency_key.clone(),
            tenant: who.tenant.clone(),
            run_id: run_id.clone(),
            traceparent: ctx.traceparent,
            ..Submission::new(spec, body.params.clone())
        };
        // Waiting on the run's events (for its end, or for the admission that names the run
        // a key stands for) starts from where the event stream ends before the submission.
        let from = if wait.is_some() || keyed {
            Some(kora_client::runs::events_position(broker.as_ref(), subjects).await?)
        } else {
            None
        };
        kora_client::runs::submit(broker.as_ref(), subjects, submission).await?;
        Ok((node_ids, may_amend, from))
    }
    .await;
    let (node_ids, may_amend, from) = match accepted {
        Ok((node_ids, may_amend, Some(from))) => (node_ids, may_amend, from),
        // Accepted, with nothing to wait for.
        Ok((_, _, None)) => {
            let answer = Ok(submitted(&run_id, "accepted"));
            return st
                .audited(&who, &ctx, "runs.submit", &run_id, Some(detail), answer)
                .await;
        }
        Err(e) => {
            return st
                .audited(&who, &ctx, "runs.submit", &run_id, Some(detail), Err(e))
                .await;
        }
    };
    // The run is stored: its audit entry (accepted, 202) is written while the gateway waits
    // for the admission or the run's end, and is durable before the answer is given.
    let audit = st.record_call(
        &who,
        &ctx,
        "runs.submit",
        &run_id,
        Some(detail),
        (202, "ok"),
    );
    let answer = async {
        let Some(wait) = wait else {
            // With a key, the caller must get the id of the run the key stands for: wait for
            // the coordinator's admission (a few ms), which names the earlier run if there is
            // one. If it does not answer in time the new id is given; it will be deduplicated
            // onto the earlier run, whose id its events then name.
            let admitted =
                kora_client::runs::admission(broker, subjects, &run_id, from, ADMISSION_WAIT)
                    .await?;
            return Ok(
                match admitted.as_ref().and_then(kora_client::runs::follow) {
                    Some(existing) => submitted(&existing, "duplicate"),
                    None => submitted(&run_id, "accepted"),
                },
            );
        };
        match kora_client::runs::wait(broker, subjects, &run_id, from, Some(wait)).await {
            Ok(ending) => {
                // A deduplicated submission reports the run it stands for.
                let (id, ending) = match kora_client::runs::follow(&ending) {
                    Some(existing) => match st.store().run(&existing).await? {
                        Some(r) if r.status.is_final() => (existing, RunReport::ending_of(&r)),
                        _ => return Ok(submitted(&existing, "running")),
                    },
                    None => (run_id.clone(), ending),
                };
                let report =
                    RunReport::build(st.store().as_ref(), id, &node_ids, may_amend, ending).await?;
                Ok(Json(report).into_response())
            }
            Err(kora_client::Error::Timeout(_)) => Ok(submitted(&run_id, "running")),
            Err(e) => Err(e.into()),
        }
    };
    let ((), answer) = tokio::join!(audit, answer);
    answer
}

/// List runs.
///
/// Newest first, a page at a time: pass `next_cursor` back as `cursor`.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", operation_id = "list_runs",
    params(ListQuery),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(st): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RunPage>> {
    who.require(Scope::RunsRead)?;
    let limit = page_size(q.limit, 50, 500)?;
    let status = q.status.map(StatusParam::status);
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            let text = decode_cursor(c)?;
            let (ms, id) = text
                .split_once(':')
                .and_then(|(ms, id)| Some((ms.parse::<u64>().ok()?, id.to_string())))
                .ok_or_else(|| ApiError::invalid("`cursor` is not one this API gave"))?;
            Ok::<_, ApiError>((ms, id))
        })
        .transpose()?;
    let filter = RunFilter {
        status,
        workflow: q.workflow.clone(),
        since_ms: parse_time(q.since.as_deref(), "since")?,
        until_ms: parse_time(q.until.as_deref(), "until")?,
        before,
        limit: limit + 1,
        ..Default::default()
    };
    let mut runs = match q.idempotency_key.as_deref() {
        // The key names at most one run: read it, then apply the other filters to it.
        Some(key) => st
            .control_for(&who)
            .run_by_key(key)
            .await?
            .filter(|r| filter.admits(r))
            .into_iter()
            .collect(),
        None => st.control_for(&who).runs(&filter).await?,
    };
    let next_cursor = (runs.len() > limit).then(|| {
        runs.truncate(limit);
        runs.last()
            .map(|r| encode_cursor(&format!("{}:{}", r.created_ms, r.run_id)))
            .unwrap_or_default()
    });
    Ok(Json(RunPage {
        runs: runs
            .iter()
            .map(|r| RunSummary {
                run_id: r.run_id.clone(),
                status: r.status.as_str().into(),
                workflow: workflow_of(r),
                created_ms: r.created_ms,
                finished_ms: r.finished_ms,
            })
            .collect(),
        next_cursor,
    }))
}

/// The run `run_id` names within the caller's tenant, following a deduplicated submission to
/// the run it stands for.
pub(crate) async fn find_run(st: &AppState, who: &Principal, run_id: &str) -> ApiResult<RunRecord> {
    let control = &st.control_for(who);
    following_alias(st, run_id, |id| async move { control.run(&id).await }).await
}

/// What `read` gives for `run_id`, or else for the run it is an alias of; not found otherwise.
pub(crate) async fn following_alias<T, F, Fut>(st: &AppState, run_id: &str, read: F) -> ApiResult<T>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = kora_client::Result<Option<T>>>,
{
    if let Some(found) = read(run_id.to_owned()).await? {
        return Ok(found);
    }
    if let Some(target) = st.store().alias_of(run_id).await?
        && let Some(found) = read(target).await?
    {
        return Ok(found);
    }
    Err(ApiError::not_found(format!(
        "no run {run_id} (a run just submitted appears once a coordinator admits it)"
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadQuery {
    /// `summary` leaves out `results` and `attempts` (empty): the run's state and timings
    /// only, one small read however big the run.
    #[param(inline)]
    pub(crate) view: Option<ViewParam>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ViewParam {
    Full,
    Summary,
}

/// Read a run.
///
/// Its status, results so far, error, timings and every attempt (`?view=summary`: without
/// results and attempts). A deduplicated submission's id gives the run it stands for.
#[utoipa::path(get, path = "/v1/runs/{run_id}", tag = "runs", operation_id = "get_run",
    params(("run_id" = String, Path, description = "the run's id"), ReadQuery),
    responses((status = 200, body = RunView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(st): State<AppState>,
    who: Principal,
    Path(run_id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<RunView>> {
    who.require(Scope::RunsRead)?;
    let control = &st.control_for(&who);
    let (r, attempts) = if q.view == Some(ViewParam::Summary) {
        let r = following_alias(&st, &run_id, |id| async move { control.run(&id).await }).await?;
        (r, Vec::new())
    } else {
        following_alias(&st, &run_id, |id| async move {
            control.run_with_attempts(&id).await
        })
        .await?
    };
    let summary = q.view == Some(ViewParam::Summary);
    let node_ids: Vec<String> = r
        .spec
        .as_ref()
        .map(|s| s.nodes.iter().map(|n| n.id.clone()).collect())
        .unwrap_or_default();
    let mut results = Map::new();
    if !summary {
        results = kora_store::results_from_attempts(&node_ids, &attempts);
        let may_amend = r.spec.as_ref().is_some_and(kora_model::exits::may_amend);
        st.store()
            .show_amendments(&r.run_id, &mut results, may_amend)
            .await?;
    }
    let error = (r.status != RunStatus::Succeeded && r.status.is_final())
        .then(|| RunReport::ending_of(&r).detail)
        .flatten();
    Ok(Json(RunView {
        status: r.status.as_str().into(),
        results,
        error,
        workflow: workflow_of(&r),
        idempotency_key: r
            .idempotency_key
            .as_deref()
            .map(|k| kora_model::tenant::unscoped_key(&r.tenant, k).to_string()),
        parent: r.parent.clone(),
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
        finished_ms: r.finished_ms,
        duration_ms: r.finished_ms.map(|f| f.saturating_sub(r.created_ms)),
        attempts: attempts.iter().map(AttemptView::from).collect(),
        tenant: r.tenant,
        run_id: r.run_id,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CancelAnswer {
    pub(crate) run_id: String,
    /// The run's status when answered: `cancelled`, or how it ended before the cancel.
    pub(crate) status: String,
}

/// Cancel a run.
///
/// Nothing more is dispatched, running tasks are stopped, and the run is recorded `cancelled`
/// (with who asked). A run that already ended is answered with how it ended.
#[utoipa::path(post, path = "/v1/runs/{run_id}/cancel", tag = "runs", operation_id = "cancel_run",
    params(("run_id" = String, Path, description = "the run's id")),
    responses((status = 200, description = "the run ended (cancelled, or before)", body = CancelAnswer),
        (status = 202, description = "the cancel is recorded; the run is still stopping", body = CancelAnswer),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Path(run_id): Path<String>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::RunsCancel)?;
        let r = find_run(&st, &who, &run_id).await?;
        let status = st
            .control_for(&who)
            .cancel(&r.run_id, &who.actor, Duration::from_secs(5))
            .await?;
        let code = if status.is_final() {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        Ok((
            code,
            Json(CancelAnswer {
                run_id: r.run_id,
                status: status.as_str().into(),
            }),
        )
            .into_response())
    }
    .await;
    st.audited(&who, &ctx, "runs.cancel", &run_id, None, done)
        .await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryRun {
    /// Restart from this node (it and everything downstream run again); without it, replay
    /// the run's open dead letters.
    pub(crate) from: Option<String>,
    /// With `from`: inputs of that node to override.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) set: Map,
}

/// A replay or restart the coordinator applied.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Replayed {
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    /// The new attempt's number.
    pub(crate) attempt: u32,
    /// Other nodes sent again (those in flight when the run ended).
    pub(crate) redispatched: Vec<String>,
}

impl From<kora_store::ReplayOutcome> for Replayed {
    fn from(o: kora_store::ReplayOutcome) -> Self {
        Replayed {
            redispatched: o.redispatched.iter().map(|a| a.node_id.clone()).collect(),
            run_id: o.run_id,
            node_id: o.node_id,
            attempt: o.attempt,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RetryAnswer {
    pub(crate) replayed: Vec<Replayed>,
}

/// Retry a run.
///
/// Without `from`: a failed run resumes from where it failed (its dead-lettered nodes run
/// again; completed nodes keep their outputs). With `from`: a run that ended restarts from
/// that node, with `set` over its inputs.
#[utoipa::path(post, path = "/v1/runs/{run_id}/retry", tag = "runs", operation_id = "retry_run",
    params(("run_id" = String, Path, description = "the run's id")), request_body = Option<RetryRun>,
    responses((status = 200, body = RetryAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "nothing to retry, or the run is still running", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn retry(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Path(run_id): Path<String>,
    OptionalBody(body): OptionalBody<RetryRun>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::DlqReplay)?;
        let r = find_run(&st, &who, &run_id).await?;
        let control = st.control_for(&who);
        let replayed = match &body.from {
            Some(node) => vec![
                control
                    .restart_from(&r.run_id, node, body.set.clone(), &who.actor)
                    .await?,
            ],
            None if !body.set.is_empty() => {
                return Err(ApiError::unprocessable("`set` goes with `from`"));
            }
            None => control.retry_run(&r.run_id, &who.actor).await?,
        };
        Ok(Json(RetryAnswer {
            replayed: replayed.into_iter().map(Replayed::from).collect(),
        })
        .into_response())
    }
    .await;
    let detail = body.from.as_ref().map(|f| serde_json::json!({ "from": f }));
    st.audited(&who, &ctx, "runs.retry", &run_id, detail, done)
        .await
}

//! `/v1/workflows`: named, versioned workflows a tenant registers and submits runs of by
//! name. A run keeps the version it started with (its workflow is on its own record).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kora_model::Value;
use kora_store::WorkflowRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{check_name, check_workflow, load_workflow};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Body;
use crate::extract::{Path, Query};
use crate::scopes::Scope;
use crate::state::{AppState, RequestCtx};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterWorkflow {
    /// 1-64 letters, digits, `-` or `_`.
    pub(crate) name: String,
    /// The workflow, in any shape `kora run` accepts (an object, or JSON/YAML text).
    #[schema(value_type = Object)]
    pub(crate) workflow: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkflowVersion {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) created_ms: u64,
    pub(crate) created_by: String,
}

impl From<&WorkflowRecord> for WorkflowVersion {
    fn from(w: &WorkflowRecord) -> Self {
        WorkflowVersion {
            name: w.name.clone(),
            version: w.version,
            created_ms: w.created_ms,
            created_by: w.created_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkflowList {
    /// The latest version of each, by name.
    pub(crate) workflows: Vec<WorkflowVersion>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkflowDetail {
    #[serde(flatten)]
    pub(crate) version: WorkflowVersion,
    /// The workflow, in Kora's canonical shape.
    #[schema(value_type = Object)]
    pub(crate) workflow: Value,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// A version; the latest without it.
    pub(crate) version: Option<u32>,
}

/// Register a workflow.
///
/// Stores it as the next version of `name` (1 for a new name) after checking it as `kora
/// validate` does.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", operation_id = "register_workflow",
    request_body = RegisterWorkflow,
    responses((status = 201, body = WorkflowVersion), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn register(
    State(st): State<AppState>,
    who: Principal,
    ctx: RequestCtx,
    Body(body): Body<RegisterWorkflow>,
) -> ApiResult<Response> {
    let done = async {
        who.require(Scope::WorkflowsWrite)?;
        check_name(&body.name, "workflow")?;
        let spec = load_workflow(&st, &body.workflow, "workflow")?;
        check_workflow(&st, &spec, None)?;
        super::runs::check_policy(
            &st,
            &who,
            &spec,
            &kora_model::Map::new(),
            crate::policy::Source::Registering,
        )?;
        let now = kora_model::now_ms();
        let version = st
            .store()
            .register_workflow(&who.tenant, &body.name, &spec, &who.actor, now)
            .await?;
        Ok((
            StatusCode::CREATED,
            Json(WorkflowVersion {
                name: body.name.clone(),
                version,
                created_ms: now,
                created_by: who.actor.clone(),
            }),
        )
            .into_response())
    }
    .await;
    st.audited(&who, &ctx, "workflows.register", &body.name, None, done)
        .await
}

/// List registered workflows.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", operation_id = "list_workflows",
    responses((status = 200, body = WorkflowList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<WorkflowList>> {
    who.require(Scope::WorkflowsRead)?;
    let all = st.store().workflows(&who.tenant).await?;
    Ok(Json(WorkflowList {
        workflows: all.iter().map(WorkflowVersion::from).collect(),
    }))
}

/// Read a registered workflow (its latest version, or `version`).
#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows", operation_id = "get_workflow",
    params(("name" = String, Path, description = "the workflow's name"), VersionQuery),
    responses((status = 200, body = WorkflowDetail), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(st): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<WorkflowDetail>> {
    who.require(Scope::WorkflowsRead)?;
    let w = st
        .store()
        .workflow(&who.tenant, &name, q.version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no workflow {name:?}")))?;
    Ok(Json(WorkflowDetail {
        version: WorkflowVersion::from(&w),
        workflow: serde_json::to_value(&w.spec).map_err(|e| ApiError::internal(e.to_string()))?,
    }))
}

/// Delete a registered workflow (every version). Runs keep their own copy.
#[utoipa::path(delete, path = "/v1/workflows/{name}", tag = "workflows", operation_id = "delete_workflow",
    params(("name" = String, Path, description = "the workflow's name")),
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
        who.require(Scope::WorkflowsWrite)?;
        if st
            .store()
            .delete_workflow(&who.tenant, &name, kora_model::now_ms())
            .await?
        {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(ApiError::not_found(format!("no workflow {name:?}")))
        }
    }
    .await;
    st.audited(&who, &ctx, "workflows.delete", &name, None, done)
        .await
}

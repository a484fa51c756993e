//! `/v1/runs/{run_id}/graph` and `/v1/runs/{run_id}/nodes/{node_id}`: a run's workflow as a
//! graph with each node's state (what the dashboard draws), and one node's attempts.
//!
//! A node's state comes from its latest attempt (highest iteration, then attempt), so it
//! reads the same whichever gateway answers and in whatever order the ledger lists attempts.

use axum::Json;
use axum::extract::State;
use kora_model::Value;
use kora_store::{AttemptRecord, AttemptStatus, RunRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::runs::{AttemptView, following_alias};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Path;
use crate::scopes::Scope;
use crate::state::AppState;

/// One node of a run's graph.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct GraphNode {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) node_type: String,
    /// `pending` (not started yet), `running`, `retrying` (a later attempt is running or
    /// waiting), `succeeded`, `failed`, `dead_lettered` (failed and waiting for an operator),
    /// `skipped` (its branch was not taken), or `not_run` (the run ended before it).
    pub(crate) state: String,
    /// Attempts recorded, over every iteration.
    pub(crate) attempts: u32,
    /// Iterations reached (more than one only inside a cycle).
    pub(crate) iterations: u32,
    /// The latest attempt's error, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The cycle it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cycle: Option<String>,
}

/// One connection: `source`'s `output` feeds `target`'s `input`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct GraphEdge {
    pub(crate) source: String,
    pub(crate) output: String,
    pub(crate) target: String,
    pub(crate) input: String,
    /// The cycle this connection closes (a back edge), if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cycle: Option<String>,
}

/// A run's workflow with each node's state, nodes in the workflow's order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RunGraph {
    pub(crate) run_id: String,
    pub(crate) status: String,
    pub(crate) nodes: Vec<GraphNode>,
    pub(crate) edges: Vec<GraphEdge>,
}

/// One node of a run: its output so far and every attempt, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct NodeView {
    pub(crate) run_id: String,
    pub(crate) node_id: String,
    #[serde(rename = "type")]
    pub(crate) node_type: String,
    pub(crate) state: String,
    /// The node's entry in the run's results (its latest output, or its failure).
    #[schema(value_type = Object)]
    pub(crate) result: Value,
    /// The node's configuration as the workflow gives it.
    #[schema(value_type = Object)]
    pub(crate) config: Value,
    pub(crate) attempts: Vec<NodeAttempt>,
}

/// An attempt with what it produced.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct NodeAttempt {
    #[serde(flatten)]
    pub(crate) attempt: AttemptView,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) output: Option<Value>,
    /// Inputs an operator set when replaying it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) overrides: Option<Value>,
    /// The runtime inputs it ran with (before the node's configuration is laid under them).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) inputs: Option<Value>,
    /// Where `inputs` come from: `recorded` (a dead-lettered attempt's, kept for its replay)
    /// or `recomputed` (from its sources' recorded outputs and the run's parameters, as the
    /// coordinator computed them; a source run again since then shows its newer output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) inputs_from: Option<String>,
    /// The dead letter's id (the task id), when it was dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dead_letter_id: Option<String>,
    /// The child run a WorkflowNode's attempt starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) child_run_id: Option<String>,
}

/// The node type whose attempts start child runs.
const WORKFLOW_NODE: &str = "WorkflowNode";

/// An attempt's task id, `<run>:<node>:<iteration>:<attempt>`.
fn task_id(a: &AttemptRecord) -> String {
    format!("{}:{}:{}:{}", a.run_id, a.node_id, a.iteration, a.attempt)
}

/// The state a node shows, from its latest attempt (`None`: it has none).
fn node_state(latest: Option<&AttemptRecord>, run_final: bool) -> &'static str {
    let Some(a) = latest else {
        return if run_final { "not_run" } else { "pending" };
    };
    match a.status {
        // A run that ended (cancelled, failed elsewhere) never finishes this attempt.
        AttemptStatus::Dispatched if run_final => "not_run",
        AttemptStatus::Dispatched if a.attempt > 1 => "retrying",
        AttemptStatus::Dispatched => "running",
        AttemptStatus::Succeeded => "succeeded",
        AttemptStatus::Skipped => "skipped",
        AttemptStatus::Failed => match &a.dead_letter {
            Some(d) if d.state == "open" => "dead_lettered",
            _ => "failed",
        },
    }
}

/// The latest attempt of each node (highest iteration, then attempt).
fn latest_attempts(attempts: &[AttemptRecord]) -> std::collections::HashMap<&str, &AttemptRecord> {
    let mut latest: std::collections::HashMap<&str, &AttemptRecord> =
        std::collections::HashMap::new();
    for a in attempts {
        let e = latest.entry(a.node_id.as_str()).or_insert(a);
        if (a.iteration, a.attempt) > (e.iteration, e.attempt) {
            *e = a;
        }
    }
    latest
}

fn graph_of(r: &RunRecord, attempts: &[AttemptRecord]) -> ApiResult<RunGraph> {
    let spec = r
        .spec
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this run's workflow is not in the ledger"))?;
    let latest = latest_attempts(attempts);
    let mut counts: std::collections::HashMap<&str, (u32, u32)> = std::collections::HashMap::new();
    for a in attempts {
        let c = counts.entry(a.node_id.as_str()).or_default();
        c.0 += 1;
        c.1 = c.1.max(a.iteration + 1);
    }
    let mut cycle_of: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for c in &spec.connections {
        if let Some(id) = &c.cycle {
            cycle_of.insert(c.source.as_str(), id);
            cycle_of.insert(c.target.as_str(), id);
        }
    }
    let run_final = r.status.is_final();
    let nodes = spec
        .nodes
        .iter()
        .map(|n| {
            let last = latest.get(n.id.as_str()).copied();
            let (attempts, iterations) = counts.get(n.id.as_str()).copied().unwrap_or_default();
            GraphNode {
                id: n.id.clone(),
                node_type: n.node_type.clone(),
                state: node_state(last, run_final).into(),
                attempts,
                iterations,
                error: last
                    .filter(|a| a.status == AttemptStatus::Failed)
                    .and_then(|a| a.error.clone()),
                cycle: cycle_of.get(n.id.as_str()).map(|s| (*s).to_string()),
            }
        })
        .collect();
    let edges = spec
        .connections
        .iter()
        .map(|c| GraphEdge {
            source: c.source.clone(),
            output: c.output.clone(),
            target: c.target.clone(),
            input: c.input.clone(),
            cycle: c.cycle.clone(),
        })
        .collect();
    Ok(RunGraph {
        run_id: r.run_id.clone(),
        status: r.status.as_str().into(),
        nodes,
        edges,
    })
}

/// A run's graph.
///
/// Its workflow's nodes (each with its state, attempts, iterations and latest error) and
/// connections (back edges of cycles marked), for drawing the run.
#[utoipa::path(get, path = "/v1/runs/{run_id}/graph", tag = "runs", operation_id = "get_run_graph",
    params(("run_id" = String, Path, description = "the run's id")),
    responses((status = 200, body = RunGraph), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn graph(
    State(st): State<AppState>,
    who: Principal,
    Path(run_id): Path<String>,
) -> ApiResult<Json<RunGraph>> {
    who.require(Scope::RunsRead)?;
    let control = &st.control_for(&who);
    let (r, attempts) = following_alias(&st, &run_id, |id| async move {
        control.run_with_attempts(&id).await
    })
    .await?;
    Ok(Json(graph_of(&r, &attempts)?))
}

/// One node of a run.
///
/// Its state, configuration, result, and every attempt with its output, error, worker and
/// timings (oldest first).
#[utoipa::path(get, path = "/v1/runs/{run_id}/nodes/{node_id}", tag = "runs", operation_id = "get_run_node",
    params(("run_id" = String, Path, description = "the run's id"),
        ("node_id" = String, Path, description = "a node of its workflow")),
    responses((status = 200, body = NodeView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn node(
    State(st): State<AppState>,
    who: Principal,
    Path((run_id, node_id)): Path<(String, String)>,
) -> ApiResult<Json<NodeView>> {
    who.require(Scope::RunsRead)?;
    let control = &st.control_for(&who);
    let (r, attempts) = following_alias(&st, &run_id, |id| async move {
        control.run_with_attempts(&id).await
    })
    .await?;
    let spec_node = r
        .spec
        .as_ref()
        .and_then(|s| s.nodes.iter().find(|n| n.id == node_id))
        .ok_or_else(|| ApiError::not_found(format!("run {run_id} has no node {node_id:?}")))?;
    let mut mine: Vec<&AttemptRecord> = attempts.iter().filter(|a| a.node_id == node_id).collect();
    mine.sort_by_key(|a| (a.iteration, a.attempt));
    let last = mine.last().copied();
    let recomputed = match r.spec.as_ref() {
        Some(spec) => super::inputs::recompute(
            spec,
            st.catalog.as_ref(),
            &r.params,
            &node_id,
            &mine,
            &attempts,
        ),
        None => vec![None; mine.len()],
    };
    let result = kora_store::results_from_attempts(std::slice::from_ref(&node_id), &attempts)
        .remove(&node_id)
        .unwrap_or(Value::Null);
    Ok(Json(NodeView {
        state: node_state(last, r.status.is_final()).into(),
        node_type: spec_node.node_type.clone(),
        config: Value::Object(spec_node.config.clone()),
        result,
        attempts: mine
            .iter()
            .zip(recomputed)
            .map(|(a, again)| {
                let recorded = a.dead_letter.as_ref().and_then(|d| d.inputs.clone());
                let inputs_from = match (&recorded, &again) {
                    (Some(_), _) => Some("recorded".to_string()),
                    (None, Some(_)) => Some("recomputed".to_string()),
                    (None, None) => None,
                };
                NodeAttempt {
                    attempt: AttemptView::from(*a),
                    output: a.output.clone(),
                    overrides: a.overrides.clone().map(Value::Object),
                    inputs: recorded.or(again).map(Value::Object),
                    inputs_from,
                    dead_letter_id: a.dead_letter.as_ref().map(|_| task_id(a)),
                    child_run_id: (a.node_type == WORKFLOW_NODE)
                        .then(|| kora_model::msg_id::child_run_id(&task_id(a))),
                }
            })
            .collect(),
        run_id: r.run_id,
        node_id,
    }))
}

#[cfg(test)]
mod tests {
    use kora_store::{AttemptRecord, AttemptStatus, DeadLetterInfo};

    use super::node_state;

    fn attempt(attempt: u32, status: AttemptStatus) -> AttemptRecord {
        AttemptRecord {
            run_id: "r".into(),
            node_id: "n".into(),
            iteration: 0,
            attempt,
            node_type: "NoOpNode".into(),
            status,
            output: None,
            error: None,
            error_type: None,
            worker_id: None,
            dispatched_ms: 0,
            finished_ms: None,
            seq: None,
            dead_letter: None,
            overrides: None,
        }
    }

    #[test]
    fn states_follow_the_latest_attempt_and_the_run() {
        assert_eq!(node_state(None, false), "pending");
        assert_eq!(node_state(None, true), "not_run");
        let running = attempt(1, AttemptStatus::Dispatched);
        assert_eq!(node_state(Some(&running), false), "running");
        let again = attempt(2, AttemptStatus::Dispatched);
        assert_eq!(node_state(Some(&again), false), "retrying");
        // A run that ended (cancelled) leaves its attempts unfinished: not "retrying" forever.
        assert_eq!(node_state(Some(&again), true), "not_run");
        let mut failed = attempt(1, AttemptStatus::Failed);
        assert_eq!(node_state(Some(&failed), true), "failed");
        failed.dead_letter = Some(DeadLetterInfo {
            reason: "permanent_error".into(),
            state: "open".into(),
            inputs: None,
            replayed_ms: None,
            replayed_by: None,
            replay_attempt: None,
        });
        assert_eq!(node_state(Some(&failed), true), "dead_lettered");
        assert_eq!(
            node_state(Some(&attempt(1, AttemptStatus::Skipped)), false),
            "skipped"
        );
    }
}

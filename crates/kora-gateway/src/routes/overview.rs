//! `GET /v1/overview` (the tenant's KPIs over a window: throughput, success rate, p50/p99
//! end-to-end time, live and stuck runs) and `GET /v1/fleet` (task queue backlogs and the
//! workers seen, installation-wide), from [`kora_client::overview`] as `kora top` shows them.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use kora_client::overview::{Kpis, StuckRule};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::scopes::Scope;
use crate::state::AppState;

/// The longest window these routes read.
const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// How far back: `15m`, `1h` (the default), `24h`, up to `7d`.
    pub(crate) window: Option<String>,
}

impl WindowQuery {
    fn window(&self) -> ApiResult<Duration> {
        let Some(text) = self.window.as_deref() else {
            return Ok(Duration::from_secs(3600));
        };
        let d = humantime::parse_duration(text).map_err(|e| {
            ApiError::invalid(format!(
                "`window` {text:?} is not a duration such as 1h: {e}"
            ))
        })?;
        if d.is_zero() || d > MAX_WINDOW {
            return Err(ApiError::invalid(format!(
                "`window` {text:?} must be more than 0 and at most 7d"
            )));
        }
        Ok(d)
    }
}

/// Runs that ended in the window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct KpiView {
    pub(crate) finished: u64,
    pub(crate) succeeded: u64,
    /// Failed or rejected.
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    /// Finished runs per second over the window.
    pub(crate) per_sec: f64,
    /// Succeeded out of succeeded and failed (cancelled runs left out); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) success_rate: Option<f64>,
    /// End-to-end time (admission to end), nearest rank.
    pub(crate) p50_secs: f64,
    pub(crate) p99_secs: f64,
}

impl From<&Kpis> for KpiView {
    fn from(k: &Kpis) -> Self {
        KpiView {
            finished: k.finished,
            succeeded: k.succeeded,
            failed: k.failed,
            cancelled: k.cancelled,
            per_sec: k.per_sec,
            success_rate: k.success_rate,
            p50_secs: k.p50_secs,
            p99_secs: k.p99_secs,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkflowKpiView {
    pub(crate) workflow: String,
    pub(crate) kpis: KpiView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LiveView {
    pub(crate) workflow: String,
    pub(crate) running: u64,
    pub(crate) queued: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct StuckView {
    pub(crate) run_id: String,
    pub(crate) workflow: String,
    /// The monitor's reason, once it raised its alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Seconds since the run last made progress.
    pub(crate) idle_secs: u64,
}

/// The tenant's runs over a window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct OverviewView {
    pub(crate) at_ms: u64,
    pub(crate) window_secs: u64,
    pub(crate) totals: KpiView,
    pub(crate) workflows: Vec<WorkflowKpiView>,
    /// Runs running or queued now, per workflow.
    pub(crate) live: Vec<LiveView>,
    /// Running runs with no progress for the monitor's `stuck_after_secs`, or a node retried
    /// its `retry_loop_attempts` times.
    pub(crate) stuck: Vec<StuckView>,
    /// The window held more finished runs than are read (200,000); the figures cover the most
    /// recent.
    pub(crate) truncated: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueueView {
    pub(crate) queue: String,
    /// Tasks no worker has taken yet.
    pub(crate) waiting: u64,
    /// Tasks a worker holds and has not finished.
    pub(crate) running: u64,
    /// How long the oldest waiting task has waited.
    pub(crate) oldest_waiting_secs: f64,
    /// Whether a worker ever bound the queue (one no worker serves never drains).
    pub(crate) served: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkerView {
    pub(crate) worker_id: String,
    /// Attempts it finished in the window.
    pub(crate) attempts: u64,
    /// Whether it is running now (it sent its status in the last 15 s).
    pub(crate) alive: bool,
    /// The task queue it serves, its slots and how many are busy, when it is alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) slots: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) busy: Option<u32>,
    /// Seconds since its last status, when it is alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seen_secs: Option<f64>,
    /// When it started (ms since the epoch), when it is alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) started_ms: Option<u64>,
}

/// The installation's task queues and workers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct FleetView {
    pub(crate) at_ms: u64,
    pub(crate) window_secs: u64,
    pub(crate) queues: Vec<QueueView>,
    pub(crate) workers: Vec<WorkerView>,
}

/// The tenant's KPIs.
///
/// Over the window (default 1 h): runs finished, succeeded, failed and cancelled, throughput,
/// success rate and p50/p99 end-to-end time, in total and per workflow; runs live now; stuck
/// runs.
#[utoipa::path(get, path = "/v1/overview", tag = "runs", operation_id = "get_overview",
    params(WindowQuery),
    responses((status = 200, body = OverviewView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn overview(
    State(st): State<AppState>,
    who: Principal,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<OverviewView>> {
    who.require(Scope::RunsRead)?;
    let rule = StuckRule {
        after_secs: st.cfg.stuck_after_secs,
        retry_loop_attempts: st.cfg.retry_loop_attempts,
    };
    let o = st.control_for(&who).overview(q.window()?, rule).await?;
    Ok(Json(OverviewView {
        at_ms: o.at_ms,
        window_secs: o.window_secs,
        totals: KpiView::from(&o.totals),
        workflows: o
            .workflows
            .iter()
            .map(|w| WorkflowKpiView {
                workflow: w.workflow.clone(),
                kpis: KpiView::from(&w.kpis),
            })
            .collect(),
        live: o
            .live
            .into_iter()
            .map(|l| LiveView {
                workflow: l.workflow,
                running: l.running,
                queued: l.queued,
            })
            .collect(),
        stuck: o
            .stuck
            .into_iter()
            .map(|s| StuckView {
                run_id: s.run_id,
                workflow: s.workflow,
                reason: s.reason,
                idle_secs: s.idle_secs,
            })
            .collect(),
        truncated: o.truncated,
    }))
}

/// The fleet.
///
/// Every task queue's backlog (waiting, running, the oldest waiting task's age, whether a
/// worker serves it); the workers running now with their busy slots (from the statuses they
/// send every 5 s) and those that finished attempts in the window (default 1 h).
/// Installation-wide: the fleet is shared by every tenant.
#[utoipa::path(get, path = "/v1/fleet", tag = "runs", operation_id = "get_fleet",
    params(WindowQuery),
    responses((status = 200, body = FleetView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn fleet(
    State(st): State<AppState>,
    who: Principal,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<FleetView>> {
    who.require(Scope::FleetRead)?;
    let f = st.control.fleet(q.window()?).await?;
    Ok(Json(FleetView {
        at_ms: f.at_ms,
        window_secs: f.window_secs,
        queues: f
            .queues
            .into_iter()
            .map(|q| QueueView {
                served: q.backlog.bound,
                waiting: q.backlog.waiting,
                running: q.backlog.running,
                queue: q.backlog.queue,
                oldest_waiting_secs: q.oldest_waiting_secs,
            })
            .collect(),
        workers: workers_of(&st, f.workers),
    }))
}

/// The workers alive now (with their busy slots) and those that finished attempts in the
/// window, by id: a worker of a process that exited shows with its attempts only.
fn workers_of(st: &AppState, finished: Vec<kora_client::overview::WorkerRow>) -> Vec<WorkerView> {
    let mut by_id: std::collections::BTreeMap<String, WorkerView> = finished
        .into_iter()
        .map(|w| {
            let view = WorkerView {
                worker_id: w.worker_id.clone(),
                attempts: w.attempts,
                alive: false,
                queue: None,
                slots: None,
                busy: None,
                seen_secs: None,
                started_ms: None,
            };
            (w.worker_id, view)
        })
        .collect();
    for (s, ago) in st.workers.alive() {
        let v = by_id
            .entry(s.worker_id.clone())
            .or_insert_with(|| WorkerView {
                worker_id: s.worker_id.clone(),
                attempts: 0,
                alive: true,
                queue: None,
                slots: None,
                busy: None,
                seen_secs: None,
                started_ms: None,
            });
        v.alive = true;
        v.queue = Some(s.queue);
        v.slots = Some(s.slots);
        v.busy = Some(s.busy);
        v.seen_secs = Some(ago.as_secs_f64());
        v.started_ms = Some(s.started_ms);
    }
    by_id.into_values().collect()
}

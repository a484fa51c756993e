use kora_model::wire::RunEvent;
use kora_model::{Map, Value, WorkflowSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Rejected,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "rejected" => RunStatus::Rejected,
            _ => return None,
        })
    }
    pub fn is_final(self) -> bool {
        self != RunStatus::Running
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub idempotency_key: Option<String>,
    pub workflow_id: String,
    pub workflow_name: String,
    pub status: RunStatus,
    /// `None` for a rejected run whose workflow could not be read.
    pub spec: Option<WorkflowSpec>,
    pub params: Map,
    pub error: Option<String>,
    pub error_node: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    Dispatched,
    Succeeded,
    Failed,
    Skipped,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Dispatched => "dispatched",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Skipped => "skipped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "dispatched" => AttemptStatus::Dispatched,
            "succeeded" => AttemptStatus::Succeeded,
            "failed" => AttemptStatus::Failed,
            "skipped" => AttemptStatus::Skipped,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub run_id: String,
    pub node_id: String,
    pub iteration: u32,
    pub attempt: u32,
    pub node_type: String,
    pub status: AttemptStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub error_type: Option<String>,
    pub worker_id: Option<String>,
    pub dispatched_ms: u64,
    pub finished_ms: Option<u64>,
    /// Order in which outcomes were recorded within the run; replaying outcomes in this order
    /// rebuilds the planner's state.
    pub seq: Option<u64>,
}

/// Identifies one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    pub run_id: String,
    pub node_id: String,
    pub iteration: u32,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub run_id: String,
    pub idempotency_key: Option<String>,
    pub spec: Option<WorkflowSpec>,
    pub params: Map,
    pub status: RunStatus,
    pub error: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAttempt {
    pub run_id: String,
    pub node_id: String,
    pub iteration: u32,
    pub attempt: u32,
    pub node_type: String,
    /// `Dispatched`, or `Skipped` for a node conditional routing skipped.
    pub status: AttemptStatus,
    pub at_ms: u64,
}

/// The outcome of a dispatched attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptUpdate {
    pub run_id: String,
    pub node_id: String,
    pub iteration: u32,
    pub attempt: u32,
    pub status: AttemptStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub error_type: Option<String>,
    pub worker_id: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunUpdate {
    pub run_id: String,
    pub status: RunStatus,
    pub error: Option<String>,
    pub error_node: Option<String>,
    pub at_ms: u64,
}

/// Everything one coordinator batch writes, applied in one transaction in this order:
/// new runs, new attempts, attempt outcomes (so an attempt created in this batch can already
/// have its outcome), run updates, events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Checked before anything is written; if one fails, the whole batch fails with
    /// [`crate::Error::Conflict`] and nothing is written.
    pub expect: Vec<Expect>,
    pub new_runs: Vec<NewRun>,
    pub outcomes: Vec<AttemptUpdate>,
    pub new_attempts: Vec<NewAttempt>,
    pub run_updates: Vec<RunUpdate>,
    pub events: Vec<RunEvent>,
}

/// What a writer assumes about a run: how several coordinators share runs safely
/// (optimistic concurrency; the loser rebuilds its state from the ledger and retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The run has exactly this many recorded outcomes.
    Outcomes { run_id: String, count: u64 },
    /// The run does not exist yet.
    Absent { run_id: String },
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.new_runs.is_empty()
            && self.outcomes.is_empty()
            && self.new_attempts.is_empty()
            && self.run_updates.is_empty()
            && self.events.is_empty()
    }
}

/// What a commit skipped as already recorded (the fencing counters operators alert on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitReport {
    pub runs_existing: usize,
    pub outcomes_ignored: usize,
    pub attempts_existing: usize,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub limit: usize,
}

/// Kailash's result shape, `{node_id: output or null}`, from a run's attempts: each node's
/// latest attempt (highest iteration, then attempt); a failed node gets
/// `{"error", "error_type", "failed": true}`, a skipped or unrun node `null`.
pub fn results_from_attempts(node_ids: &[String], attempts: &[AttemptRecord]) -> Map {
    results_from_iter(node_ids, attempts.iter())
}

/// [`results_from_attempts`] over borrowed records (no copies of the attempts).
pub(crate) fn results_from_iter<'a>(
    node_ids: &[String],
    attempts: impl Iterator<Item = &'a AttemptRecord>,
) -> Map {
    let mut latest: std::collections::HashMap<&str, &AttemptRecord> =
        std::collections::HashMap::new();
    for a in attempts {
        let newer = latest
            .get(a.node_id.as_str())
            .is_none_or(|b| (a.iteration, a.attempt) >= (b.iteration, b.attempt));
        if newer {
            latest.insert(&a.node_id, a);
        }
    }
    node_ids
        .iter()
        .map(|id| {
            let v = match latest.get(id.as_str()) {
                Some(a) if a.status == AttemptStatus::Succeeded => {
                    a.output.clone().unwrap_or(Value::Null)
                }
                Some(a) if a.status == AttemptStatus::Failed => serde_json::json!({
                    "error": a.error.clone().unwrap_or_default(),
                    "error_type": a.error_type.clone().unwrap_or_default(),
                    "failed": true,
                }),
                _ => Value::Null,
            };
            (id.clone(), v)
        })
        .collect()
}

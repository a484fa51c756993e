use kora_model::wire::RunEvent;
use kora_model::{Map, Value, WorkflowSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Accepted, waiting for a slot under its workflow's concurrency limit.
    Queued,
    Running,
    Succeeded,
    Failed,
    Rejected,
    /// Stopped by an operator (`kora runs cancel`).
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Rejected => "rejected",
            RunStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "rejected" => RunStatus::Rejected,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Running | RunStatus::Queued)
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
    /// A child run's parent attempt (task id), for a run a WorkflowNode started.
    pub parent: Option<String>,
    /// The highest sequence number among the run's events (0 before its first).
    pub event_seq: u64,
    /// The tenant the run belongs to (`default` unless a gateway credential said otherwise).
    pub tenant: String,
}

/// A group of live runs ([`crate::Store::live_runs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRuns {
    pub tenant: String,
    pub workflow: String,
    /// `Running` or `Queued`.
    pub status: RunStatus,
    pub runs: u64,
}

/// A run that ended ([`crate::Store::finished_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRun {
    pub tenant: String,
    pub workflow: String,
    pub status: RunStatus,
    pub created_ms: u64,
    pub finished_ms: u64,
}

/// A running run with no recent progress, or a node retried many times
/// ([`crate::Store::stuck_runs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckRun {
    pub run_id: String,
    pub tenant: String,
    pub workflow: String,
    pub created_ms: u64,
    /// The run's latest activity: a dispatch, an outcome, a status change (a retry due later
    /// counts at its due time).
    pub progress_ms: u64,
    /// The highest attempt number among its attempts.
    pub max_attempt: u32,
    /// Nodes with an attempt dispatched and not finished, in order.
    pub in_flight: Vec<String>,
}

/// An alert the monitor raises ([`crate::Store::open_alert`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// What the alert is about, unique while it is open: `run_stuck:<run id>`,
    /// `latency_anomaly:<tenant>/<workflow>/<node type>`, `queue_backlog:<queue>`.
    pub subject: String,
    pub kind: String,
    pub severity: String,
    /// The alert as sinks receive it.
    pub body: Value,
}

/// An alert in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub subject: String,
    pub kind: String,
    pub severity: String,
    pub body: Value,
    pub opened_ms: u64,
    pub resolved_ms: Option<u64>,
}

/// Connections of a store's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
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
    /// Set when this (failed) attempt was dead-lettered.
    pub dead_letter: Option<DeadLetterInfo>,
    /// Inputs an operator set for this attempt when replaying (applied over the computed ones).
    pub overrides: Option<Map>,
}

/// A registered trigger: messages on `subject`, or the ticks of the cron `schedule`, start runs
/// of `spec`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRecord {
    pub name: String,
    /// Empty for a cron trigger.
    pub subject: String,
    pub schedule: Option<String>,
    pub spec: WorkflowSpec,
    /// Parameters of every run it starts; the message's own go over them.
    pub params: Map,
    pub paused: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The tenant its runs belong to.
    pub tenant: String,
    /// Set on a webhook trigger (its runs start from signed HTTP requests to the gateway): what
    /// its signing secret derives from, with the gateway's key pepper. Not a secret itself.
    pub webhook_salt: Option<String>,
}

/// Why and how an attempt was dead-lettered, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterInfo {
    /// `permanent_error`, `retries_exhausted`, ...
    pub reason: String,
    /// `open`, `replayed` or `purged`.
    pub state: String,
    /// The runtime inputs the failed attempt ran with.
    pub inputs: Option<Map>,
    /// The audit trail: when, by whom, and as which new attempt it was replayed.
    pub replayed_ms: Option<u64>,
    pub replayed_by: Option<String>,
    pub replay_attempt: Option<u32>,
}

/// A dead-lettered attempt with its run's workflow, as `kora dlq list` shows it. Its id is the
/// task id, `<run>:<node>:<iteration>:<attempt>`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    pub id: String,
    pub workflow_name: String,
    pub run_status: RunStatus,
    pub attempt: AttemptRecord,
}

#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub workflow: Option<String>,
    pub reason: Option<String>,
    pub since_ms: Option<u64>,
    /// Only `open` ones unless set.
    pub any_state: bool,
    pub run_id: Option<String>,
    /// Only this one (its id, the task id).
    pub id: Option<String>,
    /// Only dead letters of this tenant's runs.
    pub tenant: Option<String>,
    /// 0 = no limit.
    pub limit: usize,
}

/// Replaying one dead letter: a new attempt of its node, with `overrides` over its inputs.
///
/// With `restart`, `id` is the latest attempt of a node of a run that ended (any outcome),
/// and the run restarts from that node: `restart` lists the nodes downstream of it, which the
/// coordinator dispatches again as the node's new attempt completes (their open dead letters
/// are closed as replayed; their old outcomes stay in the ledger, superseded).
#[derive(Debug, Clone, Default)]
pub struct ReplayRequest {
    pub id: String,
    pub overrides: Map,
    pub actor: String,
    pub at_ms: u64,
    pub restart: Option<Vec<String>>,
}

/// The audit event a restart writes, numbered after the run's last event.
pub(crate) fn restart_event(
    req: &ReplayRequest,
    key: &AttemptKey,
    next: u32,
    seq: u64,
) -> RunEvent {
    RunEvent {
        v: kora_model::wire::WIRE_VERSION,
        event_id: format!("{}:{seq}", key.run_id),
        run_id: key.run_id.clone(),
        seq,
        kind: kora_model::wire::EventKind::RunRestarted,
        node_id: Some(key.node_id.clone()),
        iteration: key.iteration,
        attempt: next,
        at_ms: req.at_ms,
        detail: Some(serde_json::json!({
            "by": req.actor,
            "from_node": key.node_id,
            "overrides": req.overrides,
            "rerun": req.restart,
        })),
    }
}

impl ReplayRequest {
    /// What `id` names, for messages.
    pub fn what(&self) -> &'static str {
        if self.restart.is_some() {
            "attempt"
        } else {
            "dead letter"
        }
    }
}

/// What a replay wrote: the run reopened and the attempts (re)dispatched.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOutcome {
    pub run_id: String,
    pub node_id: String,
    pub attempt: u32,
    /// Other nodes that were in flight when the run failed, dispatched again.
    pub redispatched: Vec<AttemptKey>,
}

impl DeadLetterFilter {
    /// Whether `a` (of a run with this workflow name and tenant) passes.
    pub fn admits(&self, workflow_name: &str, tenant: &str, a: &AttemptRecord) -> bool {
        let Some(dl) = &a.dead_letter else {
            return false;
        };
        if self.tenant.as_deref().is_some_and(|t| t != tenant) {
            return false;
        }
        (self.any_state || dl.state == "open")
            && self.workflow.as_deref().is_none_or(|w| w == workflow_name)
            && self.reason.as_deref().is_none_or(|r| r == dl.reason)
            && self
                .since_ms
                .is_none_or(|t| a.finished_ms.unwrap_or(0) >= t)
            && self.run_id.as_deref().is_none_or(|r| r == a.run_id)
            && self.id.as_deref().is_none_or(|id| {
                id == kora_model::wire::NodeTask::make_id(
                    &a.run_id,
                    &a.node_id,
                    a.iteration,
                    a.attempt,
                )
            })
    }
}

/// Splits a dead letter's id (a task id) into its attempt key.
pub fn parse_dead_letter_id(id: &str) -> Option<AttemptKey> {
    // Run ids hold no ':'; node ids may.
    let (run_id, rest) = id.split_once(':')?;
    let mut parts = rest.rsplitn(3, ':');
    let attempt = parts.next()?.parse().ok()?;
    let iteration = parts.next()?.parse().ok()?;
    let node_id = parts.next()?.to_string();
    let run_id = run_id.to_string();
    Some(AttemptKey {
        run_id,
        node_id,
        iteration,
        attempt,
    })
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
    /// The run's concurrency group and its limit: the commit is refused (a conflict) if it
    /// would leave more runs of the group running than the limit.
    pub concurrency: Option<(String, u32)>,
    /// When the run must be finished by; past it the coordinator fails it.
    pub deadline_ms: Option<u64>,
    /// The parent attempt (task id) of a child run started by a WorkflowNode.
    pub parent: Option<String>,
    pub tenant: String,
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
    /// Dead-letter this failed attempt: `(reason, the inputs it ran with)`.
    pub dead_letter: Option<(String, Map)>,
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
    /// Idempotency keys whose runs are older than the window: released (their runs no longer
    /// hold them) before the new runs are written, so a new run can take them.
    pub release_keys: Vec<String>,
    /// Submissions deduplicated onto an earlier run (same key, within the window).
    pub aliases: Vec<Alias>,
    /// Audit entries recorded by nodes, with their attempts' outcomes.
    pub audit: Vec<AuditEntry>,
    /// Tasks published since the previous commit, marked published at `published_ms` (the
    /// outbox's hint, as [`crate::Store::mark_published`]): carried by the next commit rather
    /// than a statement of their own. Marks alone do not make a batch non-empty.
    pub published: Vec<AttemptKey>,
    pub published_ms: u64,
}

/// One audit entry (what AuditLogNode records), keyed by its attempt and its place among that
/// attempt's entries: written once however often the result is delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub run_id: String,
    pub node_id: String,
    pub iteration: u32,
    pub attempt: u32,
    pub idx: u32,
    pub at_ms: u64,
    pub entry: Value,
}

/// Which audit entries to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub run_id: Option<String>,
    /// Only entries of this tenant's runs.
    pub tenant: Option<String>,
    pub event_type: Option<String>,
    pub since_ms: Option<u64>,
    /// 0 = no limit.
    pub limit: usize,
}

impl AuditFilter {
    pub fn admits(&self, a: &AuditEntry) -> bool {
        self.run_id.as_deref().is_none_or(|r| r == a.run_id)
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| a.entry.get("event_type").and_then(Value::as_str) == Some(t))
            && self.since_ms.is_none_or(|s| a.at_ms >= s)
    }
}

/// A run id that names another run: a submission deduplicated by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub alias: String,
    pub run_id: String,
    pub at_ms: u64,
}

/// What a writer assumes about a run: how several coordinators share runs safely
/// (optimistic concurrency; the loser rebuilds its state from the ledger and retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The run has exactly this many recorded outcomes.
    Outcomes { run_id: String, count: u64 },
    /// The run does not exist yet.
    Absent { run_id: String },
    /// The run is queued (under a concurrency limit): what starting it assumes.
    Queued { run_id: String },
    /// The run's highest event sequence is `seq` (or the run does not exist): the batch's
    /// events for it are numbered from `seq + 1`. Numbers another writer took since would be
    /// dropped as duplicates (by the ledger and the broker alike), so this is a conflict.
    Events { run_id: String, seq: u64 },
}

impl Batch {
    /// Whether this batch can start runs under a concurrency limit or sets a deadline: the
    /// stores then check the limits after writing.
    pub fn limited(&self) -> bool {
        self.new_runs
            .iter()
            .any(|r| r.concurrency.is_some() || r.deadline_ms.is_some() || r.parent.is_some())
            || self
                .expect
                .iter()
                .any(|e| matches!(e, Expect::Queued { .. }))
    }

    pub fn is_empty(&self) -> bool {
        self.new_runs.is_empty()
            && self.outcomes.is_empty()
            && self.new_attempts.is_empty()
            && self.run_updates.is_empty()
            && self.events.is_empty()
            && self.aliases.is_empty()
            && self.audit.is_empty()
            && self.release_keys.is_empty()
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
    /// Only this tenant's runs.
    pub tenant: Option<String>,
    /// Only runs of this workflow (its name, else its id).
    pub workflow: Option<String>,
    /// Only runs created at or after this (ms).
    pub since_ms: Option<u64>,
    /// Only runs created before this (ms).
    pub until_ms: Option<u64>,
    /// A page after this one: runs strictly older than `(created_ms, run_id)` (the last row of
    /// the previous page), newest first.
    pub before: Option<(u64, String)>,
    /// 0 = no limit.
    pub limit: usize,
}

impl RunFilter {
    pub fn admits(&self, r: &RunRecord) -> bool {
        self.status.is_none_or(|s| r.status == s)
            && self.tenant.as_deref().is_none_or(|t| t == r.tenant)
            && self.workflow.as_deref().is_none_or(|w| {
                w == r.workflow_name || (r.workflow_name.is_empty() && w == r.workflow_id)
            })
            && self.since_ms.is_none_or(|t| r.created_ms >= t)
            && self.until_ms.is_none_or(|t| r.created_ms < t)
            && self
                .before
                .as_ref()
                .is_none_or(|(ms, id)| (r.created_ms, r.run_id.as_str()) < (*ms, id.as_str()))
    }
}

/// Kailash's result shape, `{node_id: output or null}`, from a run's attempts: each node's
/// latest attempt (highest iteration, then attempt); a failed node gets
/// `{"error", "error_type", "failed": true}`, a skipped or unrun node `null`.
pub fn results_from_attempts(node_ids: &[String], attempts: &[AttemptRecord]) -> Map {
    results_from_iter(node_ids, attempts.iter())
}

/// A node's entry in a run's results from its latest attempt: its output if it succeeded,
/// Kailash's shape for a failed leaf if it failed, else `null`.
pub(crate) fn node_result(
    status: AttemptStatus,
    output: Option<Value>,
    error: Option<String>,
    error_type: Option<String>,
) -> Value {
    match status {
        AttemptStatus::Succeeded => output.unwrap_or(Value::Null),
        AttemptStatus::Failed => serde_json::json!({
            "error": error.unwrap_or_default(),
            "error_type": error_type.unwrap_or_default(),
            "failed": true,
        }),
        _ => Value::Null,
    }
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
            let v = latest.get(id.as_str()).map_or(Value::Null, |a| {
                node_result(
                    a.status,
                    a.output.clone(),
                    a.error.clone(),
                    a.error_type.clone(),
                )
            });
            (id.clone(), v)
        })
        .collect()
}

/// What a replay writes, decided from the run's attempts the same way for every store.
pub(crate) struct ReplayPlan {
    /// The dead letter's node's new attempt number.
    pub next: u32,
    /// New attempt rows: `(node_id, iteration, attempt, node_type, overrides)`; the first is
    /// the dead letter's node (with the request's overrides), then every other node whose
    /// latest attempt was in flight when the run ended (its task is gone), keeping its
    /// overrides.
    pub fresh: Vec<(String, u32, u32, String, Option<Map>)>,
    pub redispatched: Vec<AttemptKey>,
    /// Open dead letters a restart supersedes (of the node and those downstream of it).
    pub superseded: Vec<AttemptKey>,
}

/// Plans the replay of `req` over the run's `attempts`; `Err` says why it is refused.
pub(crate) fn plan_replay(
    req: &ReplayRequest,
    key: &AttemptKey,
    attempts: &[AttemptRecord],
    run_status: RunStatus,
) -> Result<ReplayPlan, String> {
    let Some(dl) = attempts.iter().find(|a| {
        a.node_id == key.node_id && a.iteration == key.iteration && a.attempt == key.attempt
    }) else {
        return Err(if req.restart.is_some() {
            "no such attempt".into()
        } else {
            "no such dead letter".into()
        });
    };
    let restart: &[String] = req.restart.as_deref().unwrap_or_default();
    if req.restart.is_some() {
        if !matches!(
            run_status,
            RunStatus::Failed | RunStatus::Succeeded | RunStatus::Cancelled
        ) {
            return Err(format!(
                "the run is {}: only a run that ended can be restarted from a node (cancel it first)",
                run_status.as_str()
            ));
        }
        if !matches!(dl.status, AttemptStatus::Succeeded | AttemptStatus::Failed) {
            return Err(format!(
                "node '{}' did not run to an outcome in this run ({})",
                key.node_id,
                dl.status.as_str()
            ));
        }
        if attempts.iter().any(|a| {
            a.node_id == key.node_id && a.iteration == key.iteration && a.attempt > key.attempt
        }) {
            return Err("that is not the node's latest attempt".into());
        }
    } else {
        match &dl.dead_letter {
            Some(info) if info.state == "open" => {}
            Some(info) => {
                let by = info
                    .replayed_by
                    .as_ref()
                    .map(|b| format!(" (by {b}, as attempt {})", info.replay_attempt.unwrap_or(0)))
                    .unwrap_or_default();
                return Err(format!("it is already {}{by}", info.state));
            }
            None => return Err("that attempt was not dead-lettered".into()),
        }
    }
    let mut latest: std::collections::HashMap<(&str, u32), &AttemptRecord> =
        std::collections::HashMap::new();
    for a in attempts {
        let e = latest.entry((a.node_id.as_str(), a.iteration)).or_insert(a);
        if a.attempt > e.attempt {
            *e = a;
        }
    }
    let next = latest
        .get(&(key.node_id.as_str(), key.iteration))
        .map_or(key.attempt, |a| a.attempt)
        + 1;
    let mut orphans: Vec<&AttemptRecord> = latest
        .values()
        .filter(|a| {
            a.status == AttemptStatus::Dispatched
                && !(a.node_id == key.node_id && a.iteration == key.iteration)
                && !restart.contains(&a.node_id)
        })
        .copied()
        .collect();
    orphans.sort_by(|a, b| (&a.node_id, a.iteration).cmp(&(&b.node_id, b.iteration)));
    let overrides = (!req.overrides.is_empty()).then(|| req.overrides.clone());
    let mut fresh = vec![(
        key.node_id.clone(),
        key.iteration,
        next,
        dl.node_type.clone(),
        overrides,
    )];
    let mut redispatched = Vec::new();
    for o in orphans {
        redispatched.push(AttemptKey {
            run_id: key.run_id.clone(),
            node_id: o.node_id.clone(),
            iteration: o.iteration,
            attempt: o.attempt + 1,
        });
        fresh.push((
            o.node_id.clone(),
            o.iteration,
            o.attempt + 1,
            o.node_type.clone(),
            o.overrides.clone(),
        ));
    }
    let superseded = if req.restart.is_some() {
        attempts
            .iter()
            .filter(|a| {
                (a.node_id == key.node_id || restart.contains(&a.node_id))
                    && !(a.node_id == key.node_id
                        && a.iteration == key.iteration
                        && a.attempt == key.attempt)
                    && a.dead_letter.as_ref().is_some_and(|d| d.state == "open")
            })
            .map(|a| AttemptKey {
                run_id: a.run_id.clone(),
                node_id: a.node_id.clone(),
                iteration: a.iteration,
                attempt: a.attempt,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ReplayPlan {
        next,
        fresh,
        redispatched,
        superseded,
    })
}

/// A trigger write that changed no row: its name belongs to another tenant.
pub(crate) fn trigger_written(t: &TriggerRecord, rows: u64) -> crate::Result<()> {
    if rows == 0 {
        return Err(crate::Error::Taken(format!(
            "the trigger name {:?} is taken: choose another",
            t.name
        )));
    }
    Ok(())
}

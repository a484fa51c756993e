//! Wire messages, version 1: MessagePack maps with named fields (`rmp_serde::to_vec_named`,
//! numbers as MessagePack numbers and integers past 64 bits exact: [`crate::msgpack`]).
//! `proto/` describes them language-neutrally with golden vectors the tests decode.
//!
//! Evolution rules: fields are only added, always with a default; a reader rejects a message
//! whose `v` is newer than it knows; ids are strings (UUIDs in their text form).

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::spec::WorkflowSpec;
use crate::value::{Map, Value};

pub const WIRE_VERSION: u16 = 1;

/// A request to run a workflow, published by `kora submit`, the gateway, triggers or any service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub v: u16,
    /// Chosen by the submitter (a UUID) so a resubmission after a lost ack is the same run.
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub workflow: WorkflowSpec,
    #[serde(default)]
    pub params: Map,
    #[serde(default)]
    pub submitted_at_ms: u64,
    /// Set on a child run started by a WorkflowNode: the parent's attempt (its task id,
    /// `<run>:<node>:<iteration>:<attempt>`), which gets the child's outcome as its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The tenant the run belongs to (omitted for the default one).
    #[serde(
        default = "crate::tenant::default_name",
        skip_serializing_if = "crate::tenant::is_default"
    )]
    pub tenant: String,
}

/// What the scheduler hands the coordinator: an admitted run, or a rejected one with reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    Admitted {
        request: Box<RunRequest>,
    },
    Rejected {
        run_id: String,
        problems: Vec<String>,
        submitted_at_ms: u64,
        #[serde(
            default = "crate::tenant::default_name",
            skip_serializing_if = "crate::tenant::is_default"
        )]
        tenant: String,
    },
}

/// One node execution for a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeTask {
    pub v: u16,
    /// `{run_id}:{node_id}:{iteration}:{attempt}`: the publish dedup id and the fencing token.
    pub task_id: String,
    pub run_id: String,
    pub node_id: String,
    pub node_type: String,
    #[serde(default)]
    pub iteration: u32,
    pub attempt: u32,
    #[serde(default)]
    pub config: Map,
    /// Edge values and runtime parameters; the worker overlays them on `config`.
    #[serde(default)]
    pub inputs: Map,
    /// The node's execution limit: past it the worker stops the node and reports a retryable
    /// `TimeoutError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl NodeTask {
    pub fn make_id(run_id: &str, node_id: &str, iteration: u32, attempt: u32) -> String {
        format!("{run_id}:{node_id}:{iteration}:{attempt}")
    }
}

/// Externally tagged (`{"success": {...}}`), so readers decode it without buffering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    Success {
        output: Map,
    },
    Failure {
        error: String,
        error_type: String,
        retryable: bool,
        /// The node's own word on when to try again (an HTTP 429 or 503 `Retry-After`): the
        /// next attempt waits at least this long, whatever the retry policy's delay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// An operator's request to the coordinator, on `<p>.ledger.resume`: a replayed run was
/// reopened in the ledger with these new attempts; send their tasks now. (If this message is
/// lost, the coordinator's outbox sweeper sends them after its grace period.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub v: u16,
    pub run_id: String,
    pub attempts: Vec<AttemptRef>,
}

/// An operator's request to cancel a run, on `<p>.ledger.cancel`. The coordinator records the
/// run cancelled (if it is still running), announces `run_cancelled`, and tells workers to stop
/// the run's tasks (a notification on `<p>.control.cancel.<run_id>`); their late results are
/// ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancel {
    pub v: u16,
    pub run_id: String,
    /// Who asked, for the record.
    pub by: String,
    /// Set when the coordinator ends a run past its deadline (`deadline_secs`): the run is
    /// recorded failed (`DeadlineExceeded`), not cancelled. This is the deadline, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// An operator's request to the coordinator, on `<p>.ledger.op`: the coordinator is the only
/// writer of run state, so replays, restarts and purges are applied by it (in the ledger, then
/// the tasks they cause are sent) and answered on `reply_to`. Stored on the ledger stream: a
/// request made while no coordinator runs is applied when one starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub v: u16,
    /// Chosen by the requester (a UUID): the message id (`op:<request_id>`) and the reply's.
    pub request_id: String,
    /// Who asked, for the record (`$KORA_ACTOR`, a user, an API key's owner).
    pub actor: String,
    /// When it was asked, in Unix ms: recorded as the replay's time.
    pub at_ms: u64,
    /// A NATS core subject the requester listens on for the [`OperationReply`]; none, no reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    pub op: OperationKind,
}

/// What an [`Operation`] asks: a map with one key naming the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Run a dead-lettered attempt's node again (its id is the attempt's task id), with
    /// `overrides` over its inputs, and resume the run from there.
    Replay {
        dead_letter: String,
        #[serde(default)]
        overrides: Map,
    },
    /// Restart a run that ended from `node_id`: it and every node downstream of it run again.
    Restart {
        run_id: String,
        node_id: String,
        #[serde(default)]
        overrides: Map,
    },
    /// Close open dead letters without replaying them.
    Purge { filter: DeadLetterSelector },
}

/// Which dead letters a purge closes: every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Only dead letters of this tenant's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// The coordinator's answer to an [`Operation`], on its `reply_to` (NATS core, at most once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationReply {
    pub v: u16,
    pub request_id: String,
    pub outcome: OperationOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationOutcome {
    /// The run reopened: `attempt` of `node_id` was sent, and the other nodes that were in
    /// flight when it ended were sent again.
    Replayed {
        run_id: String,
        node_id: String,
        attempt: u32,
        #[serde(default)]
        redispatched: Vec<AttemptRef>,
    },
    Purged {
        count: u64,
    },
    /// Nothing was done, and why (a dead letter already replayed, a run still running...).
    Refused {
        error: String,
        #[serde(default)]
        kind: RefusalKind,
    },
}

/// Why an operator request was refused, for the requester to answer accordingly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// What it names does not exist (a run, a dead letter).
    NotFound,
    /// It cannot be done as asked (a node inside a cycle, a malformed id).
    Invalid,
    /// Not in this state (already replayed, still running).
    #[default]
    Conflict,
}

/// One attempt of a run's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRef {
    pub node_id: String,
    pub iteration: u32,
    pub attempt: u32,
}

/// A worker's answer to a [`NodeTask`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeResult {
    pub v: u16,
    pub task_id: String,
    pub run_id: String,
    pub node_id: String,
    #[serde(default)]
    pub iteration: u32,
    pub attempt: u32,
    pub outcome: TaskOutcome,
    #[serde(default)]
    pub worker_id: String,
    #[serde(default)]
    pub started_at_ms: u64,
    #[serde(default)]
    pub finished_at_ms: u64,
    /// Audit entries the node recorded (AuditLogNode): written to the ledger's audit log
    /// with this result's outcome, once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<crate::Value>,
}

impl NodeResult {
    /// Makes the result storable in the ledger, which cannot hold a NUL character: an output
    /// with one fails the node (`InvalidOutput`, naming where; changing the data would be
    /// worse), and error text and audit entries have theirs replaced by U+FFFD.
    pub fn make_storable(&mut self) {
        use crate::value::{find_nul_in_map, strip_nul, without_nul};
        if let TaskOutcome::Success { output } = &self.outcome
            && let Some(path) = find_nul_in_map(output)
        {
            self.outcome = TaskOutcome::Failure {
                error: format!(
                    "node '{}': its output holds a NUL character (\\u0000) at {path}, which the ledger cannot store; remove it (e.g. decode bytes, or strip '\\x00')",
                    without_nul(&self.node_id)
                ),
                error_type: crate::error_type::INVALID_OUTPUT.into(),
                retryable: false,
                retry_after_ms: None,
            };
        }
        if let TaskOutcome::Failure {
            error, error_type, ..
        } = &mut self.outcome
        {
            if error.contains('\0') {
                *error = without_nul(error);
            }
            if error_type.contains('\0') {
                *error_type = without_nul(error_type);
            }
        }
        for a in &mut self.audit {
            strip_nul(a);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RunAccepted,
    RunRejected,
    NodeDispatched,
    NodeSucceeded,
    NodeFailed,
    NodeSkipped,
    CycleIteration,
    RunSucceeded,
    RunFailed,
    /// An attempt failed and another is scheduled; `detail` has the error, the next attempt
    /// and its delay.
    NodeRetrying,
    /// An operator cancelled the run; `detail` has who.
    RunCancelled,
    /// The run waits for a slot under its workflow's concurrency limit; `detail` has the group.
    RunQueued,
    /// A queued run got its slot and started.
    RunStarted,
    /// This submission carried the idempotency key of a run younger than the idempotency
    /// window: no run was made; `detail.run_id` is the run it stands for. Published on the
    /// submission's own run id (which becomes an alias of that run), not stored as an event.
    RunDeduplicated,
    /// An operator restarted the ended run from a node (`kora runs retry --from`): `detail`
    /// has who and from which node. Written by the ledger with the restart (the audit trail).
    RunRestarted,
}

impl EventKind {
    /// `run` for run-level events, `node` for node-level ones: the subject token before the kind.
    pub fn level(self) -> &'static str {
        match self {
            EventKind::RunAccepted
            | EventKind::RunRejected
            | EventKind::RunSucceeded
            | EventKind::RunFailed
            | EventKind::RunCancelled
            | EventKind::RunQueued
            | EventKind::RunStarted
            | EventKind::RunDeduplicated
            | EventKind::RunRestarted => "run",
            _ => "node",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunAccepted => "run_accepted",
            EventKind::RunRejected => "run_rejected",
            EventKind::NodeDispatched => "node_dispatched",
            EventKind::NodeSucceeded => "node_succeeded",
            EventKind::NodeFailed => "node_failed",
            EventKind::NodeRetrying => "node_retrying",
            EventKind::RunCancelled => "run_cancelled",
            EventKind::RunQueued => "run_queued",
            EventKind::RunStarted => "run_started",
            EventKind::RunDeduplicated => "run_deduplicated",
            EventKind::RunRestarted => "run_restarted",
            EventKind::NodeSkipped => "node_skipped",
            EventKind::CycleIteration => "cycle_iteration",
            EventKind::RunSucceeded => "run_succeeded",
            EventKind::RunFailed => "run_failed",
        }
    }
}

/// A notification about a run, published after the ledger commit. At least once: dedupe on
/// `event_id` (`{run_id}:{seq}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub v: u16,
    pub event_id: String,
    pub run_id: String,
    pub seq: u64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default)]
    pub iteration: u32,
    #[serde(default)]
    pub attempt: u32,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// A run's node-level events from one ledger commit, in sequence order, as one message on
/// `<p>.event.<run_id>.nodes`: a 10,000-node fan-out publishes a few dozen of these rather than
/// 10,000 single events. Run-level events (accepted, succeeded, ...) stay one message each, and
/// a run-level event is published after the node events before it. At least once: dedupe on
/// each event's `event_id`. Generic so the coordinator can publish borrowed events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEvents<E = RunEvent> {
    pub v: u16,
    pub run_id: String,
    pub events: Vec<E>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("undecodable {what}: {source}")]
    Decode {
        what: &'static str,
        source: rmp_serde::decode::Error,
    },
    #[error(
        "{what} has wire version {got}, this build reads up to {WIRE_VERSION}; upgrade this process"
    )]
    Version { what: &'static str, got: u16 },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: rmp_serde::encode::Error,
    },
}

/// Messages that carry a wire version.
pub trait Versioned {
    const WHAT: &'static str;
    fn version(&self) -> u16;
}

macro_rules! versioned {
    ($t:ty, $what:literal) => {
        impl Versioned for $t {
            const WHAT: &'static str = $what;
            fn version(&self) -> u16 {
                self.v
            }
        }
    };
}
versioned!(RunRequest, "run request");
versioned!(NodeTask, "node task");
versioned!(NodeResult, "node result");
versioned!(RunEvent, "run event");
versioned!(Resume, "resume request");
versioned!(Cancel, "cancel request");
versioned!(Operation, "operator request");
versioned!(OperationReply, "operator reply");

impl<E> Versioned for NodeEvents<E> {
    const WHAT: &'static str = "node events";
    fn version(&self) -> u16 {
        self.v
    }
}

impl Versioned for Admission {
    const WHAT: &'static str = "admission";
    fn version(&self) -> u16 {
        match self {
            Admission::Admitted { request } => request.v,
            Admission::Rejected { .. } => WIRE_VERSION,
        }
    }
}

pub fn encode<T: Serialize + Versioned>(msg: &T) -> Result<Vec<u8>, WireError> {
    crate::msgpack::to_vec_named(msg).map_err(|source| WireError::Encode {
        what: T::WHAT,
        source,
    })
}

pub fn decode<T: DeserializeOwned + Versioned>(bytes: &[u8]) -> Result<T, WireError> {
    let msg: T = rmp_serde::from_slice(bytes).map_err(|source| WireError::Decode {
        what: T::WHAT,
        source,
    })?;
    if msg.version() > WIRE_VERSION {
        return Err(WireError::Version {
            what: T::WHAT,
            got: msg.version(),
        });
    }
    Ok(msg)
}

/// A worker's status, published as JSON every [`WorkerStatus::INTERVAL`] on
/// `<p>.control.worker` (NATS core, not stored) and once more as it stops (`stopping`):
/// what the dashboard shows as each worker's busy slots. Not a ledger fact: a reader keeps
/// the latest of each worker for a few intervals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub v: u16,
    pub worker_id: String,
    pub queue: String,
    /// Tasks it may run at once.
    pub slots: u32,
    /// Tasks it is running now.
    pub busy: u32,
    pub started_ms: u64,
    pub at_ms: u64,
    /// Its last status: it is draining and going away.
    #[serde(default)]
    pub stopping: bool,
}

impl WorkerStatus {
    /// How often a worker publishes its status.
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
}

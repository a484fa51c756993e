//! Submitting runs and waiting for them, over any broker: what `kora run`, `kora submit --wait`,
//! the gateway and services do.

use std::sync::Arc;
use std::time::Duration;

use kora_broker::{Broker, ConsumerConfig};
use kora_model::subjects::Subjects;
use kora_model::wire::{self, EventKind, RunEvent, RunRequest, WIRE_VERSION};
use kora_model::{Map, Value, WorkflowSpec, now_ms};

use crate::{Error, Result};

/// A run to submit: [`Submission::new`] then the optional parts.
#[derive(Debug, Clone)]
pub struct Submission {
    pub workflow: WorkflowSpec,
    pub params: Map,
    pub idempotency_key: Option<String>,
    /// Chosen by the submitter so that a resubmission after a lost ack is the same run.
    pub run_id: String,
    pub tenant: String,
    /// The submitter's trace context: the run's trace links to it.
    pub traceparent: Option<kora_model::trace::TraceParent>,
}

impl Submission {
    /// A run of `workflow` with a new run id, in the default tenant.
    pub fn new(workflow: WorkflowSpec, params: Map) -> Self {
        Submission {
            workflow,
            params,
            idempotency_key: None,
            run_id: uuid::Uuid::now_v7().to_string(),
            tenant: kora_model::tenant::default_name(),
            traceparent: None,
        }
    }
}

/// Publishes a run request; the same `run_id` published twice is one run.
pub async fn submit(broker: &dyn Broker, subjects: &Subjects, s: Submission) -> Result<String> {
    let req = RunRequest {
        v: WIRE_VERSION,
        run_id: s.run_id.clone(),
        idempotency_key: s.idempotency_key,
        workflow: s.workflow,
        params: s.params,
        submitted_at_ms: now_ms(),
        parent: None,
        tenant: s.tenant,
    };
    kora_broker::topology::submit_run_traced(broker, subjects, &req, s.traceparent).await?;
    Ok(s.run_id)
}

/// Where the event stream ends now (the `from` for [`wait`]).
pub async fn events_position(broker: &dyn Broker, subjects: &Subjects) -> Result<u64> {
    Ok(broker
        .stream_info(&subjects.stream_events())
        .await?
        .last_sequence
        + 1)
}

/// How a run ended, as its terminal event tells.
#[derive(Debug, Clone)]
pub struct Ending {
    pub kind: EventKind,
    pub detail: Option<Value>,
}

/// Waits for the run's terminal event (succeeded, failed or rejected), reading its events.
///
/// `from` is the event stream's sequence at which to start reading: take it with
/// [`events_position`] before submitting, so the waiter skips every earlier run's events.
///
/// A submission deduplicated by its idempotency key ends with `RunDeduplicated`, whose
/// `detail.run_id` is the run it stands for: see [`follow`].
pub async fn wait(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    run_id: &str,
    from: u64,
    timeout: Option<Duration>,
) -> Result<Ending> {
    let end = wait_for(broker, subjects, run_id, from, timeout, |k| {
        matches!(
            k,
            EventKind::RunSucceeded
                | EventKind::RunFailed
                | EventKind::RunRejected
                | EventKind::RunCancelled
                | EventKind::RunDeduplicated
        )
    })
    .await?;
    end.ok_or_else(|| Error::Timeout(format!("run {run_id} did not finish in time")))
}

/// Waits for the coordinator to take in a submission: accepted (running or queued), rejected,
/// or deduplicated onto an earlier run. `None` when no coordinator answered in `timeout`.
pub async fn admission(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    run_id: &str,
    from: u64,
    timeout: Duration,
) -> Result<Option<Ending>> {
    wait_for(broker, subjects, run_id, from, Some(timeout), |k| {
        matches!(
            k,
            EventKind::RunAccepted | EventKind::RunRejected | EventKind::RunDeduplicated
        )
    })
    .await
}

/// The run a deduplicated submission stands for, from its `RunDeduplicated` ending.
pub fn follow(ending: &Ending) -> Option<String> {
    (ending.kind == EventKind::RunDeduplicated)
        .then(|| {
            ending
                .detail
                .as_ref()?
                .get("run_id")?
                .as_str()
                .map(String::from)
        })
        .flatten()
}

/// Reads the run's run-level events from `from` until one passes `done`, or `timeout`.
async fn wait_for(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    run_id: &str,
    from: u64,
    timeout: Option<Duration>,
    done: impl Fn(EventKind) -> bool,
) -> Result<Option<Ending>> {
    let durable = format!("wait-{}", run_id.replace(['.', '*', '>', ' '], "_"));
    let cfg = ConsumerConfig {
        filter_subject: Some(subjects.event(run_id, "run", "*")),
        start_sequence: Some(from),
        ..ConsumerConfig::new(&durable)
    };
    broker
        .ensure_consumer(&subjects.stream_events(), &cfg)
        .await?;
    let consumer = broker.consumer(&subjects.stream_events(), &durable).await?;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let result = loop {
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break None;
        }
        let batch = consumer.fetch(64, Duration::from_millis(500)).await?;
        let mut end = None;
        for d in batch {
            let _ = d.ack().await;
            if let Ok(e) = wire::decode::<RunEvent>(&d.payload)
                && end.is_none()
                && done(e.kind)
            {
                end = Some(Ending {
                    kind: e.kind,
                    detail: e.detail,
                });
            }
        }
        if end.is_some() {
            break end;
        }
    };
    let _ = broker
        .delete_consumer(&subjects.stream_events(), &durable)
        .await;
    Ok(result)
}

/// A finished run as `kora run` and `kora submit --wait` print it:
/// `{"run_id", "status", "results"}` plus `error` (or the rejection's problems).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub status: String,
    pub results: Map,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }

    /// Reads the results from the ledger once the run's terminal event arrived.
    /// How a run that already ended ended, from its ledger record (for a submission that was
    /// deduplicated onto it).
    pub fn ending_of(rec: &kora_store::RunRecord) -> Ending {
        use kora_store::RunStatus;
        let kind = match rec.status {
            RunStatus::Succeeded => EventKind::RunSucceeded,
            RunStatus::Rejected => EventKind::RunRejected,
            RunStatus::Cancelled => EventKind::RunCancelled,
            _ => EventKind::RunFailed,
        };
        let detail = rec
            .error
            .as_ref()
            .map(|e| serde_json::json!({"error": e, "node": rec.error_node}));
        Ending { kind, detail }
    }

    pub async fn build(
        store: &dyn kora_store::Store,
        run_id: String,
        node_ids: &[String],
        may_amend: bool,
        ending: Ending,
    ) -> Result<Self> {
        let status = match ending.kind {
            EventKind::RunSucceeded => "succeeded",
            EventKind::RunRejected => "rejected",
            EventKind::RunCancelled => "cancelled",
            _ => "failed",
        };
        Ok(RunReport {
            results: store.final_results(&run_id, node_ids, may_amend).await?,
            status: status.into(),
            run_id,
            error: ending.detail,
        })
    }
}

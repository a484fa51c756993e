//! Submitting runs and waiting for them, over any broker: what `kora run`, `kora submit --wait`
//! and services do.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kora_broker::{Broker, ConsumerConfig, Outbound};
use kora_model::subjects::Subjects;
use kora_model::wire::{self, EventKind, RunEvent, RunRequest, WIRE_VERSION};
use kora_model::{Map, Value, WorkflowSpec, now_ms};

/// Publishes a run request; the same `run_id` published twice is one run.
pub async fn submit(
    broker: &dyn Broker,
    subjects: &Subjects,
    workflow: WorkflowSpec,
    params: Map,
    idempotency_key: Option<String>,
    run_id: String,
) -> anyhow::Result<String> {
    let req = RunRequest {
        v: WIRE_VERSION,
        run_id: run_id.clone(),
        idempotency_key,
        workflow,
        params,
        submitted_at_ms: now_ms(),
    };
    let payload = wire::encode(&req)?;
    broker
        .publish(Outbound::new(subjects.run_submit(), payload).msg_id(format!("run:{run_id}")))
        .await
        .context("cannot submit the run")?;
    Ok(run_id)
}

/// Where the event stream ends now (the `from` for [`wait`]).
pub async fn events_position(broker: &dyn Broker, subjects: &Subjects) -> anyhow::Result<u64> {
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
pub async fn wait(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    run_id: &str,
    from: u64,
    timeout: Option<Duration>,
) -> anyhow::Result<Ending> {
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
                && matches!(
                    e.kind,
                    EventKind::RunSucceeded
                        | EventKind::RunFailed
                        | EventKind::RunRejected
                        | EventKind::RunCancelled
                )
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
    match result {
        Some(e) => Ok(e),
        None => bail!("run {run_id} did not finish in time"),
    }
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
    pub async fn build(
        store: &dyn kora_store::Store,
        run_id: String,
        node_ids: &[String],
        ending: Ending,
    ) -> anyhow::Result<Self> {
        let status = match ending.kind {
            EventKind::RunSucceeded => "succeeded",
            EventKind::RunRejected => "rejected",
            EventKind::RunCancelled => "cancelled",
            _ => "failed",
        };
        Ok(RunReport {
            results: store.results(&run_id, node_ids).await?,
            status: status.into(),
            run_id,
            error: ending.detail,
        })
    }
}

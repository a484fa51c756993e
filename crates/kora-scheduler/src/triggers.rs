//! Triggers: messages on a registered NATS subject start runs of a registered workflow.
//!
//! A trigger is a ledger row (name, subject, workflow, parameters, paused) plus a JetStream
//! stream that captures its subject (`<P>_TRIGGER_<NAME>`, work queue). The stream is created
//! when the trigger is registered, so messages published while no Kora process runs are kept
//! and start their runs when one returns. Every process serving the scheduler role runs
//! [`run`]: it follows the ledger's triggers and consumes each active one's stream through one
//! shared durable consumer, so each message starts exactly one run however many schedulers
//! run (the run id derives from the message's stream position; a redelivery is the same run).
//! A paused trigger is not consumed: its messages wait and are processed on resume.
//!
//! A cron trigger (`schedule`, with an optional seconds field) starts one run per tick: every
//! scheduler computes the same ticks and submits the tick's run under an id derived from the
//! trigger and the tick's time, so however many schedulers run, the broker's deduplication and
//! the coordinator's run-exists check leave one run per tick. Ticks missed while no scheduler
//! runs are not caught up.
//!
//! Must not: decide anything about a run; it only submits run requests. It reads the ledger's
//! trigger rows and never writes the ledger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kora_broker::Broker;
use kora_broker::topology;
use kora_model::subjects::Subjects;
use kora_model::wire::{RunRequest, WIRE_VERSION};
use kora_model::{Map, Value, now_ms};
use kora_store::{Store, TriggerRecord};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;

/// Namespace of run ids derived from trigger messages (UUIDv5).
const RUN_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b6f_7261_7472_4000_8000_6967_6765_7273);

/// Creates the stream capturing a subject trigger's messages, and its consumer; a cron
/// trigger needs none.
async fn provision(
    broker: &dyn Broker,
    subjects: &Subjects,
    t: &TriggerRecord,
) -> Result<(), Error> {
    if t.schedule.is_some() {
        return Ok(());
    }
    topology::provision_trigger(broker, subjects, &t.name, &t.subject).await?;
    Ok(())
}

/// The run a message starts: the key that names it (the same for a redelivery of the same
/// message) and its parameters (the trigger's, then the message's: a JSON object's keys, or
/// else the whole message as `event`).
pub fn run_for(
    t: &TriggerRecord,
    stream_seq: u64,
    published_ms: u64,
    payload: &[u8],
) -> (String, Map) {
    let key = format!("trigger:{}:{stream_seq}:{published_ms}", t.name);
    let params = kora_model::trigger::params_of(&t.params, payload);
    (key, params)
}

/// Submits the run named by `key`: its run id and its idempotency key both derive from it, so
/// whoever submits the same key (a redelivery, another scheduler) makes the same run.
async fn submit_keyed(
    broker: &dyn Broker,
    subjects: &Subjects,
    t: &TriggerRecord,
    key: String,
    params: Map,
) -> Result<String, Error> {
    let run_id = run_id_of(&key);
    let req = RunRequest {
        v: WIRE_VERSION,
        run_id: run_id.clone(),
        idempotency_key: Some(key),
        workflow: t.spec.clone(),
        params,
        submitted_at_ms: now_ms(),
        parent: None,
        tenant: t.tenant.clone(),
    };
    topology::submit_run(broker, subjects, &req).await?;
    Ok(run_id)
}

/// The run id a trigger key names (UUIDv5).
pub fn run_id_of(key: &str) -> String {
    uuid::Uuid::new_v5(&RUN_NAMESPACE, key.as_bytes()).to_string()
}

/// Follows the ledger's triggers until `shutdown`: consumes each active one.
pub async fn run(
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    subjects: Subjects,
    metrics: Arc<crate::SchedulerMetrics>,
    shutdown: CancellationToken,
) {
    let mut running: HashMap<String, (TriggerRecord, CancellationToken)> = HashMap::new();
    let tracker = TaskTracker::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let triggers = match store.triggers().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read triggers; retrying");
                continue;
            }
        };
        // Webhook triggers start runs in the gateway, from HTTP requests.
        let wanted: HashMap<String, TriggerRecord> = triggers
            .into_iter()
            .filter(|t| !t.paused && t.webhook_salt.is_none())
            .map(|t| (t.name.clone(), t))
            .collect();
        running.retain(|name, (t, token)| {
            let keep = wanted.get(name).is_some_and(|w| w == t);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (name, t) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let token = shutdown.child_token();
            running.insert(name, (t.clone(), token.clone()));
            if t.schedule.is_some() {
                tracker.spawn(fire_cron(
                    Arc::clone(&broker),
                    subjects.clone(),
                    Arc::clone(&metrics),
                    t,
                    token,
                ));
            } else {
                tracker.spawn(consume(
                    Arc::clone(&broker),
                    subjects.clone(),
                    Arc::clone(&metrics),
                    t,
                    token,
                ));
            }
        }
    }
    for (_, (_, token)) in running {
        token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

/// The run of a cron tick: the same key in every scheduler; the tick's time as `scheduled_ms`.
pub fn run_for_tick(t: &TriggerRecord, tick_ms: i64) -> (String, Map) {
    let key = format!("cron:{}:{tick_ms}", t.name);
    let mut params = t.params.clone();
    params.insert("scheduled_ms".into(), Value::from(tick_ms));
    (key, params)
}

async fn fire_cron(
    broker: Arc<dyn Broker>,
    subjects: Subjects,
    metrics: Arc<crate::SchedulerMetrics>,
    t: TriggerRecord,
    stop: CancellationToken,
) {
    let Some(cron) = t
        .schedule
        .as_deref()
        .and_then(|e| kora_model::trigger::parse_schedule(e).ok())
    else {
        tracing::warn!(trigger = %t.name, schedule = ?t.schedule, "unusable cron schedule; trigger idle");
        return;
    };
    tracing::info!(trigger = %t.name, schedule = ?t.schedule, "cron trigger active");
    let mut next = match cron.find_next_occurrence(&chrono::Utc::now(), false) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(trigger = %t.name, error = %e, "cron schedule has no next tick");
            return;
        }
    };
    loop {
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let tick_ms = next.timestamp_millis();
        let (key, params) = run_for_tick(&t, tick_ms);
        match submit_keyed(broker.as_ref(), &subjects, &t, key, params).await {
            Ok(run_id) => {
                metrics.trigger(&t.name, true);
                tracing::info!(trigger = %t.name, %run_id, tick_ms, "cron trigger fired");
            }
            Err(e) => {
                metrics.trigger(&t.name, false);
                tracing::warn!(trigger = %t.name, error = %e, tick_ms, "cron tick not submitted");
            }
        }
        next = match cron.find_next_occurrence(&next, false) {
            Ok(n) => n,
            Err(_) => return,
        };
    }
}

async fn consume(
    broker: Arc<dyn Broker>,
    subjects: Subjects,
    metrics: Arc<crate::SchedulerMetrics>,
    t: TriggerRecord,
    stop: CancellationToken,
) {
    let stream = subjects.stream_trigger(&t.name);
    let consumer = loop {
        match provision(broker.as_ref(), &subjects, &t).await {
            Ok(()) => match broker.consumer(&stream, Subjects::CONSUMER_TRIGGER).await {
                Ok(c) => break c,
                Err(e) => tracing::warn!(trigger = %t.name, error = %e, "cannot consume trigger"),
            },
            Err(e) => tracing::warn!(trigger = %t.name, error = %e, "cannot set up trigger"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    tracing::info!(trigger = %t.name, subject = %t.subject, "trigger active");
    loop {
        let batch = tokio::select! {
            () = stop.cancelled() => return,
            b = consumer.fetch(64, Duration::from_millis(500)) => b,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(trigger = %t.name, error = %e, "cannot fetch trigger messages; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for d in batch {
            let (key, params) =
                run_for(&t, d.info.stream_sequence, d.info.published_ms, &d.payload);
            match submit_keyed(broker.as_ref(), &subjects, &t, key, params).await {
                Ok(run_id) => {
                    metrics.trigger(&t.name, true);
                    tracing::info!(trigger = %t.name, %run_id, "trigger started a run");
                    let _ = d.ack().await;
                }
                Err(e) => {
                    metrics.trigger(&t.name, false);
                    tracing::warn!(trigger = %t.name, error = %e, "cannot submit a triggered run; it will be retried");
                    let _ = d.nak(Some(Duration::from_secs(1))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> TriggerRecord {
        TriggerRecord {
            name: "orders".into(),
            subject: "shop.orders".into(),
            schedule: None,
            spec: kora_model::WorkflowSpec::default(),
            params: serde_json::json!({"region": "eu", "limit": 1})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            paused: false,
            created_ms: 0,
            updated_ms: 0,
            tenant: kora_model::tenant::default_name(),
            webhook_salt: None,
        }
    }

    #[test]
    fn a_message_becomes_the_runs_parameters_and_names_its_run() {
        let t = trigger();
        let (id, p) = run_for(&t, 7, 100, br#"{"order_id": 42, "limit": 5}"#);
        assert_eq!(id, "trigger:orders:7:100");
        assert_eq!(p["order_id"], 42);
        assert_eq!(p["limit"], 5, "the message wins over the trigger's");
        assert_eq!(p["region"], "eu");
        assert_eq!(
            run_for(&t, 7, 100, b"{}").0,
            id,
            "a redelivery is the same run"
        );
        assert_ne!(run_for(&t, 8, 100, b"{}").0, id);
        assert_eq!(run_for(&t, 1, 1, b"plain text").1["event"], "plain text");
        assert_eq!(run_for(&t, 1, 1, b"[1, 2]").1["event"][1], 2);
    }

    #[test]
    fn every_scheduler_names_a_tick_the_same_run() {
        let t = trigger();
        let (a, p) = run_for_tick(&t, 1_000);
        assert_eq!(run_for_tick(&t, 1_000).0, a);
        assert_ne!(run_for_tick(&t, 2_000).0, a);
        assert_eq!(p["scheduled_ms"], 1_000);
    }
}

//! The scheduler: admission of run requests.
//!
//! Owns: consuming run requests (from `kora submit`, the gateway, triggers, or any service
//! publishing the `proto/` schema on `<prefix>.run.submit`), decoding and validating them
//! against the node catalog, and handing each to the coordinator as an [`Admission`].
//! Undecodable requests go to the dead-letter stream with the reason; invalid workflows are
//! admitted as rejected runs, so the submitter sees every problem in the ledger. Also owns the
//! triggers that submit runs from subject messages and cron ticks ([`triggers`]).
//!
//! Must not: write the ledger (it reads trigger rows only), decide readiness, or talk to
//! workers.

mod metrics;
pub mod triggers;

use std::sync::Arc;
use std::time::Duration;

use kora_broker::topology::dead_letter;
use kora_broker::{Broker, Outbound};
use kora_model::subjects::Subjects;
use kora_model::wire::{self, Admission, RunRequest};
use kora_model::{Catalog, Severity};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use metrics::SchedulerMetrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] kora_broker::Error),
    #[error(transparent)]
    Store(#[from] kora_store::Error),
    #[error(transparent)]
    Wire(#[from] kora_model::wire::WireError),
}

/// `[scheduler]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Run requests taken per fetch.
    pub batch: usize,
    /// How long a fetch waits for requests before looking again.
    #[serde(with = "kora_model::duration")]
    pub fetch_wait: Duration,
    /// The input limits run requests are checked against (`[limits]`, set by `kora serve`).
    #[serde(skip)]
    pub limits: kora_model::Limits,
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.batch) {
            return Err(format!(
                "scheduler.batch must be between 1 and 10000 (it is {})",
                self.batch
            ));
        }
        if self.fetch_wait.is_zero() || self.fetch_wait > Duration::from_secs(60) {
            return Err("scheduler.fetch_wait must be more than 0 and at most 60s".into());
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch: 64,
            fetch_wait: Duration::from_millis(500),
            limits: kora_model::Limits::default(),
        }
    }
}

/// Runs the scheduler until `shutdown` is cancelled: admission, and (given the ledger) the
/// registered triggers.
pub async fn run(
    cfg: Config,
    broker: Arc<dyn Broker>,
    subjects: Subjects,
    catalog: Arc<dyn Catalog + Send + Sync>,
    ledger: Option<Arc<dyn kora_store::Store>>,
    metrics: Arc<SchedulerMetrics>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let triggers = ledger.map(|store| {
        tokio::spawn(triggers::run(
            Arc::clone(&broker),
            store,
            subjects.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        ))
    });
    let admitted = admit_requests(
        cfg,
        Arc::clone(&broker),
        subjects,
        catalog,
        &metrics,
        shutdown,
    )
    .await;
    if let Some(t) = triggers {
        let _ = t.await;
    }
    admitted
}

/// Admission until `shutdown` is cancelled.
async fn admit_requests(
    cfg: Config,
    broker: Arc<dyn Broker>,
    subjects: Subjects,
    catalog: Arc<dyn Catalog + Send + Sync>,
    metrics: &SchedulerMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let consumer = broker
        .consumer(&subjects.stream_runs(), Subjects::CONSUMER_SCHEDULER)
        .await?;
    let mut backoff = Duration::from_millis(50);
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            b = consumer.fetch(cfg.batch, cfg.fetch_wait) => b,
        };
        let batch = match batch {
            Ok(b) => {
                backoff = Duration::from_millis(50);
                b
            }
            Err(e) => {
                warn!(error = %e, "scheduler cannot fetch run requests; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for d in batch {
            let req = match wire::decode::<RunRequest>(&d.payload) {
                Ok(r) => r,
                Err(e) => {
                    metrics.request("poison");
                    warn!(subject = %d.subject, error = %e, "dead-lettering an undecodable run request");
                    dead_letter(broker.as_ref(), &subjects, "run", &d, &e.to_string()).await?;
                    continue;
                }
            };
            let admitting = std::time::SystemTime::now();
            let inbound = kora_broker::trace::parent_of(&d.headers);
            if req.submitted_at_ms > 0 {
                metrics.admission_delay.observe(
                    kora_model::now_ms().saturating_sub(req.submitted_at_ms) as f64 / 1000.0,
                );
            }
            let admission = admit(req, catalog.as_ref(), &cfg.limits);
            let run_id = match &admission {
                Admission::Admitted { request } => {
                    metrics.request("admitted");
                    request.run_id.clone()
                }
                Admission::Rejected { run_id, .. } => {
                    metrics.request("rejected");
                    run_id.clone()
                }
            };
            let payload = match wire::encode(&admission) {
                Ok(p) => p,
                Err(e) => {
                    dead_letter(broker.as_ref(), &subjects, "run", &d, &e.to_string()).await?;
                    continue;
                }
            };
            let mut msg = Outbound::new(subjects.ledger_admit(), payload)
                .msg_id(kora_model::msg_id::admission(&run_id));
            if let Some(t) = inbound {
                // The caller's context goes on to the coordinator, which links the run to it.
                msg = msg.header(kora_model::trace::TRACEPARENT, t.header());
            }
            if kora_broker::trace::enabled() {
                let mut s = kora_broker::trace::SpanSpec::new(
                    "kora.admit",
                    admitting,
                    std::time::SystemTime::now(),
                )
                .parent(Some(kora_model::trace::TraceParent::of_run(&run_id)))
                .attr("kora.run_id", run_id.clone());
                s.links.extend(inbound);
                kora_broker::trace::span(s);
            }
            match broker.publish(msg).await {
                Ok(_) => {
                    // A crash here re-admits the run on redelivery: the admission's dedup id and
                    // the coordinator's run-exists check make that harmless.
                    fail::fail_point!("scheduler-after-admit", |_| {
                        tracing::error!("failpoint scheduler-after-admit: aborting");
                        std::process::abort()
                    });
                    d.ack().await?;
                }
                Err(e) => {
                    warn!(%run_id, error = %e, "cannot hand the run to the coordinator; it will be retried");
                    d.nak(Some(Duration::from_secs(1))).await?;
                }
            }
        }
    }
    broker.flush().await?;
    Ok(())
}

/// Validates a request: an admitted run, or a rejected one with every problem found.
pub fn admit(req: RunRequest, catalog: &dyn Catalog, limits: &kora_model::Limits) -> Admission {
    if req.run_id.is_empty() {
        return Admission::Rejected {
            run_id: String::new(),
            problems: vec!["run_id is empty".into()],
            submitted_at_ms: req.submitted_at_ms,
            tenant: req.tenant,
        };
    }
    // A run of a tenant that cannot exist is recorded (rejected) under the default one, where
    // an operator sees it.
    if let Err(e) = kora_model::tenant::check_name(&req.tenant) {
        warn!(run_id = %req.run_id, "run rejected: {e}");
        return Admission::Rejected {
            run_id: req.run_id,
            problems: vec![e],
            submitted_at_ms: req.submitted_at_ms,
            tenant: kora_model::tenant::default_name(),
        };
    }
    // The ledger cannot store a NUL character: refused here, named, instead of failing the
    // coordinator's batch.
    if let Some(problem) = nul_problem(&req) {
        warn!(run_id = %req.run_id, "run rejected: {problem}");
        return Admission::Rejected {
            run_id: kora_model::value::without_nul(&req.run_id),
            problems: vec![problem],
            submitted_at_ms: req.submitted_at_ms,
            tenant: req.tenant,
        };
    }
    // Validation only: the coordinator builds the graph it runs.
    let problems = kora_model::validate_within(&req.workflow, catalog, Some(&req.params), limits);
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    if errors.is_empty() {
        for w in &problems {
            warn!(run_id = %req.run_id, "{w}");
        }
        info!(run_id = %req.run_id, workflow = %req.workflow.name, nodes = req.workflow.nodes.len(), "run admitted");
        Admission::Admitted {
            request: Box::new(req),
        }
    } else {
        warn!(run_id = %req.run_id, problems = errors.len(), "run rejected: {}", errors.join("; "));
        Admission::Rejected {
            run_id: req.run_id,
            problems: errors,
            submitted_at_ms: req.submitted_at_ms,
            tenant: req.tenant,
        }
    }
}

/// Where a request holds a NUL character, as a problem to reject it with.
fn nul_problem(req: &RunRequest) -> Option<String> {
    let say = |what: &str| {
        format!(
            "{what} contains a NUL character (\\u0000), which the ledger cannot store: remove it"
        )
    };
    if req.run_id.contains('\0') {
        return Some(say("run_id"));
    }
    if req
        .idempotency_key
        .as_deref()
        .is_some_and(|k| k.contains('\0'))
    {
        return Some(say("idempotency_key"));
    }
    if let Some(path) = kora_model::value::find_nul(&kora_model::Value::Object(req.params.clone()))
    {
        return Some(say(&format!("params.{path}")));
    }
    let spec = serde_json::to_value(&req.workflow).unwrap_or_default();
    kora_model::value::find_nul(&spec).map(|path| say(&format!("the workflow, at {path},")))
}

//! Transaction monitoring: the coordinator watches the runs it records and raises alerts.
//!
//! - **Stuck runs** (from the ledger, so every coordinator sees the same): a running run with
//!   no activity for `stuck_after_secs` (a retry due later counts as activity then, and queued
//!   runs wait on a limit, so neither is stuck), or one with a node retried
//!   `retry_loop_attempts` times. The reason is `retry_loop`, `no_worker` (a task it waits on
//!   sits on a queue no worker has bound, or whose oldest task has waited that long) or
//!   `no_progress`. Exported as `kora_runs_stuck{reason}`.
//! - **Latency anomalies**: node time per tenant, workflow and node type against a baseline
//!   learned here (an exponentially weighted mean and variance, `latency_alpha`), flagged when
//!   a result is `latency_z` deviations above it after `latency_min_samples`.
//! - **Error rate** per tenant, workflow and node type over the last five minutes, and **queue
//!   backlog** (the oldest waiting task's age, or the number waiting).
//!
//! An alert is a ledger row first ([`kora_store::Store::open_alert`]): however many
//! coordinators see a condition, exactly one opens it and sends it to the [`AlertSink`];
//! exactly one resolves it when the condition clears and sends the resolve. A subject resolved
//! less than `cooldown_secs` ago does not fire again. A message whose sender died before
//! delivering it is claimed and sent by any coordinator a minute later. At most
//! `max_alerts_per_tick` messages go out per pass; the rest follow on later passes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kora_model::{Value, now_ms};
use kora_store::{AlertRecord, NewAlert, Store};
use serde_json::json;
use tracing::{info, warn};

use crate::Error;
use crate::metrics::{Metrics, ReasonLabels};

/// `[monitoring]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// A running run with no activity for this long is stuck; 0 turns stuck detection off.
    pub stuck_after_secs: u64,
    /// A running run with a node on this attempt (or later) is in a retry loop.
    pub retry_loop_attempts: u32,
    /// How often the ledger is scanned for stuck runs (one grouped query over running runs
    /// and their attempts: 0.38 s for 20,000 running runs of 10 attempts each, measured).
    #[serde(with = "kora_model::duration")]
    pub stuck_scan_interval: Duration,
    /// A queue whose oldest waiting task is this old is backing up; 0 turns it off.
    pub queue_backlog_secs: u64,
    /// A queue with this many tasks waiting is backing up; 0 turns it off.
    pub queue_backlog_tasks: u64,
    /// Deviations above the learned mean that make a node's time anomalous.
    pub latency_z: f64,
    /// Results of a (workflow, node type) seen before its baseline is trusted.
    pub latency_min_samples: u32,
    /// Weight of each new result in the baseline (0..1: higher forgets faster).
    pub latency_alpha: f64,
    /// Share of failed attempts (over five minutes) that raises an error-rate alert; 0 turns
    /// it off.
    pub error_rate: f64,
    /// Attempts within five minutes before the error rate is judged.
    pub error_rate_min_attempts: u32,
    /// A subject resolved less than this long ago does not fire again.
    pub cooldown_secs: u64,
    /// Alert messages (firing or resolved) sent per pass; the rest wait for later passes.
    pub max_alerts_per_tick: usize,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            stuck_after_secs: 600,
            retry_loop_attempts: 5,
            stuck_scan_interval: Duration::from_secs(30),
            queue_backlog_secs: 300,
            queue_backlog_tasks: 0,
            latency_z: 4.0,
            latency_min_samples: 30,
            latency_alpha: 0.05,
            error_rate: 0.5,
            error_rate_min_attempts: 20,
            cooldown_secs: 300,
            max_alerts_per_tick: 20,
        }
    }
}

impl MonitoringConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.latency_z.is_finite() && self.latency_z > 0.0) {
            return Err("monitoring.latency_z must be more than 0".into());
        }
        if !(self.latency_alpha > 0.0 && self.latency_alpha < 1.0) {
            return Err("monitoring.latency_alpha must be between 0 and 1 (exclusive)".into());
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err("monitoring.error_rate must be between 0 and 1".into());
        }
        if self.retry_loop_attempts < 2 {
            return Err("monitoring.retry_loop_attempts must be at least 2".into());
        }
        if self.stuck_scan_interval < Duration::from_millis(100) {
            return Err("monitoring.stuck_scan_interval must be at least 100ms".into());
        }
        if self.max_alerts_per_tick == 0 {
            return Err("monitoring.max_alerts_per_tick must be at least 1".into());
        }
        Ok(())
    }
}

/// Where alerts go (a webhook, Slack, Discord: `kora serve`'s `[alerts]`).
#[async_trait]
pub trait AlertSink: Send + Sync {
    /// Delivers one alert message (its JSON has `kind`, `state`, `severity`, `subject`,
    /// `message`, and the run or workflow); an error is retried on a later pass.
    async fn send(&self, alert: &Value) -> Result<(), String>;
}

/// What a coordinator learns from the results it records, read by the monitor's passes.
#[derive(Default)]
pub(crate) struct Observed {
    latency: HashMap<Key, Baseline>,
    errors: HashMap<Key, VecDeque<(u64, bool)>>,
}

/// `(tenant, workflow, node type)`.
type Key = (String, String, String);

#[derive(Default)]
struct Baseline {
    n: u64,
    mean: f64,
    var: f64,
    /// The latest anomalous and normal results since the last pass: `(seconds, z)`.
    anomalous: Option<(f64, f64)>,
    normal_since_pass: bool,
}

/// How far back the error rate looks.
const ERROR_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Results kept per key for the error rate.
const ERROR_WINDOW_MAX: usize = 2_000;
/// A claim older than this without delivery is taken over.
const RECLAIM_AFTER_MS: u64 = 60_000;
/// Stuck runs and open alerts looked at per pass.
const MAX_PER_PASS: usize = 1_000;

/// Shared between the coordinator's loop (which records) and the monitor (which reads).
pub(crate) type SharedObserved = Arc<Mutex<Observed>>;

impl Observed {
    /// A recorded attempt: its node's time and whether it failed.
    pub(crate) fn record(
        &mut self,
        cfg: &MonitoringConfig,
        key: Key,
        seconds: f64,
        failed: bool,
        now: u64,
    ) {
        if cfg.error_rate > 0.0 {
            let w = self.errors.entry(key.clone()).or_default();
            w.push_back((now, failed));
            while w.len() > ERROR_WINDOW_MAX
                || w.front().is_some_and(|(t, _)| t + ERROR_WINDOW_MS < now)
            {
                w.pop_front();
            }
        }
        if failed || !seconds.is_finite() {
            return;
        }
        let b = self.latency.entry(key).or_default();
        if b.n >= u64::from(cfg.latency_min_samples) {
            // A floor on the deviation: a node that always takes the same time is not
            // anomalous for a millisecond more.
            let sd = b.var.sqrt().max(0.1 * b.mean).max(0.001);
            let z = (seconds - b.mean) / sd;
            if z > cfg.latency_z {
                b.anomalous = Some((seconds, z));
            } else {
                b.normal_since_pass = true;
            }
        }
        let a = if b.n == 0 {
            1.0
        } else {
            cfg.latency_alpha.max(1.0 / (b.n + 1) as f64)
        };
        let diff = seconds - b.mean;
        b.mean += a * diff;
        b.var = (1.0 - a) * (b.var + a * diff * diff);
        b.n += 1;
    }
}

/// A condition the pass found: its alert subject and body.
struct Firing {
    subject: String,
    kind: &'static str,
    severity: &'static str,
    body: Value,
}

pub(crate) struct Monitor {
    pub(crate) cfg: MonitoringConfig,
    store: Arc<dyn Store>,
    sink: Option<Arc<dyn AlertSink>>,
    metrics: Arc<Metrics>,
    observed: SharedObserved,
    /// Stuck runs' reasons, kept while they stay stuck (a reason costs a ledger read).
    reasons: HashMap<String, &'static str>,
    /// When the ledger was last scanned for stuck runs.
    scanned: Option<std::time::Instant>,
}

/// What the sampler saw of a queue.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QueueView {
    pub(crate) waiting: u64,
    pub(crate) oldest_waiting_secs: f64,
    /// Whether any worker ever bound the queue's consumer.
    pub(crate) bound: bool,
}

impl Monitor {
    pub(crate) fn new(
        cfg: MonitoringConfig,
        store: Arc<dyn Store>,
        sink: Option<Arc<dyn AlertSink>>,
        metrics: Arc<Metrics>,
        observed: SharedObserved,
    ) -> Self {
        Monitor {
            cfg,
            store,
            sink,
            metrics,
            observed,
            reasons: HashMap::new(),
            scanned: None,
        }
    }

    /// One pass: find every condition, open and resolve alerts, send what is due.
    pub(crate) async fn pass(&mut self, queues: &BTreeMap<String, QueueView>) -> Result<(), Error> {
        let now = now_ms();
        let mut sends = 0;
        self.stuck_runs(queues, now, &mut sends).await?;
        self.queue_backlog(queues, now, &mut sends).await?;
        self.anomalies(now, &mut sends).await?;
        // Messages whose sender died (or whose sink failed) before delivering them.
        if sends < self.cfg.max_alerts_per_tick {
            let left = self.cfg.max_alerts_per_tick - sends;
            for (a, resolve) in self
                .store
                .claim_unsent_alerts(now.saturating_sub(RECLAIM_AFTER_MS), now, left)
                .await?
            {
                let body = message_body(&a, resolve);
                self.deliver(&a.subject, &body, resolve).await?;
            }
        }
        Ok(())
    }

    async fn stuck_runs(
        &mut self,
        queues: &BTreeMap<String, QueueView>,
        now: u64,
        sends: &mut usize,
    ) -> Result<(), Error> {
        if self.cfg.stuck_after_secs == 0
            || self
                .scanned
                .is_some_and(|t| t.elapsed() < self.cfg.stuck_scan_interval)
        {
            return Ok(());
        }
        self.scanned = Some(std::time::Instant::now());
        let after_ms = self.cfg.stuck_after_secs.saturating_mul(1000);
        let stuck = self
            .store
            .stuck_runs(
                now.saturating_sub(after_ms),
                self.cfg.retry_loop_attempts,
                MAX_PER_PASS,
            )
            .await?;
        let complete = stuck.len() < MAX_PER_PASS;
        let mut firing = Vec::with_capacity(stuck.len());
        let mut counts: BTreeMap<&'static str, i64> =
            [("no_progress", 0), ("no_worker", 0), ("retry_loop", 0)].into();
        let mut seen = HashSet::with_capacity(stuck.len());
        for s in &stuck {
            seen.insert(s.run_id.clone());
            let reason = match self.reasons.get(&s.run_id) {
                Some(r) => *r,
                None => {
                    let r = self.reason_of(s, queues, after_ms).await?;
                    self.reasons.insert(s.run_id.clone(), r);
                    r
                }
            };
            *counts.entry(reason).or_default() += 1;
            let idle = now.saturating_sub(s.progress_ms) / 1000;
            let message = match reason {
                "retry_loop" => format!(
                    "Run {} of workflow {} keeps failing: a node is on attempt {}.",
                    s.run_id, s.workflow, s.max_attempt
                ),
                "no_worker" => format!(
                    "Run {} of workflow {} has made no progress for {}: a task it waits on ({}) sits on a queue no worker serves.",
                    s.run_id,
                    s.workflow,
                    human(idle),
                    s.in_flight.join(", ")
                ),
                _ => format!(
                    "Run {} of workflow {} has made no progress for {} (waiting on {}).",
                    s.run_id,
                    s.workflow,
                    human(idle),
                    if s.in_flight.is_empty() {
                        "nothing in flight".to_string()
                    } else {
                        s.in_flight.join(", ")
                    }
                ),
            };
            firing.push(Firing {
                subject: format!("run_stuck:{}", s.run_id),
                kind: "run_stuck",
                severity: "warning",
                body: json!({
                    "run_id": s.run_id, "workflow": s.workflow, "tenant": s.tenant,
                    "reason": reason, "idle_secs": idle, "in_flight": s.in_flight,
                    "message": message,
                }),
            });
        }
        self.reasons.retain(|id, _| seen.contains(id));
        for (reason, n) in counts {
            self.metrics
                .runs_stuck
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .set(n);
        }
        self.settle("run_stuck", firing, complete, now, sends).await
    }

    /// Why a stuck run is stuck.
    async fn reason_of(
        &self,
        s: &kora_store::StuckRun,
        queues: &BTreeMap<String, QueueView>,
        after_ms: u64,
    ) -> Result<&'static str, Error> {
        if s.max_attempt >= self.cfg.retry_loop_attempts {
            return Ok("retry_loop");
        }
        if s.in_flight.is_empty() {
            return Ok("no_progress");
        }
        let Some(rec) = self.store.run(&s.run_id).await? else {
            return Ok("no_progress");
        };
        let Some(spec) = &rec.spec else {
            return Ok("no_progress");
        };
        let unserved = spec
            .nodes
            .iter()
            .filter(|n| s.in_flight.contains(&n.id))
            .map(crate::task::queue_of)
            .any(|q| {
                queues.get(q).is_some_and(|v| {
                    v.waiting > 0 && (!v.bound || v.oldest_waiting_secs * 1000.0 >= after_ms as f64)
                })
            });
        Ok(if unserved { "no_worker" } else { "no_progress" })
    }

    async fn queue_backlog(
        &mut self,
        queues: &BTreeMap<String, QueueView>,
        now: u64,
        sends: &mut usize,
    ) -> Result<(), Error> {
        let (secs, tasks) = (self.cfg.queue_backlog_secs, self.cfg.queue_backlog_tasks);
        if secs == 0 && tasks == 0 {
            return Ok(());
        }
        let mut firing = Vec::new();
        for (queue, v) in queues {
            let old = secs > 0 && v.oldest_waiting_secs >= secs as f64;
            let deep = tasks > 0 && v.waiting >= tasks;
            if !(old || deep) {
                continue;
            }
            let served = if v.bound {
                ""
            } else {
                " (no worker has ever served it)"
            };
            firing.push(Firing {
                subject: format!("queue_backlog:{queue}"),
                kind: "queue_backlog",
                severity: if v.bound { "warning" } else { "critical" },
                body: json!({
                    "queue": queue, "waiting": v.waiting,
                    "oldest_waiting_secs": v.oldest_waiting_secs.round(),
                    "message": format!(
                        "Queue {queue} has {} tasks waiting; the oldest has waited {}{served}.",
                        v.waiting,
                        human(v.oldest_waiting_secs as u64)
                    ),
                }),
            });
        }
        self.settle("queue_backlog", firing, true, now, sends).await
    }

    async fn anomalies(&mut self, now: u64, sends: &mut usize) -> Result<(), Error> {
        let mut latency = Vec::new();
        let mut latency_normal = Vec::new();
        let mut errors = Vec::new();
        let mut errors_normal = Vec::new();
        {
            let mut o = self
                .observed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ((tenant, workflow, node_type), b) in &mut o.latency {
                let subject = format!("latency_anomaly:{tenant}/{workflow}/{node_type}");
                match b.anomalous.take() {
                    Some((seconds, z)) => latency.push(Firing {
                        subject,
                        kind: "latency_anomaly",
                        severity: "warning",
                        body: json!({
                            "tenant": tenant, "workflow": workflow, "node_type": node_type,
                            "seconds": seconds, "baseline_seconds": b.mean, "z": z,
                            "message": format!(
                                "{node_type} nodes of workflow {workflow} took {seconds:.3}s, {z:.1} deviations above their usual {:.3}s.",
                                b.mean
                            ),
                        }),
                    }),
                    None if b.normal_since_pass => latency_normal.push(subject),
                    None => {}
                }
                b.normal_since_pass = false;
            }
            if self.cfg.error_rate > 0.0 {
                for ((tenant, workflow, node_type), w) in &mut o.errors {
                    while w.front().is_some_and(|(t, _)| t + ERROR_WINDOW_MS < now) {
                        w.pop_front();
                    }
                    let total = w.len();
                    let failed = w.iter().filter(|(_, f)| *f).count();
                    let subject = format!("error_rate:{tenant}/{workflow}/{node_type}");
                    if total >= self.cfg.error_rate_min_attempts as usize
                        && failed as f64 >= self.cfg.error_rate * total as f64
                    {
                        errors.push(Firing {
                            subject,
                            kind: "error_rate",
                            severity: "warning",
                            body: json!({
                                "tenant": tenant, "workflow": workflow, "node_type": node_type,
                                "failed": failed, "attempts": total,
                                "message": format!(
                                    "{failed} of {total} {node_type} attempts of workflow {workflow} failed in the last 5 minutes."
                                ),
                            }),
                        });
                    } else if total > 0 {
                        errors_normal.push(subject);
                    }
                }
                o.errors.retain(|_, w| !w.is_empty());
            }
        }
        // Only this coordinator's own observations resolve: another one's baseline may differ.
        self.fire_and_resolve(latency, &latency_normal, now, sends)
            .await?;
        self.fire_and_resolve(errors, &errors_normal, now, sends)
            .await
    }

    async fn fire_and_resolve(
        &mut self,
        firing: Vec<Firing>,
        normal: &[String],
        now: u64,
        sends: &mut usize,
    ) -> Result<(), Error> {
        for f in firing {
            self.open(f, now, sends).await?;
        }
        for subject in normal {
            self.resolve(subject, now, sends).await?;
        }
        Ok(())
    }

    /// Opens `firing`'s alerts, and (when the list is `complete`) resolves open alerts of
    /// `kind` it no longer holds.
    async fn settle(
        &mut self,
        kind: &str,
        firing: Vec<Firing>,
        complete: bool,
        now: u64,
        sends: &mut usize,
    ) -> Result<(), Error> {
        let subjects: HashSet<String> = firing.iter().map(|f| f.subject.clone()).collect();
        for f in firing {
            self.open(f, now, sends).await?;
        }
        if complete {
            for a in self.store.open_alerts(Some(kind), MAX_PER_PASS).await? {
                if !subjects.contains(&a.subject) {
                    self.resolve(&a.subject, now, sends).await?;
                }
            }
        }
        Ok(())
    }

    async fn open(&mut self, f: Firing, now: u64, sends: &mut usize) -> Result<(), Error> {
        let mut body = f.body;
        body["kind"] = json!(f.kind);
        body["severity"] = json!(f.severity);
        body["subject"] = json!(f.subject);
        let alert = NewAlert {
            subject: f.subject,
            kind: f.kind.to_string(),
            severity: f.severity.to_string(),
            body,
        };
        let cooldown = self.cfg.cooldown_secs.saturating_mul(1000);
        if !self
            .store
            .open_alert(&alert, now, now.saturating_sub(cooldown))
            .await?
        {
            return Ok(());
        }
        info!(subject = %alert.subject, kind = %alert.kind, "alert raised");
        self.metrics.alert(&alert.kind, "firing");
        if *sends < self.cfg.max_alerts_per_tick {
            *sends += 1;
            let rec = AlertRecord {
                subject: alert.subject.clone(),
                kind: alert.kind.clone(),
                severity: alert.severity.clone(),
                body: alert.body,
                opened_ms: now,
                resolved_ms: None,
            };
            self.deliver(&rec.subject, &message_body(&rec, false), false)
                .await?;
        }
        Ok(())
    }

    async fn resolve(&mut self, subject: &str, now: u64, sends: &mut usize) -> Result<(), Error> {
        let Some(a) = self.store.resolve_alert(subject, now).await? else {
            return Ok(());
        };
        info!(%subject, "alert resolved");
        self.metrics.alert(&a.kind, "resolved");
        if *sends < self.cfg.max_alerts_per_tick {
            *sends += 1;
            self.deliver(subject, &message_body(&a, true), true).await?;
        }
        Ok(())
    }

    /// Sends one message and marks it delivered; a failure is logged and retried later.
    async fn deliver(&self, subject: &str, body: &Value, resolve: bool) -> Result<(), Error> {
        let Some(sink) = &self.sink else {
            // No sink configured: the alert is recorded (and counted) only.
            self.store.alert_sent(subject, resolve, now_ms()).await?;
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(15), sink.send(body)).await {
            Ok(Ok(())) => {
                self.store.alert_sent(subject, resolve, now_ms()).await?;
            }
            Ok(Err(e)) => {
                warn!(%subject, error = %e, "cannot deliver an alert; it will be retried")
            }
            Err(_) => warn!(%subject, "delivering an alert timed out; it will be retried"),
        }
        Ok(())
    }
}

/// The message sinks get for an alert (`state` firing) or its resolve.
fn message_body(a: &AlertRecord, resolve: bool) -> Value {
    let mut body = a.body.clone();
    if !body.is_object() {
        body = json!({});
    }
    body["kind"] = json!(a.kind);
    body["subject"] = json!(a.subject);
    body["state"] = json!(if resolve { "resolved" } else { "firing" });
    if resolve {
        body["severity"] = json!("info");
        let was = a.body["message"].as_str().unwrap_or("").to_string();
        body["message"] = json!(format!(
            "Resolved: {}",
            if was.is_empty() {
                a.subject.as_str()
            } else {
                was.as_str()
            }
        ));
        body["resolved_ms"] = json!(a.resolved_ms);
    } else {
        body["severity"] = json!(a.severity);
        body["opened_ms"] = json!(a.opened_ms);
    }
    body
}

/// `90` → `1m 30s`.
fn human(secs: u64) -> String {
    kora_model::duration::format(Duration::from_secs(secs))
}

//! What an operator can alert on, through `prometheus-client`: counters of runs, tasks and
//! results; histograms of run end-to-end time and of the ledger commit (time and batch size);
//! and gauges sampled from the broker and the ledger (`sample`): queue backlogs and the age of
//! their oldest waiting task, live runs per workflow, the ledger's connections. `kora serve`
//! registers them in its registry and serves them on `/metrics`.
//!
//! Labels are bounded: tenant, workflow, queue, status, reason, cause; never a run id. Tenant
//! and workflow names come from users, so each keeps at most [`MAX_LABEL_VALUES`] distinct
//! values per process; later ones are counted under `_other`.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Distinct tenants (and, apart, workflows) a process labels before it folds the rest into
/// `_other`: enough for real installations, bounded against one that names a workflow per run.
pub(crate) const MAX_LABEL_VALUES: usize = 500;

/// The label value that stands for every name past [`MAX_LABEL_VALUES`].
pub(crate) const OTHER: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub tenant: String,
    pub workflow: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabels {
    pub tenant: String,
    pub workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub kind: String,
    /// `firing` or `resolved`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueStateLabels {
    pub queue: String,
    /// `waiting` (not yet taken by a worker) or `running` (taken, not yet acknowledged).
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// Why a result was fenced (ignored), the `cause` of `kora_results_fenced_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// Its run is unknown or has ended.
    RunEnded,
    /// The planner had moved on: a stale attempt, or a node no longer expected.
    Stale,
    /// The ledger already held an outcome for the attempt (a redelivered result).
    Duplicate,
}

impl Fenced {
    pub fn as_str(self) -> &'static str {
        match self {
            Fenced::RunEnded => "run_ended",
            Fenced::Stale => "stale",
            Fenced::Duplicate => "duplicate",
        }
    }
}

/// Names from users (tenants, workflows), at most [`MAX_LABEL_VALUES`] distinct ones.
#[derive(Debug, Default)]
pub struct Bounded(Mutex<HashSet<String>>);

impl Bounded {
    pub fn label(&self, name: &str) -> String {
        let Ok(mut seen) = self.0.lock() else {
            return OTHER.to_string();
        };
        if seen.contains(name) {
            return name.to_string();
        }
        if seen.len() < MAX_LABEL_VALUES {
            seen.insert(name.to_string());
            return name.to_string();
        }
        OTHER.to_string()
    }
}

/// Buckets for the run end-to-end time: 5 ms to ~7 h, each 1.6 times the one before, so a
/// percentile up to p99.9 interpolates within a bucket a sixth of its value wide.
fn run_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 1.6, 34))
}

#[derive(Debug)]
pub struct Metrics {
    pub runs_started: Counter,
    pub runs_rejected: Counter,
    /// Runs that ended, by tenant, workflow and status (succeeded, failed, cancelled).
    pub runs_finished: Family<RunLabels, Counter>,
    /// Submission to end, by tenant and workflow.
    pub run_seconds: Family<WorkflowLabels, Histogram, fn() -> Histogram>,
    pub tasks_dispatched: Counter,
    pub results_recorded: Counter,
    /// Duplicate, stale or late results ignored, by [`Fenced`] cause: a high rate means
    /// redeliveries or timeouts.
    pub results_fenced: Family<CauseLabels, Counter>,
    /// Results handed back because the ledger did not hold their attempt yet (the task went
    /// out before the commit deciding it): normal in small numbers; a steady rate means
    /// commits that do not land.
    pub results_early: Counter,
    /// Undecodable ledger messages sent to the dead-letter stream.
    pub poison_messages: Counter,
    /// Batches refused because another coordinator moved a run on first; retried on fresh
    /// state. A steady high rate means coordinators contend for the same runs.
    pub ledger_conflicts: Counter,
    /// Tasks re-sent by the outbox sweeper after a crash between commit and publish.
    pub tasks_republished: Counter,
    /// Failed attempts given another attempt under their node's retry policy.
    pub tasks_retried: Counter,
    /// Failed attempts dead-lettered (no retry left, or a permanent error), by reason:
    /// `kora dlq list`.
    pub dead_letters: Family<ReasonLabels, Counter>,
    /// Ledger messages (admissions, results, cancels) handled in committed batches.
    pub ledger_messages: Counter,
    /// Seconds each ledger transaction took (one per batch).
    pub ledger_commit_seconds: Histogram,
    /// Ledger messages per committed batch.
    pub ledger_batch_messages: Histogram,
    /// Runs accepted over their workflow's concurrency limit, queued for a slot.
    pub runs_queued: Counter,
    /// Runs failed because their deadline passed.
    pub runs_past_deadline: Counter,
    /// Tasks held back by their queue's rate limit (sent later, when their slot comes).
    pub tasks_paced: Counter,
    /// Submissions that named a recent run by their idempotency key (no new run).
    pub runs_deduplicated: Counter,
    /// Sampled: tasks on each queue, waiting or running.
    pub queue_tasks: Family<QueueStateLabels, Gauge>,
    /// Sampled: seconds the oldest task not yet taken by a worker has waited, per queue.
    pub queue_oldest_waiting: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Sampled: runs running or queued, by tenant, workflow and status.
    pub runs_live: Family<RunLabels, Gauge>,
    /// Sampled: the ledger's connections in use and idle.
    pub ledger_connections: Family<StateLabels, Gauge>,
    /// Sampled: when the last sample was taken (Unix seconds); stale means the sampler is stuck.
    pub sampled_at: Gauge,
    /// Sampled: running runs the monitor finds stuck, by reason (no_progress, no_worker,
    /// retry_loop).
    pub runs_stuck: Family<ReasonLabels, Gauge>,
    /// Alerts this coordinator raised or resolved, by kind and state.
    pub alerts: Family<AlertLabels, Counter>,
    /// Tenant names as labels.
    pub tenants: Bounded,
    /// Workflow names as labels.
    pub workflows: Bounded,
}

impl Default for Metrics {
    /// Metrics that no registry exposes (embedded runs read them directly).
    fn default() -> Self {
        Metrics {
            runs_started: Counter::default(),
            runs_rejected: Counter::default(),
            runs_finished: Family::default(),
            run_seconds: Family::new_with_constructor(run_seconds),
            tasks_dispatched: Counter::default(),
            results_recorded: Counter::default(),
            results_fenced: Family::default(),
            results_early: Counter::default(),
            poison_messages: Counter::default(),
            ledger_conflicts: Counter::default(),
            tasks_republished: Counter::default(),
            tasks_retried: Counter::default(),
            dead_letters: Family::default(),
            ledger_messages: Counter::default(),
            // 0.25 ms to ~8 s.
            ledger_commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            // 1 to 4,096 messages.
            ledger_batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            runs_queued: Counter::default(),
            runs_past_deadline: Counter::default(),
            tasks_paced: Counter::default(),
            runs_deduplicated: Counter::default(),
            queue_tasks: Family::default(),
            queue_oldest_waiting: Family::default(),
            runs_live: Family::default(),
            ledger_connections: Family::default(),
            sampled_at: Gauge::default(),
            runs_stuck: Family::default(),
            alerts: Family::default(),
            tenants: Bounded::default(),
            workflows: Bounded::default(),
        }
    }
}

impl Metrics {
    /// The coordinator's metrics, registered in `registry` (under the `kora_` prefix the
    /// caller's registry gives them).
    pub fn registered(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let counters: [(&str, &str, &Counter); 14] = [
            (
                "runs_started",
                "Runs admitted and started.",
                &m.runs_started,
            ),
            (
                "runs_rejected",
                "Run requests rejected by validation.",
                &m.runs_rejected,
            ),
            (
                "tasks_dispatched",
                "Node tasks published to workers.",
                &m.tasks_dispatched,
            ),
            (
                "results_recorded",
                "Node results recorded in the ledger.",
                &m.results_recorded,
            ),
            (
                "results_early",
                "Node results handed back until the commit deciding their task lands.",
                &m.results_early,
            ),
            (
                "poison_messages",
                "Undecodable ledger messages dead-lettered.",
                &m.poison_messages,
            ),
            (
                "ledger_conflicts",
                "Ledger batches retried because another coordinator moved a run on first.",
                &m.ledger_conflicts,
            ),
            (
                "tasks_republished",
                "Tasks re-sent by the outbox sweeper after a crash between commit and publish.",
                &m.tasks_republished,
            ),
            (
                "tasks_retried",
                "Failed node attempts retried under their retry policy.",
                &m.tasks_retried,
            ),
            (
                "ledger_messages",
                "Ledger messages (admissions and results) handled in committed batches.",
                &m.ledger_messages,
            ),
            (
                "runs_queued",
                "Runs accepted over their workflow's concurrency limit and queued for a slot.",
                &m.runs_queued,
            ),
            (
                "runs_deadline_exceeded",
                "Runs failed because their deadline (deadline_secs) passed.",
                &m.runs_past_deadline,
            ),
            (
                "tasks_rate_limited",
                "Tasks held back by their queue's rate limit and sent when their slot came.",
                &m.tasks_paced,
            ),
            (
                "runs_deduplicated",
                "Submissions that named a recent run by their idempotency key (no new run made).",
                &m.runs_deduplicated,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "runs_finished",
            "Runs that ended, by tenant, workflow and status (succeeded, failed, cancelled).",
            m.runs_finished.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Time from a run's submission to its end, by tenant and workflow.",
            m.run_seconds.clone(),
        );
        registry.register(
            "results_fenced",
            "Node results ignored, by cause: run_ended (unknown or finished run), stale (the planner had moved on), duplicate (the ledger held the outcome).",
            m.results_fenced.clone(),
        );
        registry.register(
            "dead_letters",
            "Failed node attempts dead-lettered, by reason (kora dlq list).",
            m.dead_letters.clone(),
        );
        registry.register(
            "ledger_commit_seconds",
            "Time of each ledger transaction (one per batch).",
            m.ledger_commit_seconds.clone(),
        );
        registry.register(
            "ledger_batch_messages",
            "Ledger messages in each committed batch.",
            m.ledger_batch_messages.clone(),
        );
        registry.register(
            "queue_tasks",
            "Tasks on each queue by state: waiting (no worker has taken them) or running (taken, not acknowledged). Sampled.",
            m.queue_tasks.clone(),
        );
        registry.register(
            "queue_oldest_waiting_seconds",
            "Seconds the oldest task no worker has taken yet has waited, per queue (0 when none waits). Sampled.",
            m.queue_oldest_waiting.clone(),
        );
        registry.register(
            "runs_live",
            "Runs running or queued, by tenant, workflow and status. Sampled from the ledger.",
            m.runs_live.clone(),
        );
        registry.register(
            "ledger_connections",
            "The ledger's database connections by state (in_use, idle, max). Sampled.",
            m.ledger_connections.clone(),
        );
        registry.register(
            "runs_stuck",
            "Running runs found stuck, by reason: no_progress, no_worker (a task waits on a queue no worker serves), retry_loop. Sampled from the ledger.",
            m.runs_stuck.clone(),
        );
        registry.register(
            "alerts",
            "Alerts this coordinator raised or resolved (exactly one coordinator does each), by kind and state.",
            m.alerts.clone(),
        );
        registry.register(
            "monitor_sampled_at_seconds",
            "When the coordinator last sampled queues and live runs (Unix time).",
            m.sampled_at.clone(),
        );
        m
    }

    pub fn fenced(&self, cause: Fenced, n: u64) {
        if n > 0 {
            self.results_fenced
                .get_or_create(&CauseLabels {
                    cause: cause.as_str().to_string(),
                })
                .inc_by(n);
        }
    }

    /// Results fenced for any cause.
    pub fn fenced_total(&self) -> u64 {
        [Fenced::RunEnded, Fenced::Stale, Fenced::Duplicate]
            .iter()
            .filter_map(|c| {
                self.results_fenced.get(&CauseLabels {
                    cause: c.as_str().to_string(),
                })
            })
            .map(|c| c.get())
            .sum()
    }

    pub fn alert(&self, kind: &str, state: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                kind: kind.to_string(),
                state: state.to_string(),
            })
            .inc();
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a run's end and observes its end-to-end time.
    pub fn run_ended(&self, tenant: &str, workflow: &str, status: &str, seconds: Option<f64>) {
        let tenant = self.tenants.label(tenant);
        let workflow = self.workflows.label(workflow);
        if let Some(s) = seconds {
            self.run_seconds
                .get_or_create(&WorkflowLabels {
                    tenant: tenant.clone(),
                    workflow: workflow.clone(),
                })
                .observe(s);
        }
        self.runs_finished
            .get_or_create(&RunLabels {
                tenant,
                workflow,
                status: status.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_bounded_as_labels() {
        let b = Bounded::default();
        for i in 0..MAX_LABEL_VALUES {
            assert_eq!(b.label(&format!("wf{i}")), format!("wf{i}"));
        }
        assert_eq!(b.label("one-too-many"), OTHER);
        assert_eq!(b.label("wf7"), "wf7", "names seen before keep their label");
    }

    #[test]
    fn run_buckets_reach_hours() {
        let m = Metrics::default();
        m.run_ended("t", "w", "succeeded", Some(3.0 * 3600.0));
        let mut registry = Registry::default();
        registry.register("run_duration_seconds", "", m.run_seconds.clone());
        registry.register("runs_finished", "", m.runs_finished);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "runs_finished_total{tenant=\"t\",workflow=\"w\",status=\"succeeded\"} 1"
            ),
            "{text}"
        );
        // The largest finite bucket is above three hours, so the observation is not in +Inf only.
        let finite: Vec<f64> = text
            .lines()
            .filter_map(|l| l.split("le=\"").nth(1))
            .filter_map(|l| l.split('"').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .collect();
        assert!(finite.iter().any(|&le| le > 3.0 * 3600.0), "{text}");
    }
}

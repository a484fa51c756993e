//! The scheduler's metrics: run requests by outcome, how long a request waited between its
//! submission and its admission, and runs started by each trigger. Labels are bounded: the
//! outcome is one of three, trigger names are registered objects.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `admitted`, `rejected` (invalid: recorded as a rejected run) or `poison` (undecodable:
    /// dead-lettered).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub trigger: String,
    /// `submitted`, or `failed` (retried: a subject trigger's message is redelivered, a cron
    /// tick is lost and logged).
    pub outcome: String,
}

#[derive(Debug)]
pub struct SchedulerMetrics {
    pub requests: Family<OutcomeLabels, Counter>,
    /// Submission (the client's clock) to admission (this scheduler's).
    pub admission_delay: Histogram,
    pub trigger_runs: Family<TriggerLabels, Counter>,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics {
            requests: Family::default(),
            // 0.5 ms to ~70 min.
            admission_delay: Histogram::new(exponential_buckets(0.000_5, 2.0, 24)),
            trigger_runs: Family::default(),
        }
    }
}

impl SchedulerMetrics {
    pub fn registered(registry: &mut Registry) -> Self {
        let m = SchedulerMetrics::default();
        registry.register(
            "scheduler_requests",
            "Run requests the scheduler handled, by outcome (admitted, rejected, poison).",
            m.requests.clone(),
        );
        registry.register(
            "scheduler_admission_delay_seconds",
            "Time from a run request's submission to its admission.",
            m.admission_delay.clone(),
        );
        registry.register(
            "trigger_runs",
            "Runs submitted by triggers, by trigger and outcome (submitted, failed).",
            m.trigger_runs.clone(),
        );
        m
    }

    pub(crate) fn request(&self, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub(crate) fn trigger(&self, trigger: &str, submitted: bool) {
        self.trigger_runs
            .get_or_create(&TriggerLabels {
                trigger: trigger.to_string(),
                outcome: if submitted { "submitted" } else { "failed" }.to_string(),
            })
            .inc();
    }
}

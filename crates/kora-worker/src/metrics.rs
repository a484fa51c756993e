//! The worker's metrics: how long nodes run (per node type and queue), how long tasks waited
//! between their dispatch and a worker starting them (schedule-to-start, per queue), attempts
//! by outcome, task slots busy and free, PythonCodeNode's interpreters, and how long results
//! take to be stored. Labels are bounded: node types come from the worker's registry (one it
//! lacks is `unknown`), queues from its configuration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node_type: String,
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub node_type: String,
    pub queue: String,
    /// `succeeded`, `failed`, `timed_out`, `cancelled` (its run was), `handed_back` (the
    /// worker stopped before it finished).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabels {
    pub queue: String,
    /// `busy` or `free`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub state: String,
}

/// 0.1 ms to ~2.5 h, each bucket 1.6 times the one before: p99.9 of a node that takes
/// milliseconds or hours interpolates within a bucket a sixth of its value wide.
pub(crate) fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 1.6, 37))
}

pub struct WorkerMetrics {
    pub node_seconds: Family<NodeLabels, Histogram, fn() -> Histogram>,
    pub schedule_to_start: Family<QueueLabels, Histogram, fn() -> Histogram>,
    pub attempts: Family<OutcomeLabels, Counter>,
    pub slots: Family<SlotLabels, Gauge>,
    /// Undecodable tasks dead-lettered.
    pub poison_tasks: Counter,
    /// Seconds to store a batch of results in the broker (before the tasks are acked).
    pub result_publish_seconds: Histogram,
    /// Whether anything reads these: an embedded run's are not kept, so its hot path does
    /// not pay for them.
    enabled: bool,
}

impl Default for WorkerMetrics {
    /// Metrics that no registry exposes (embedded runs).
    fn default() -> Self {
        WorkerMetrics {
            node_seconds: Family::new_with_constructor(seconds_buckets),
            schedule_to_start: Family::new_with_constructor(seconds_buckets),
            attempts: Family::default(),
            slots: Family::default(),
            poison_tasks: Counter::default(),
            result_publish_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            enabled: false,
        }
    }
}

impl WorkerMetrics {
    /// The worker's metrics in `registry`; `nodes` gives the Python interpreter gauges.
    pub fn registered(
        registry: &mut Registry,
        nodes: &std::sync::Arc<kora_nodes::Registry>,
    ) -> Self {
        let m = WorkerMetrics {
            enabled: true,
            ..WorkerMetrics::default()
        };
        registry.register(
            "node_execution_seconds",
            "Time a node took to run on a worker, by node type and queue.",
            m.node_seconds.clone(),
        );
        registry.register(
            "schedule_to_start_seconds",
            "Time from a task's dispatch to a worker starting it (first deliveries), by queue.",
            m.schedule_to_start.clone(),
        );
        registry.register(
            "node_attempts",
            "Node attempts a worker finished, by node type, queue and outcome (succeeded, failed, timed_out, cancelled, handed_back).",
            m.attempts.clone(),
        );
        registry.register(
            "worker_slots",
            "Task slots of the worker loops in this process, by queue and state (busy, free).",
            m.slots.clone(),
        );
        registry.register(
            "worker_poison_tasks",
            "Undecodable tasks a worker dead-lettered.",
            m.poison_tasks.clone(),
        );
        registry.register(
            "worker_result_publish_seconds",
            "Time to store a batch of results in the broker, before their tasks are acknowledged.",
            m.result_publish_seconds.clone(),
        );
        if nodes.python_use().is_some() {
            registry.register_collector(Box::new(PythonCollector(std::sync::Arc::clone(nodes))));
        }
        m
    }

    /// Creates the series of `queue` at zero.
    pub(crate) fn serve_queue(&self, queue: &str) {
        if self.enabled {
            let _ = self.schedule_to_start.get_or_create(&QueueLabels {
                queue: queue.to_string(),
            });
            self.slots_move(queue, "", "busy", 0);
        }
    }

    /// A task started `delay` seconds after its dispatch.
    pub(crate) fn started(&self, queue: &str, delay: f64) {
        if self.enabled {
            self.schedule_to_start
                .get_or_create(&QueueLabels {
                    queue: queue.to_string(),
                })
                .observe(delay);
        }
    }

    /// A node ran for `seconds`.
    pub(crate) fn ran(&self, node_type: &str, queue: &str, seconds: f64) {
        if self.enabled {
            self.node_seconds
                .get_or_create(&NodeLabels {
                    node_type: node_type.to_string(),
                    queue: queue.to_string(),
                })
                .observe(seconds);
        }
    }

    pub(crate) fn published(&self, seconds: f64) {
        if self.enabled {
            self.result_publish_seconds.observe(seconds);
        }
    }

    pub(crate) fn attempt(&self, node_type: &str, queue: &str, outcome: &str) {
        if !self.enabled {
            return;
        }
        self.attempts
            .get_or_create(&OutcomeLabels {
                node_type: node_type.to_string(),
                queue: queue.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Moves `n` slots of `queue` from `from` to `to` (`busy`, `free`, or `""` for none: a
    /// loop starting or stopping).
    pub(crate) fn slots_move(&self, queue: &str, from: &str, to: &str, n: i64) {
        if !self.enabled {
            return;
        }
        for (state, delta) in [(from, -n), (to, n)] {
            if !state.is_empty() {
                self.slots
                    .get_or_create(&SlotLabels {
                        queue: queue.to_string(),
                        state: state.to_string(),
                    })
                    .inc_by(delta);
            }
        }
    }
}

/// Reads the interpreter pool at scrape time (its state lives in the pool, not in a gauge).
struct PythonCollector(std::sync::Arc<kora_nodes::Registry>);

impl std::fmt::Debug for PythonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PythonCollector")
    }
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerMetrics")
    }
}

impl prometheus_client::collector::Collector for PythonCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let Some((busy, idle, max)) = self.0.python_use() else {
            return Ok(());
        };
        let family: Family<StateLabels, Gauge> = Family::default();
        for (state, n) in [("busy", busy), ("idle", idle), ("max", max)] {
            family
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let metric = encoder.encode_descriptor(
            "python_interpreters",
            "PythonCodeNode interpreters of this process by state: busy (running code), idle (started, waiting), max (the pool's size).",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

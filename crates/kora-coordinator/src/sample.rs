//! The gauges no single event updates, sampled every `coordinator.sample_interval` from the
//! broker and the ledger: tasks waiting and running on each queue and the age of the oldest
//! waiting one, runs live per tenant and workflow, the ledger's connections.
//!
//! Every coordinator samples (they see the same broker and ledger, so they report the same
//! figures: aggregate with `max`, not `sum`). A sample that fails is logged and the gauges keep
//! their last values; `kora_monitor_sampled_at_seconds` shows how old they are.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kora_broker::Broker;
use kora_broker::topology::queue_backlog;
use kora_model::now_ms;
use kora_model::subjects::Subjects;
use kora_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Error;
use crate::metrics::{Metrics, QueueLabels, QueueStateLabels, RunLabels, StateLabels};
use crate::monitor::{Monitor, QueueView};

/// Queues and live-run groups a sample reports at most.
const MAX_SERIES: usize = 1_000;

/// Samples until `shutdown` is cancelled.
pub(crate) async fn run(
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    subjects: Subjects,
    metrics: Arc<Metrics>,
    mut monitor: Monitor,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut sampler = Sampler {
        broker,
        store,
        subjects,
        metrics,
        queues: BTreeSet::new(),
        views: BTreeMap::new(),
        live: HashSet::new(),
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let passed = match sampler.sample().await {
            Ok(()) => monitor.pass(&sampler.views).await,
            Err(e) => Err(e),
        };
        match passed {
            Ok(()) => failing = false,
            // Once per outage, not once per tick.
            Err(e) if !failing => {
                failing = true;
                warn!(error = %e, "cannot sample queues and live runs or look for stuck runs; the gauges keep their last values");
            }
            Err(e) => debug!(error = %e, "sampling still fails"),
        }
    }
}

struct Sampler {
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    subjects: Subjects,
    metrics: Arc<Metrics>,
    /// Queues seen since the start: one that empties reports 0, not its last figure.
    queues: BTreeSet<String>,
    /// What the last sample saw of each queue (for the monitor).
    views: BTreeMap<String, QueueView>,
    /// Live-run label sets reported last time: a group that ends is removed.
    live: HashSet<RunLabels>,
}

impl Sampler {
    async fn sample(&mut self) -> Result<(), Error> {
        let now = now_ms();
        self.sample_queues(now).await?;
        self.sample_runs().await?;
        if let Some(pool) = self.store.pool_use() {
            for (state, n) in [
                ("in_use", pool.in_use),
                ("idle", pool.idle),
                ("max", pool.max),
            ] {
                self.metrics
                    .ledger_connections
                    .get_or_create(&StateLabels {
                        state: state.into(),
                    })
                    .set(i64::from(n));
            }
        }
        self.metrics
            .sampled_at
            .set(i64::try_from(now / 1000).unwrap_or(i64::MAX));
        Ok(())
    }

    async fn sample_queues(&mut self, now: u64) -> Result<(), Error> {
        let known: Vec<String> = self.queues.iter().cloned().collect();
        let backlog =
            queue_backlog(self.broker.as_ref(), &self.subjects, &known, MAX_SERIES).await?;
        for q in backlog {
            self.queues.insert(q.queue.clone());
            for (state, n) in [("waiting", q.waiting), ("running", q.running)] {
                self.metrics
                    .queue_tasks
                    .get_or_create(&QueueStateLabels {
                        queue: q.queue.clone(),
                        state: state.into(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            let age = q
                .oldest_waiting_ms
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0);
            self.metrics
                .queue_oldest_waiting
                .get_or_create(&QueueLabels {
                    queue: q.queue.clone(),
                })
                .set(age);
            self.views.insert(
                q.queue,
                QueueView {
                    waiting: q.waiting,
                    oldest_waiting_secs: age,
                    bound: q.bound,
                },
            );
        }
        Ok(())
    }

    async fn sample_runs(&mut self) -> Result<(), Error> {
        let live = self.store.live_runs(MAX_SERIES).await?;
        // Names folded into `_other` add up.
        let mut counts: HashMap<RunLabels, i64> = HashMap::with_capacity(live.len());
        for l in live {
            let labels = RunLabels {
                tenant: self.metrics.tenants.label(&l.tenant),
                workflow: self.metrics.workflows.label(&l.workflow),
                status: l.status.as_str().to_string(),
            };
            *counts.entry(labels).or_default() += i64::try_from(l.runs).unwrap_or(i64::MAX);
        }
        for (labels, n) in &counts {
            self.metrics.runs_live.get_or_create(labels).set(*n);
        }
        let now: HashSet<RunLabels> = counts.into_keys().collect();
        for gone in self.live.difference(&now) {
            self.metrics.runs_live.remove(gone);
        }
        self.live = now;
        Ok(())
    }
}

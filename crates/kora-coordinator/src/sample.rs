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

/// One queue's figures.
#[derive(Debug, Default, PartialEq)]
struct Queue {
    stored: u64,
    running: u64,
    /// Publish time of the oldest task no worker has taken.
    oldest_waiting_ms: Option<u64>,
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
        let stream = self.subjects.stream_tasks();
        let prefix = self.subjects.task("");
        let held = self
            .broker
            .subjects(&stream, &format!("{prefix}>"), MAX_SERIES)
            .await?;
        let mut queues: BTreeMap<String, Queue> = BTreeMap::new();
        // Per queue: its subjects' oldest message, for a queue no worker has a consumer on.
        let mut oldest_held: BTreeMap<String, u64> = BTreeMap::new();
        for s in held {
            let Some(queue) = s
                .subject
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('.').next())
            else {
                continue;
            };
            queues.entry(queue.to_string()).or_default().stored += s.messages;
            let o = oldest_held.entry(queue.to_string()).or_insert(s.oldest_ms);
            *o = (*o).min(s.oldest_ms);
        }
        self.queues.extend(queues.keys().cloned());
        for name in self.queues.iter().take(MAX_SERIES) {
            let q = queues.entry(name.clone()).or_default();
            let mut bound = false;
            for durable in [
                Subjects::consumer_workers(name),
                Subjects::consumer_workers_high(name),
            ] {
                match self.broker.consumer_info(&stream, &durable).await {
                    Ok(info) => {
                        bound = true;
                        q.running += info.num_ack_pending;
                        if let Some(t) = info.oldest_pending_ms {
                            q.oldest_waiting_ms =
                                Some(q.oldest_waiting_ms.map_or(t, |o: u64| o.min(t)));
                        }
                    }
                    Err(kora_broker::Error::ConsumerNotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !bound {
                // No worker ever bound this queue: everything on it waits.
                q.oldest_waiting_ms = oldest_held.get(name).copied();
            }
            let running = q.running.min(q.stored);
            for (state, n) in [("waiting", q.stored - running), ("running", running)] {
                self.metrics
                    .queue_tasks
                    .get_or_create(&QueueStateLabels {
                        queue: name.clone(),
                        state: state.into(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            let age = q
                .oldest_waiting_ms
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0);
            self.views.insert(
                name.clone(),
                QueueView {
                    waiting: q.stored - running,
                    oldest_waiting_secs: age,
                    bound,
                },
            );
            self.metrics
                .queue_oldest_waiting
                .get_or_create(&QueueLabels {
                    queue: name.clone(),
                })
                .set(age);
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

//! The coordinator: the only writer of run state, and the only caller of the planner.
//!
//! Owns: consuming admissions, node results and operator requests in batches; for each batch,
//! one ledger transaction recording outcomes, the planner's decisions (new attempts, skips,
//! finished runs) and events; then publishing the decided tasks and events; then acking the
//! batch. Duplicate and stale results are fenced (ignored and counted). After a restart a
//! run's planner state is rebuilt by replaying its recorded outcomes in order.
//!
//! Must not: execute nodes, or publish a task before the ledger says it was dispatched.
//!
//! Layout, one concern per module: [`run`] is the loop (here); `batch` takes a batch from
//! delivery to ack; `admit`, `result`, `cancel` and `ops` handle each kind of ledger message;
//! `apply` turns planner decisions into rows and messages (pure); `task` encodes tasks and child
//! run requests; `retry`, `pacing`, `queued`, `children` and `outbox` are the timed and
//! after-commit work; `state` is a run's cached state and its rebuild from the ledger.

mod admit;
mod apply;
mod batch;
mod cancel;
mod children;
mod config;
mod error;
mod metrics;
mod monitor;
mod ops;
mod outbox;
mod pacing;
mod pending;
mod queued;
mod result;
mod retry;
mod sample;
mod state;
mod task;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use kora_broker::Broker;
use kora_model::now_ms;
use kora_model::subjects::Subjects;
use kora_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

pub use config::{Config, RateLimit};
pub use error::Error;
pub use metrics::Metrics;
pub use monitor::{AlertSink, MonitoringConfig};

use crate::batch::{InFlight, Open};
use crate::outbox::{Marks, Published};
use crate::state::{ActiveRun, SharedCatalog};
use crate::task::Env;

/// A retry (or paced task) waiting for its time: `(due_ms, run_id, node, iteration, attempt)`.
type DueTask = Reverse<(u64, String, usize, u32, u32)>;

struct Coordinator {
    env: Env,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Node times and failures the monitor learns from (`None` when it does not run).
    observed: Option<monitor::SharedObserved>,
    runs: HashMap<String, ActiveRun>,
    /// Committed batches on their way to the broker.
    outbox: tokio::sync::mpsc::Sender<Published>,
    /// Published tasks the next commit marks in the ledger.
    marks: Arc<Marks>,
    /// The batch the next commit writes, and the commit in flight (see `batch`).
    open: Option<Open>,
    inflight: Option<InFlight>,
    /// Whether tasks may go before their commit: not after a failed commit, until one
    /// succeeds (a ledger outage then sends nothing it has not recorded).
    early_allowed: bool,
    /// Deadlines of runs this coordinator admitted, earliest first. Deadlines lost with this
    /// process are found in the ledger by any coordinator's sweep.
    deadlines: BinaryHeap<Reverse<(u64, String)>>,
    /// Retries and paced tasks scheduled by this coordinator, earliest first. One lost with
    /// this process (a crash) is re-sent by any coordinator's outbox sweeper once it is due.
    timers: BinaryHeap<DueTask>,
}

/// Runs the coordinator until `shutdown` is cancelled; `alerts` receives the monitor's
/// alerts (they are recorded in the ledger either way).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: Config,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    subjects: Subjects,
    catalog: SharedCatalog,
    metrics: Arc<Metrics>,
    alerts: Option<Arc<dyn AlertSink>>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let consumer = broker
        .consumer_buffered(
            &subjects.stream_ledger(),
            Subjects::CONSUMER_COORDINATOR,
            cfg.batch,
        )
        .await?;
    // Tasks that reached their max deliveries (their workers kept dying), as the server's
    // advisories captured in a stream.
    let advisories = broker
        .consumer(&subjects.stream_advisories(), Subjects::CONSUMER_ADVISORIES)
        .await?;
    // A few batches may be in flight to the broker while the next one is recorded.
    let (outbox_tx, outbox_rx) = tokio::sync::mpsc::channel(4);
    let marks = Arc::new(Marks::default());
    let outbox = tokio::spawn(outbox::publish_decisions(
        Arc::clone(&broker),
        Arc::clone(&store),
        outbox_rx,
        Arc::clone(&marks),
    ));
    // Gauges sampled, and the monitor's passes, beside the loop, never in its way.
    let observed: Option<monitor::SharedObserved> =
        (!cfg.sample_interval.is_zero()).then(monitor::SharedObserved::default);
    let sampler = observed.as_ref().map(|o| {
        let watch = monitor::Monitor::new(
            cfg.monitoring.clone(),
            Arc::clone(&store),
            alerts,
            Arc::clone(&metrics),
            Arc::clone(o),
        );
        tokio::spawn(sample::run(
            Arc::clone(&broker),
            Arc::clone(&store),
            subjects.clone(),
            Arc::clone(&metrics),
            watch,
            cfg.sample_interval,
            shutdown.clone(),
        ))
    });
    let mut c = Coordinator {
        env: Env {
            cfg,
            subjects,
            catalog,
        },
        broker,
        store,
        metrics,
        observed,
        runs: HashMap::new(),
        outbox: outbox_tx,
        marks,
        open: None,
        inflight: None,
        early_allowed: true,
        timers: BinaryHeap::new(),
        deadlines: BinaryHeap::new(),
    };
    let mut backoff = Backoff::default();
    // The first tick is immediate: after a crash, lost publishes are re-sent at start-up.
    let mut sweep = tokio::time::interval(c.env.cfg.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Role-failure tests: the loop fails once it has dispatched something.
        #[cfg(feature = "failpoints")]
        if c.metrics.tasks_dispatched.get() > 0 {
            fail::fail_point!("coordinator-fail", |m: Option<String>| Err(
                Error::Injected(m.unwrap_or_else(|| "injected failure".into()))
            ));
        }
        let next_timer = c.next_timer();
        let timer_at = tokio::time::Instant::now()
            + next_timer.map_or(Duration::from_secs(3600), |due| {
                Duration::from_millis(due.saturating_sub(now_ms()))
            });
        let fetch_wait = c.env.cfg.fetch_wait;
        let committing = c.inflight.is_some();
        // The open batch takes at most `batch` messages while a commit is in flight: then the
        // loop waits for that commit (bounded memory, bounded commits).
        let room = c.env.cfg.batch.saturating_sub(c.open_len());
        let full = committing && room == 0;
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            done = async { c.inflight.as_mut().expect("a commit in flight").done().await }, if committing => {
                if let Err(e) = c.on_committed(done).await {
                    error!(error = %e, "ledger batch failed; it will be redelivered");
                    backoff.wait().await;
                }
                continue;
            }
            () = tokio::time::sleep_until(timer_at), if next_timer.is_some() => {
                if c.settle_or_warn().await {
                    c.on_timers().await;
                }
                continue;
            }
            a = advisories.fetch(16, fetch_wait) => {
                if !a.as_ref().is_ok_and(Vec::is_empty) && !c.settle_or_warn().await {
                    if let Ok(a) = a {
                        pending::nak_all(&a.iter().collect::<Vec<_>>(), Duration::from_secs(1)).await;
                    }
                    continue;
                }
                match a {
                    Ok(a) if !a.is_empty() => {
                        if let Err(e) = c.on_lost_tasks(a).await {
                            warn!(error = %e, "cannot handle max-deliveries advisories; they will be redelivered");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "cannot fetch max-deliveries advisories; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                continue;
            }
            _ = sweep.tick() => {
                if c.settle_or_warn().await {
                    c.on_sweep().await;
                }
                continue;
            }
            b = consumer.fetch(room.max(1), fetch_wait), if !full => b,
        };
        match batch {
            Ok(b) if b.is_empty() => continue,
            Ok(b) => match c.handle_batch(b).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    error!(error = %e, "ledger batch failed; it will be redelivered");
                    backoff.wait().await;
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot fetch from the ledger stream; retrying");
                backoff.wait().await;
            }
        }
    }
    if let Some(s) = sampler {
        s.abort();
    }
    // What is decided is committed (or handed back) before the process goes.
    c.settle_or_warn().await;
    let broker = Arc::clone(&c.broker);
    drop(c);
    let _ = outbox.await;
    broker.flush().await?;
    Ok(())
}

impl Coordinator {
    /// How many messages the open batch holds.
    fn open_len(&self) -> usize {
        self.open.as_ref().map_or(0, Open::len)
    }

    /// Commits what is open and waits for it; `false` (logged) when the commit failed.
    async fn settle_or_warn(&mut self) -> bool {
        match self.settle().await {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "ledger batch failed; it will be redelivered");
                false
            }
        }
    }

    /// When the earliest retry, paced task or deadline this coordinator keeps is due.
    fn next_timer(&self) -> Option<u64> {
        let retry = self.timers.peek().map(|Reverse((due, ..))| *due);
        let deadline = self.deadlines.peek().map(|Reverse((due, _))| *due);
        match (retry, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn on_timers(&mut self) {
        if let Err(e) = self.send_due_tasks().await {
            warn!(error = %e, "cannot send due retries; the sweeper will");
        }
        if let Err(e) = self.end_overdue_runs(false).await {
            warn!(error = %e, "cannot end runs past their deadline; the sweep will");
        }
    }

    /// The periodic sweep: what a crash or a conflict left undone, by any coordinator.
    async fn on_sweep(&mut self) {
        if let Err(e) = self.sweep_outbox().await {
            warn!(error = %e, "outbox sweep failed; it will run again");
        }
        if let Err(e) = self.end_overdue_runs(true).await {
            warn!(error = %e, "cannot end runs past their deadline; the sweep will retry");
        }
        if let Err(e) = self.start_queued(None).await {
            warn!(error = %e, "cannot start queued runs; the sweep will retry");
        }
        if let Err(e) = self.report_unreported_children().await {
            warn!(error = %e, "cannot tell parents about ended child runs; the sweep will retry");
        }
    }

    /// A run's cached state, rebuilt from the ledger on a miss; `None` when the run does not
    /// exist, has ended or no longer compiles. The state is taken out of the cache: put it
    /// back with `self.runs.insert`.
    async fn take_run(&mut self, run_id: &str) -> Result<Option<ActiveRun>, Error> {
        if let Some(run) = self.runs.remove(run_id) {
            return Ok(Some(run));
        }
        self.rebuild(run_id).await
    }

    async fn rebuild(&self, run_id: &str) -> Result<Option<ActiveRun>, Error> {
        state::rebuild(self.store.as_ref(), self.env.catalog.as_ref(), run_id).await
    }

    /// Hands committed messages to the outbox publisher.
    async fn send(&self, job: Published, what: &str) {
        if !job.publish.is_empty() && self.outbox.send(job).await.is_err() {
            warn!("the outbox publisher has stopped; the sweeper will send the {what}");
        }
    }
}

/// The loop's backoff after a failed batch or fetch: 50 ms doubling to 5 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(50))
    }
}

impl Backoff {
    fn reset(&mut self) {
        *self = Backoff::default();
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

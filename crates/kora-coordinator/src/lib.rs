//! The coordinator: the only writer of run state, and the only caller of the planner.
//!
//! Owns: consuming admissions and node results in batches; for each batch, one ledger
//! transaction recording outcomes, the planner's decisions (new attempts, skips, finished runs)
//! and events; then publishing the decided tasks and events; then acking the batch. Duplicate
//! and stale results are fenced (ignored and counted). After a restart a run's planner state is
//! rebuilt by replaying its recorded outcomes in order.
//!
//! Must not: execute nodes, or publish a task before the ledger says it was dispatched.

mod metrics;

use foldhash::{HashMap, HashMapExt, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kora_broker::topology::dead_letter;
use kora_broker::{Broker, Delivery, Outbound};
use kora_model::plan::{Action, Outcome, Rejected, RunOutcome, RunState};
use kora_model::subjects::{DEFAULT_QUEUE, Subjects};
use kora_model::wire::{
    self, Admission, EventKind, NodeResult, NodeTask, RunEvent, TaskOutcome, WIRE_VERSION,
};
use kora_model::{Catalog, Map, NodeSpec, Value, now_ms};
use kora_store::{
    AttemptKey, AttemptStatus, AttemptUpdate, Batch, Expect, NewAttempt, NewRun, RunStatus,
    RunUpdate, Store,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] kora_broker::Error),
    #[error(transparent)]
    Store(#[from] kora_store::Error),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Ledger messages handled per transaction.
    pub batch: usize,
    pub fetch_wait: Duration,
    /// Active runs whose planner state is kept in memory; others are rebuilt from the ledger.
    pub cache_runs: usize,
    /// Largest task message; a node whose inputs encode larger fails instead of being sent.
    /// Keep it under the task stream's message limit.
    pub max_task_bytes: usize,
    /// How often the outbox sweeper looks for tasks whose publish was lost.
    pub sweep_interval: Duration,
    /// A submission whose idempotency key names a run younger than this is that run (its run
    /// id becomes an alias); past it, the key is released and a new run takes it.
    pub idempotency_window: Duration,
    /// How old an unconfirmed dispatch must be before the sweeper re-sends it.
    pub outbox_grace: Duration,
    /// Task rate limits by queue name: tasks of a limited queue are sent no faster than
    /// this, across every coordinator sharing the ledger; the rest wait in the coordinator.
    pub rate_limits: std::collections::BTreeMap<String, RateLimit>,
}

/// At most `per_sec` tasks a second on a queue, after a burst of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: u32,
}

impl RateLimit {
    /// Milliseconds between two tasks.
    fn interval_ms(&self) -> f64 {
        1000.0 / self.per_sec
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch: 512,
            fetch_wait: Duration::from_millis(500),
            cache_runs: 10_000,
            max_task_bytes: (8 << 20) - (64 << 10),
            sweep_interval: Duration::from_secs(5),
            idempotency_window: Duration::from_secs(24 * 3600),
            outbox_grace: Duration::from_secs(3),
            rate_limits: Default::default(),
        }
    }
}

struct ActiveRun {
    state: RunState,
    run_id: String,
    event_seq: u64,
    /// Outcomes recorded in the ledger that this state has seen: what a batch expects, so a
    /// coordinator whose state is stale (another one moved the run on) is refused and rebuilds.
    outcomes: u64,
    /// The current attempt of `(node, iteration)` where it is past the first (retries), or
    /// the latest recorded one (a rebuilt run): a node dispatched again after a restart from
    /// an upstream node takes the next number.
    attempts: HashMap<(usize, u32), u32>,
    /// Inputs an operator set on `(node, iteration)` when replaying it (over the computed ones).
    overrides: HashMap<(usize, u32), Map>,
    /// The run's concurrency group, if its workflow has a limit: when it ends, a queued run
    /// of the group may start.
    group: Option<String>,
    /// A child run's parent attempt (a WorkflowNode's task id): told the outcome at the end.
    parent: Option<String>,
}

impl ActiveRun {
    /// A running node's inputs: computed by the planner, then the operator's overrides.
    fn inputs_of(&self, node: usize) -> Option<Map> {
        let (iteration, mut inputs) = self.state.running_inputs(node)?;
        if let Some(o) = self.overrides.get(&(node, iteration)) {
            for (k, v) in o {
                inputs.insert(k.clone(), v.clone());
            }
        }
        Some(inputs)
    }

    fn attempt_of(&self, node: usize, iteration: u32) -> u32 {
        self.attempts.get(&(node, iteration)).copied().unwrap_or(1)
    }

    /// Whether a result from `attempt` of `node`'s `iteration` would be applied now.
    fn accepts(&self, node: usize, iteration: u32, attempt: u32) -> Result<(), Rejected> {
        self.state.accepts(node, iteration)?;
        let current = self.attempt_of(node, iteration);
        if attempt == current {
            Ok(())
        } else {
            Err(Rejected::StaleAttempt {
                got: attempt,
                current,
            })
        }
    }
}

/// A retry waiting for its delay: `(due_ms, run_id, node, iteration, attempt)`.
type DueRetry = std::cmp::Reverse<(u64, String, usize, u32, u32)>;

/// The delay before `next_attempt` (2 or more) under `policy`, through `backon`'s exponential
/// backoff (jitter adds up to the delay again).
fn retry_delay(policy: &kora_model::RetryPolicy, next_attempt: u32) -> Duration {
    use backon::BackoffBuilder;
    let mut b = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.initial_delay_ms))
        .with_max_delay(Duration::from_millis(policy.max_delay_ms))
        .with_factor(policy.multiplier as f32)
        .with_max_times(usize::MAX);
    if policy.jitter {
        b = b.with_jitter();
    }
    let nth = usize::try_from(next_attempt.saturating_sub(2)).unwrap_or(0);
    b.build()
        .nth(nth)
        .unwrap_or(Duration::from_millis(policy.max_delay_ms))
}

/// Runs the coordinator until `shutdown` is cancelled.
pub async fn run(
    cfg: Config,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    subjects: Subjects,
    catalog: Arc<dyn Catalog + Send + Sync>,
    metrics: Arc<Metrics>,
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
    let outbox = tokio::spawn(publish_decisions(
        Arc::clone(&broker),
        Arc::clone(&store),
        outbox_rx,
    ));
    let mut c = Coordinator {
        cfg,
        broker,
        store,
        subjects,
        catalog,
        metrics,
        runs: HashMap::new(),
        outbox: outbox_tx,
        retries: std::collections::BinaryHeap::new(),
        deadlines: std::collections::BinaryHeap::new(),
    };
    let mut backoff = Duration::from_millis(50);
    // The first tick is immediate: after a crash, lost publishes are re-sent at start-up.
    let mut sweep = tokio::time::interval(c.cfg.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_retry = c.retries.peek().map(|std::cmp::Reverse((due, ..))| *due);
        let next_deadline = c.deadlines.peek().map(|std::cmp::Reverse((due, _))| *due);
        let next_timer = match (next_retry, next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer_at = next_timer.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            |due| tokio::time::Instant::now() + Duration::from_millis(due.saturating_sub(now_ms())),
        );
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(timer_at), if next_timer.is_some() => {
                if let Err(e) = c.send_due_retries().await {
                    warn!(error = %e, "cannot send due retries; the sweeper will");
                }
                if let Err(e) = c.end_overdue_runs(false).await {
                    warn!(error = %e, "cannot end runs past their deadline; the sweep will");
                }
                continue;
            }
            a = advisories.fetch(16, c.cfg.fetch_wait) => {
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
                if let Err(e) = c.sweep().await {
                    warn!(error = %e, "outbox sweep failed; it will run again");
                }
                // Deadlines and queued runs whose moment was missed (a crash, a conflict).
                if let Err(e) = c.end_overdue_runs(true).await {
                    warn!(error = %e, "cannot end runs past their deadline; the sweep will retry");
                }
                if let Err(e) = c.start_queued(None).await {
                    warn!(error = %e, "cannot start queued runs; the sweep will retry");
                }
                if let Err(e) = c.report_unreported_children().await {
                    warn!(error = %e, "cannot tell parents about ended child runs; the sweep will retry");
                }
                continue;
            }
            b = consumer.fetch(c.cfg.batch, c.cfg.fetch_wait) => b,
        };
        match batch {
            Ok(b) if b.is_empty() => continue,
            Ok(b) => match c.handle_batch(b).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    error!(error = %e, "ledger batch failed; it will be redelivered");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot fetch from the ledger stream; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let broker = Arc::clone(&c.broker);
    drop(c);
    let _ = outbox.await;
    broker.flush().await?;
    Ok(())
}

/// What one committed batch must publish: tasks and events, and which entries are tasks.
struct Published {
    publish: Vec<Outbound>,
    task_keys: Vec<(usize, AttemptKey)>,
}

/// The outbox publisher: publishes each committed batch's tasks and events (pipelined, in
/// commit order, so a run's events stay in sequence), then marks the tasks published in the
/// ledger. Ends when the coordinator drops its sender, after publishing what is queued.
async fn publish_decisions(
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    mut rx: tokio::sync::mpsc::Receiver<Published>,
) {
    while let Some(job) = rx.recv().await {
        let results = broker.publish_many(job.publish).await;
        for r in &results {
            if let Err(e) = r {
                // The ledger holds the decision; the outbox sweeper re-sends it.
                error!(error = %e, "publish after commit failed; the outbox sweeper will re-send it");
            }
        }
        let sent: Vec<AttemptKey> = job
            .task_keys
            .into_iter()
            .filter(|(i, _)| results.get(*i).is_some_and(Result::is_ok))
            .map(|(_, k)| k)
            .collect();
        if let Err(e) = store.mark_published(&sent, now_ms()).await {
            // Harmless: the sweeper re-sends them and the duplicates are ignored.
            warn!(error = %e, tasks = sent.len(), "cannot mark tasks published");
        }
    }
}

/// Why a ledger message was not taken into the batch.
enum Refusal {
    /// The message itself is unusable: it is dead-lettered with this reason.
    Poison(String),
    /// The ledger could not be read: the batch is handed back and retried.
    Unavailable(Error),
}

impl Refusal {
    fn store(e: kora_store::Error) -> Refusal {
        Refusal::Unavailable(Error::Store(e))
    }
}

struct Coordinator {
    cfg: Config,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    subjects: Subjects,
    catalog: Arc<dyn Catalog + Send + Sync>,
    metrics: Arc<Metrics>,
    runs: HashMap<String, ActiveRun>,
    /// Committed batches on their way to the broker.
    outbox: tokio::sync::mpsc::Sender<Published>,
    /// Deadlines of runs this coordinator admitted, earliest first. Deadlines lost with this
    /// process are found in the ledger by any coordinator's sweep.
    deadlines: std::collections::BinaryHeap<std::cmp::Reverse<(u64, String)>>,
    /// Retries scheduled by this coordinator, earliest first. A retry lost with this process
    /// (a crash) is re-sent by any coordinator's outbox sweeper once it is due.
    retries: std::collections::BinaryHeap<DueRetry>,
}

/// What one batch produces: ledger writes, then messages to publish after the commit.
#[derive(Default)]
struct Pending {
    batch: Batch,
    publish: Vec<Outbound>,
    touched: Vec<String>,
    finished: Vec<String>,
    /// Runs this batch already carries an expectation for.
    expected: HashSet<String>,
    /// Which entries of `publish` are tasks, and their attempts (marked published once sent).
    task_keys: Vec<(usize, AttemptKey)>,
    /// Runs cancelled by this batch: workers are told to stop their tasks after the commit.
    cancelled: Vec<String>,
    /// Concurrency groups with a run ended by this batch: their queued runs may start.
    freed: Vec<String>,
    /// Runs of each concurrency group this batch `(starts, queues)`.
    groups: HashMap<String, (u64, u64)>,
    /// Attempts for rate-limited queues: given their start times before the commit.
    paced: Vec<Paced>,
    /// Idempotency keys taken by runs this batch creates, and by which.
    keys: HashMap<String, String>,
    /// Child runs (of WorkflowNodes) this batch ended: their parents are told after the commit.
    children: Vec<String>,
}

/// An attempt whose queue has a rate limit.
struct Paced {
    queue: String,
    /// Its task message in `Pending::publish`; `None` for a retry (sent when due).
    publish: Option<usize>,
    /// Its row in `Pending::batch.new_attempts` (dated when it may start).
    row: usize,
    /// Not before this (a retry's delay).
    not_before: u64,
    retry: (String, usize, u32, u32),
}

impl Pending {
    /// Registers, once per batch, what this batch assumes about the run.
    fn expect(&mut self, run: &ActiveRun) {
        if self.expected.insert(run.run_id.clone()) {
            self.batch.expect.push(Expect::Outcomes {
                run_id: run.run_id.clone(),
                count: run.outcomes,
            });
        }
    }
}

impl Coordinator {
    async fn handle_batch(&mut self, deliveries: Vec<Delivery>) -> Result<(), Error> {
        let mut p = Pending::default();
        let mut keep = Vec::with_capacity(deliveries.len());
        let admit_subject = self.subjects.ledger_admit();
        let resume_subject = self.subjects.ledger_resume();
        let cancel_subject = self.subjects.ledger_cancel();
        let mut deliveries = deliveries.into_iter();
        while let Some(d) = deliveries.next() {
            let handled = if d.subject == admit_subject {
                match wire::decode::<Admission>(&d.payload) {
                    Ok(a) => self.on_admission(a, &mut p).await,
                    Err(e) => Err(Refusal::Poison(e.to_string())),
                }
            } else if d.subject == cancel_subject {
                match wire::decode::<wire::Cancel>(&d.payload) {
                    Ok(c) => self.on_cancel(c, &mut p).await,
                    Err(e) => Err(Refusal::Poison(e.to_string())),
                }
            } else if d.subject == resume_subject {
                match wire::decode::<wire::Resume>(&d.payload) {
                    Ok(r) => self.on_resume(r).await,
                    Err(e) => Err(Refusal::Poison(e.to_string())),
                }
            } else {
                match wire::decode::<NodeResult>(&d.payload) {
                    Ok(r) => self.on_result(r, &mut p).await,
                    Err(e) => Err(Refusal::Poison(e.to_string())),
                }
            };
            match handled {
                Ok(()) => keep.push(d),
                Err(Refusal::Poison(reason)) => {
                    self.metrics.poison_messages.inc();
                    warn!(subject = %d.subject, %reason, "dead-lettering a ledger message");
                    dead_letter(self.broker.as_ref(), &self.subjects, "ledger", &d, &reason)
                        .await?;
                }
                Err(Refusal::Unavailable(e)) => {
                    // The ledger could not be read (PostgreSQL down or restarting): nothing is
                    // wrong with the message. Forget what this batch planned and hand every
                    // message back to be redelivered once the loop has backed off.
                    for id in &p.touched {
                        self.runs.remove(id);
                    }
                    for d in keep
                        .iter()
                        .chain(std::iter::once(&d))
                        .chain(deliveries.as_slice())
                    {
                        let _ = d.nak(Some(Duration::from_millis(500))).await;
                    }
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.pace(&mut p).await {
            // The rate table could not be read: hand the batch back, as for a ledger outage.
            for id in &p.touched {
                self.runs.remove(id);
            }
            for d in &keep {
                let _ = d.nak(Some(Duration::from_millis(500))).await;
            }
            return Err(e);
        }
        let Pending {
            batch,
            publish,
            touched,
            finished,
            expected: _,
            task_keys,
            cancelled,
            freed,
            groups: _,
            paced: _,
            keys: _,
            children,
        } = p;
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            let committed = self.store.commit(batch).await;
            self.metrics.ledger_commits.inc();
            self.metrics
                .ledger_commit_micros
                .add(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            match committed {
                Ok(report) => {
                    self.metrics.ledger_messages.add(keep.len() as u64);
                    self.metrics
                        .results_fenced
                        .add(report.outcomes_ignored as u64);
                }
                Err(e) => {
                    // The planner moved ahead of the ledger: forget those runs so they are
                    // rebuilt from the ledger when the batch is redelivered.
                    for id in &touched {
                        self.runs.remove(id);
                    }
                    if let kora_store::Error::Conflict { run_id, detail } = &e {
                        // Another coordinator moved a run on first: not a failure.
                        self.metrics.ledger_conflicts.inc();
                        debug!(%run_id, %detail, "ledger conflict; the batch will be retried on fresh state");
                        for d in &keep {
                            let _ = d.nak(Some(Duration::from_millis(20))).await;
                        }
                        return Ok(());
                    }
                    for d in &keep {
                        let _ = d.nak(Some(Duration::from_millis(500))).await;
                    }
                    return Err(e.into());
                }
            }
        }
        self.metrics.tasks_dispatched.add(task_keys.len() as u64);
        for run_id in &cancelled {
            // At most once and not stored: a worker that misses it finishes the task, and its
            // result is ignored.
            if let Err(e) = self
                .broker
                .notify(
                    &self.subjects.cancel_notice(run_id),
                    run_id.as_bytes().to_vec(),
                )
                .await
            {
                warn!(%run_id, error = %e, "cannot tell workers to stop a cancelled run's tasks");
            }
        }
        failpoint("coordinator-after-commit", !task_keys.is_empty());
        if !publish.is_empty() {
            // Published by the outbox task, in commit order, while this loop records the next
            // batch. The ledger already holds the decisions: a publish lost to a crash is
            // re-sent by the sweeper.
            let job = Published { publish, task_keys };
            if self.outbox.send(job).await.is_err() {
                warn!("the outbox publisher has stopped; the sweeper will re-send these tasks");
            }
        }
        for d in keep {
            d.ack().await?;
        }
        for id in finished {
            self.runs.remove(&id);
        }
        if !freed.is_empty()
            && let Err(e) = self.start_queued(Some(freed)).await
        {
            warn!(error = %e, "cannot start queued runs now; the sweep will");
        }
        if !children.is_empty()
            && let Err(e) = self.report_children(children).await
        {
            warn!(error = %e, "cannot tell parents their child runs ended; the sweep will");
        }
        if self.runs.len() > self.cfg.cache_runs {
            // Evict arbitrary entries; they are rebuilt from the ledger on their next result.
            let extra: Vec<String> = self
                .runs
                .keys()
                .take(self.runs.len() - self.cfg.cache_runs)
                .cloned()
                .collect();
            for id in extra {
                self.runs.remove(&id);
            }
        }
        Ok(())
    }

    async fn on_admission(&mut self, a: Admission, p: &mut Pending) -> Result<(), Refusal> {
        let now = now_ms();
        match a {
            Admission::Rejected {
                run_id, problems, ..
            } => {
                if self
                    .store
                    .run(&run_id)
                    .await
                    .map_err(Refusal::store)?
                    .is_some()
                {
                    return Ok(());
                }
                self.metrics.runs_rejected.inc();
                if p.expected.insert(run_id.clone()) {
                    p.batch.expect.push(Expect::Absent {
                        run_id: run_id.clone(),
                    });
                }
                p.batch.new_runs.push(NewRun {
                    run_id: run_id.clone(),
                    idempotency_key: None,
                    spec: None,
                    params: Map::new(),
                    status: RunStatus::Rejected,
                    error: Some(problems.join("\n")),
                    at_ms: now,
                    concurrency: None,
                    deadline_ms: None,
                    parent: None,
                });
                let detail = serde_json::json!({ "problems": problems });
                p.batch.events.push(event(
                    &run_id,
                    1,
                    EventKind::RunRejected,
                    None,
                    0,
                    now,
                    Some(detail),
                ));
                p.publish
                    .push(event_msg(&self.subjects, p.batch.events.last()));
                Ok(())
            }
            Admission::Admitted { request } => {
                let run_id = request.run_id.clone();
                if self.runs.contains_key(&run_id)
                    || self
                        .store
                        .run(&run_id)
                        .await
                        .map_err(Refusal::store)?
                        .is_some()
                {
                    debug!(%run_id, "run already admitted");
                    return Ok(());
                }
                if let Some(key) = &request.idempotency_key {
                    // Only a keyed submission can have become an alias.
                    if self
                        .store
                        .alias_of(&run_id)
                        .await
                        .map_err(Refusal::store)?
                        .is_some()
                    {
                        debug!(%run_id, "submission already deduplicated");
                        return Ok(());
                    }
                    let holder = match p.keys.get(key) {
                        Some(id) => Some((id.clone(), now)),
                        None => self
                            .store
                            .run_by_key(key)
                            .await
                            .map_err(Refusal::store)?
                            .map(|r| (r.run_id, r.created_ms)),
                    };
                    let window =
                        u64::try_from(self.cfg.idempotency_window.as_millis()).unwrap_or(u64::MAX);
                    match holder {
                        Some((existing, created)) if now.saturating_sub(created) < window => {
                            // The same request again: this submission is that run.
                            info!(%run_id, %existing, key, "submission deduplicated by its idempotency key");
                            self.metrics.runs_deduplicated.inc();
                            p.batch.aliases.push(kora_store::Alias {
                                alias: run_id.clone(),
                                run_id: existing.clone(),
                                at_ms: now,
                            });
                            let e = event(
                                &run_id,
                                1,
                                EventKind::RunDeduplicated,
                                None,
                                0,
                                now,
                                Some(
                                    serde_json::json!({ "run_id": existing, "idempotency_key": key }),
                                ),
                            );
                            p.publish.push(event_msg(&self.subjects, Some(&e)));
                            return Ok(());
                        }
                        Some((old, _)) => {
                            info!(%run_id, %old, key, "idempotency key past its window: released to a new run");
                            p.batch.release_keys.push(key.clone());
                        }
                        None => {}
                    }
                    p.keys.insert(key.clone(), run_id.clone());
                }
                let checked = kora_model::compile(
                    &request.workflow,
                    self.catalog.as_ref(),
                    Some(&request.params),
                )
                // Compiling with the parameters checked the concurrency key is present.
                .map(|(c, w)| {
                    let group = request
                        .workflow
                        .concurrency_group(&request.params)
                        .ok()
                        .flatten();
                    (c, w, group)
                });
                let (compiled, group) = match checked {
                    Ok((c, _, g)) => (c, g),
                    Err(problems) => {
                        let problems: Vec<String> =
                            problems.iter().map(ToString::to_string).collect();
                        return Box::pin(self.on_admission(
                            Admission::Rejected {
                                run_id,
                                problems,
                                submitted_at_ms: now,
                            },
                            p,
                        ))
                        .await;
                    }
                };
                // Over its concurrency limit (or behind runs already waiting), the run is
                // recorded queued and starts when a slot frees. The ledger refuses the commit
                // if another coordinator took the slot meanwhile; the batch is then retried.
                let queued = match &group {
                    Some((g, limit)) => {
                        let (running, waiting) = self
                            .store
                            .concurrency_usage(g)
                            .await
                            .map_err(Refusal::store)?;
                        let here = p.groups.entry(g.clone()).or_default();
                        let queued = waiting + here.1 > 0 || running + here.0 >= u64::from(*limit);
                        if queued {
                            here.1 += 1;
                        } else {
                            here.0 += 1;
                        }
                        queued
                    }
                    None => false,
                };
                let submitted = if request.submitted_at_ms > 0 {
                    request.submitted_at_ms.min(now)
                } else {
                    now
                };
                let deadline_ms = request
                    .workflow
                    .deadline_secs
                    .map(|d| submitted + (d * 1000.0) as u64);
                if let Some(d) = deadline_ms {
                    self.deadlines.push(std::cmp::Reverse((d, run_id.clone())));
                }
                if queued {
                    self.metrics.runs_queued.inc();
                    info!(%run_id, workflow = %request.workflow.name, group = group.as_ref().map(|g| g.0.as_str()), "run queued under its concurrency limit");
                } else {
                    self.metrics.runs_started.inc();
                    info!(%run_id, workflow = %request.workflow.name, "run started");
                }
                let state = RunState::new(compiled, &request.params).keep_leaf_outputs(false);
                if p.expected.insert(run_id.clone()) {
                    p.batch.expect.push(Expect::Absent {
                        run_id: run_id.clone(),
                    });
                }
                // The compiled workflow holds its own copy; the ledger takes the request's.
                let request = *request;
                p.batch.new_runs.push(NewRun {
                    run_id: run_id.clone(),
                    idempotency_key: request.idempotency_key,
                    spec: Some(request.workflow),
                    params: request.params,
                    status: if queued {
                        RunStatus::Queued
                    } else {
                        RunStatus::Running
                    },
                    error: None,
                    at_ms: now,
                    concurrency: group.clone(),
                    deadline_ms,
                    parent: request.parent.clone(),
                });
                let mut run = ActiveRun {
                    state,
                    run_id: run_id.clone(),
                    event_seq: 0,
                    outcomes: 0,
                    attempts: HashMap::new(),
                    overrides: HashMap::new(),
                    group: group.as_ref().map(|g| g.0.clone()),
                    parent: request.parent,
                };
                run.event_seq += 1;
                p.batch.events.push(event(
                    &run_id,
                    run.event_seq,
                    EventKind::RunAccepted,
                    None,
                    0,
                    now,
                    None,
                ));
                p.publish
                    .push(event_msg(&self.subjects, p.batch.events.last()));
                if let (true, Some((g, limit))) = (queued, &group) {
                    run.event_seq += 1;
                    p.batch.events.push(event(
                        &run_id,
                        run.event_seq,
                        EventKind::RunQueued,
                        None,
                        0,
                        now,
                        Some(serde_json::json!({ "group": g, "limit": limit })),
                    ));
                    p.publish
                        .push(event_msg(&self.subjects, p.batch.events.last()));
                    return Ok(());
                }
                let actions = run.state.start(now);
                self.apply(&mut run, actions, now, p);
                p.touched.push(run_id.clone());
                self.runs.insert(run_id, run);
                Ok(())
            }
        }
    }

    async fn on_result(&mut self, mut r: NodeResult, p: &mut Pending) -> Result<(), Refusal> {
        let now = now_ms();
        let from_cache = self.runs.contains_key(&r.run_id);
        if !from_cache {
            match self
                .rebuild(&r.run_id)
                .await
                .map_err(Refusal::Unavailable)?
            {
                Some(run) => {
                    self.runs.insert(r.run_id.clone(), run);
                }
                None => {
                    self.metrics.results_fenced.inc();
                    debug!(run_id = %r.run_id, node_id = %r.node_id, "result for an unknown or finished run ignored");
                    return Ok(());
                }
            }
        }
        let Some(mut run) = self.runs.remove(&r.run_id) else {
            return Ok(());
        };
        let Some(&node) = run.state.workflow().index.get(&r.node_id) else {
            self.runs.insert(r.run_id.clone(), run);
            return Err(Refusal::Poison(format!(
                "result names node '{}' which run {} does not have",
                r.node_id, r.run_id
            )));
        };
        let retryable = matches!(
            r.outcome,
            TaskOutcome::Failure {
                retryable: true,
                ..
            }
        );
        let reported =
            std::mem::replace(&mut r.outcome, TaskOutcome::Success { output: Map::new() });
        // Audit entries go to the ledger with the outcome they came with, or not at all.
        let audit: Vec<kora_store::AuditEntry> = std::mem::take(&mut r.audit)
            .into_iter()
            .enumerate()
            .map(|(idx, entry)| kora_store::AuditEntry {
                run_id: r.run_id.clone(),
                node_id: r.node_id.clone(),
                iteration: r.iteration,
                attempt: r.attempt,
                idx: u32::try_from(idx).unwrap_or(u32::MAX),
                at_ms: now,
                entry,
            })
            .collect();
        let (outcome, status, output, error, error_type) = match reported {
            TaskOutcome::Success { output } => {
                let v = Value::Object(output.clone());
                (
                    Outcome::Success(output),
                    AttemptStatus::Succeeded,
                    Some(v),
                    None,
                    None,
                )
            }
            TaskOutcome::Failure {
                error, error_type, ..
            } => (
                Outcome::Failure {
                    error: error.clone(),
                    error_type: error_type.clone(),
                },
                AttemptStatus::Failed,
                None,
                Some(error),
                Some(error_type),
            ),
        };
        let mut verdict = run.accepts(node, r.iteration, r.attempt);
        if verdict.is_err() && from_cache && !p.expected.contains(&r.run_id) {
            // A cached state may be stale (another coordinator moved the run on), and a stale
            // state would wrongly fence a real result. Decide on the ledger's state instead: a
            // result's task was published only after its dispatch was committed, so a fresh
            // rebuild always knows the attempt.
            match self
                .rebuild(&r.run_id)
                .await
                .map_err(Refusal::Unavailable)?
            {
                Some(fresh) => {
                    run = fresh;
                    verdict = run.accepts(node, r.iteration, r.attempt);
                }
                None => {
                    self.metrics.results_fenced.inc();
                    return Ok(());
                }
            }
        }
        let wf = Arc::clone(run.state.workflow());
        let policy = wf.spec.retry_policy(&wf.spec.nodes[node]);
        if verdict.is_ok()
            && status == AttemptStatus::Failed
            && policy.retries(r.attempt, retryable)
        {
            p.batch.audit.extend(audit);
            self.schedule_retry(&mut run, node, &r, error, error_type, &policy, now, p);
            self.runs.insert(r.run_id, run);
            return Ok(());
        }
        // A failure that is not retried is dead-lettered with the inputs it ran with.
        let dead_letter = (verdict.is_ok() && status == AttemptStatus::Failed).then(|| {
            let reason = match error_type.as_deref() {
                Some("WorkerLost") => "worker_lost",
                Some("TimeoutError") => "timeout",
                _ if retryable => "retries_exhausted",
                _ => "permanent_error",
            };
            (reason.to_string(), run.inputs_of(node).unwrap_or_default())
        });
        if dead_letter.is_some() {
            self.metrics.dead_letters.inc();
        }
        let applied = verdict.and_then(|()| run.state.on_result(node, r.iteration, outcome, now));
        match applied {
            Err(rejected) => {
                self.metrics.results_fenced.inc();
                debug!(run_id = %r.run_id, node_id = %r.node_id, attempt = r.attempt, %rejected, "result fenced");
            }
            Ok(actions) => {
                self.metrics.results_recorded.inc();
                p.batch.audit.extend(audit);
                p.expect(&run);
                run.outcomes += 1;
                let failed = status == AttemptStatus::Failed;
                p.batch.outcomes.push(AttemptUpdate {
                    run_id: r.run_id.clone(),
                    node_id: r.node_id.clone(),
                    iteration: r.iteration,
                    attempt: r.attempt,
                    status,
                    output,
                    error: error.clone(),
                    error_type,
                    worker_id: Some(r.worker_id),
                    at_ms: now,
                    dead_letter,
                });
                run.event_seq += 1;
                let kind = if failed {
                    EventKind::NodeFailed
                } else {
                    EventKind::NodeSucceeded
                };
                let detail = error.map(|e| serde_json::json!({ "error": e }));
                p.batch.events.push(event(
                    &r.run_id,
                    run.event_seq,
                    kind,
                    Some(&r.node_id),
                    r.attempt,
                    now,
                    detail,
                ));
                if let Some(e) = p.batch.events.last_mut() {
                    e.iteration = r.iteration;
                }
                p.publish
                    .push(event_msg(&self.subjects, p.batch.events.last()));
                self.apply(&mut run, actions, now, p);
                p.touched.push(r.run_id.clone());
            }
        }
        self.runs.insert(r.run_id, run);
        Ok(())
    }

    /// Tasks the server gave up on after their max deliveries: each one's workers crashed or
    /// were killed every time. The attempt fails (`WorkerLost`, not retried: it already ran
    /// that many times) through the normal result path, so it is dead-lettered and its run
    /// follows Kailash's rules; the task is removed from the work queue.
    async fn on_lost_tasks(&mut self, advisories: Vec<Delivery>) -> Result<(), Error> {
        let tasks = self.subjects.stream_tasks();
        for d in advisories {
            let body: serde_json::Value =
                serde_json::from_slice(&d.payload).unwrap_or(serde_json::Value::Null);
            let (Some(seq), deliveries) =
                (body["stream_seq"].as_u64(), body["deliveries"].as_u64())
            else {
                warn!(body = %String::from_utf8_lossy(&d.payload), "unreadable max-deliveries advisory dropped");
                d.ack().await?;
                continue;
            };
            match self.broker.get_message(&tasks, seq).await {
                Ok(Some(m)) => {
                    if let Ok(task) = wire::decode::<NodeTask>(&m.payload) {
                        let now = now_ms();
                        let result = NodeResult {
                            v: WIRE_VERSION,
                            task_id: task.task_id.clone(),
                            run_id: task.run_id.clone(),
                            node_id: task.node_id.clone(),
                            iteration: task.iteration,
                            attempt: task.attempt,
                            outcome: TaskOutcome::Failure {
                                error: format!(
                                    "worker lost: the task was delivered {} times and its worker crashed or was killed each time",
                                    deliveries.unwrap_or(0)
                                ),
                                error_type: "WorkerLost".into(),
                                retryable: false,
                            },
                            worker_id: "coordinator".into(),
                            started_at_ms: now,
                            finished_at_ms: now,
                            audit: Vec::new(),
                        };
                        warn!(run_id = %task.run_id, node_id = %task.node_id, attempt = task.attempt, "task reached its max deliveries: its workers keep dying");
                        let payload = wire::encode(&result)
                            .map_err(|e| kora_broker::Error::Other(e.to_string()))?;
                        self.broker
                            .publish(
                                Outbound::new(self.subjects.ledger_result(), payload)
                                    .msg_id(format!("lost:{}", task.task_id)),
                            )
                            .await?;
                    }
                    // Out of the work queue, so it does not sit there for ever.
                    let _ = self.broker.delete_message(&tasks, seq).await;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = d.nak(Some(Duration::from_secs(1))).await;
                    return Err(e.into());
                }
            }
            d.ack().await?;
        }
        Ok(())
    }

    /// An operator cancels a run: record it cancelled (with who), announce it, and have workers
    /// stop its tasks once committed. Its later results find the run finished and are ignored.
    async fn on_cancel(&mut self, c: wire::Cancel, p: &mut Pending) -> Result<(), Refusal> {
        let now = now_ms();
        if !self.runs.contains_key(&c.run_id) {
            match self
                .rebuild(&c.run_id)
                .await
                .map_err(Refusal::Unavailable)?
            {
                Some(run) => {
                    self.runs.insert(c.run_id.clone(), run);
                }
                None => {
                    debug!(run_id = %c.run_id, "cancel of a run that is not running ignored");
                    return Ok(());
                }
            }
        }
        let Some(mut run) = self.runs.remove(&c.run_id) else {
            return Ok(());
        };
        p.expect(&run);
        // Past its deadline a run fails; an operator's cancel cancels it.
        let (status, kind, error, detail) = match c.deadline_ms {
            Some(d) => {
                let error = format!(
                    "DeadlineExceeded: the run's deadline (deadline_secs) passed at {d} ms since the epoch; its unfinished tasks were stopped"
                );
                let detail =
                    serde_json::json!({ "error": error, "error_type": "DeadlineExceeded" });
                self.metrics.runs_failed.inc();
                self.metrics.runs_past_deadline.inc();
                warn!(run_id = %c.run_id, deadline_ms = d, "run failed: past its deadline");
                (RunStatus::Failed, EventKind::RunFailed, error, detail)
            }
            None => {
                info!(run_id = %c.run_id, by = %c.by, "run cancelled");
                (
                    RunStatus::Cancelled,
                    EventKind::RunCancelled,
                    format!("cancelled by {}", c.by),
                    serde_json::json!({ "by": c.by }),
                )
            }
        };
        p.batch.run_updates.push(RunUpdate {
            run_id: c.run_id.clone(),
            status,
            error: Some(error),
            error_node: None,
            at_ms: now,
        });
        run.event_seq += 1;
        p.batch.events.push(event(
            &c.run_id,
            run.event_seq,
            kind,
            None,
            0,
            now,
            Some(detail),
        ));
        p.publish
            .push(event_msg(&self.subjects, p.batch.events.last()));
        if let Some(g) = &run.group {
            p.freed.push(g.clone());
        }
        if run.parent.is_some() {
            p.children.push(c.run_id.clone());
        }
        self.cancel_children(&run, &c.by, p);
        p.touched.push(c.run_id.clone());
        p.finished.push(c.run_id.clone());
        p.cancelled.push(c.run_id.clone());
        self.runs.insert(c.run_id, run);
        Ok(())
    }

    /// Child runs of the run's WorkflowNodes still running end with it: a stored cancel
    /// request each, sent after the commit (once: its message id).
    fn cancel_children(&self, run: &ActiveRun, by: &str, p: &mut Pending) {
        let wf = Arc::clone(run.state.workflow());
        for (node, spec) in wf.spec.nodes.iter().enumerate() {
            if spec.node_type != WORKFLOW_NODE
                || run.state.status(node) != kora_model::plan::NodeStatus::Running
            {
                continue;
            }
            let iteration = run.state.node_iteration(node);
            let task_id = NodeTask::make_id(
                &run.run_id,
                &spec.id,
                iteration,
                run.attempt_of(node, iteration),
            );
            let child = uuid::Uuid::new_v5(&CHILD_NAMESPACE, task_id.as_bytes()).to_string();
            let msg = wire::Cancel {
                v: WIRE_VERSION,
                run_id: child.clone(),
                by: format!("its parent run {} ({by})", run.run_id),
                deadline_ms: None,
            };
            if let Ok(payload) = wire::encode(&msg) {
                p.publish.push(
                    Outbound::new(self.subjects.ledger_cancel(), payload)
                        .msg_id(format!("cancel:{child}")),
                );
            }
        }
    }

    /// A replayed run was reopened in the ledger: forget any cached state, rebuild it, and send
    /// the new attempts' tasks (through the outbox publisher; they are marked published there).
    async fn on_resume(&mut self, r: wire::Resume) -> Result<(), Refusal> {
        self.runs.remove(&r.run_id);
        let Some(run) = self
            .rebuild(&r.run_id)
            .await
            .map_err(Refusal::Unavailable)?
        else {
            debug!(run_id = %r.run_id, "resume of a run that is not running ignored");
            return Ok(());
        };
        let wf = Arc::clone(run.state.workflow());
        let mut job = Published {
            publish: Vec::new(),
            task_keys: Vec::new(),
        };
        for a in &r.attempts {
            let Some(&node) = wf.index.get(&a.node_id) else {
                continue;
            };
            if run.accepts(node, a.iteration, a.attempt).is_err() {
                continue;
            }
            let Some(inputs) = run.inputs_of(node) else {
                continue;
            };
            match self.task_message(
                &r.run_id,
                &wf.spec.nodes[node],
                a.iteration,
                a.attempt,
                inputs,
                wf.spec.priority,
            ) {
                Ok(msg) => {
                    job.task_keys.push((
                        job.publish.len(),
                        AttemptKey {
                            run_id: r.run_id.clone(),
                            node_id: a.node_id.clone(),
                            iteration: a.iteration,
                            attempt: a.attempt,
                        },
                    ));
                    job.publish.push(msg);
                }
                Err((kind, e)) => {
                    warn!(run_id = %r.run_id, node_id = %a.node_id, kind, error = %e, "cannot send a resumed task");
                }
            }
        }
        info!(run_id = %r.run_id, tasks = job.publish.len(), "run resumed by a replay");
        self.metrics.tasks_dispatched.add(job.publish.len() as u64);
        self.runs.insert(r.run_id.clone(), run);
        if !job.publish.is_empty() && self.outbox.send(job).await.is_err() {
            warn!("the outbox publisher has stopped; the sweeper will send the resumed tasks");
        }
        Ok(())
    }

    /// Starts queued runs that have a free slot under their concurrency limit (of `groups`, or
    /// of every group), oldest first: each in its own commit, which the ledger refuses if the
    /// run was started by another coordinator or its group filled up meanwhile.
    async fn start_queued(&mut self, groups: Option<Vec<String>>) -> Result<usize, Error> {
        let ids = self.store.startable_runs(groups.as_deref(), 64).await?;
        let mut started = 0;
        for run_id in ids {
            let Some(rec) = self.store.run(&run_id).await? else {
                continue;
            };
            if rec.status != RunStatus::Queued {
                continue;
            }
            let Some(spec) = rec.spec else { continue };
            let Ok((compiled, _)) =
                kora_model::compile(&spec, self.catalog.as_ref(), Some(&rec.params))
            else {
                continue;
            };
            let group = spec
                .concurrency_group(&rec.params)
                .ok()
                .flatten()
                .map(|(g, _)| g);
            let event_seq = rec.event_seq;
            let mut run = ActiveRun {
                state: RunState::new(compiled, &rec.params).keep_leaf_outputs(false),
                run_id: run_id.clone(),
                event_seq,
                outcomes: 0,
                attempts: HashMap::new(),
                overrides: HashMap::new(),
                group,
                parent: rec.parent.clone(),
            };
            let now = now_ms();
            let mut p = Pending::default();
            p.expected.insert(run_id.clone());
            p.batch.expect.push(Expect::Queued {
                run_id: run_id.clone(),
            });
            p.batch.run_updates.push(RunUpdate {
                run_id: run_id.clone(),
                status: RunStatus::Running,
                error: None,
                error_node: None,
                at_ms: now,
            });
            run.event_seq += 1;
            p.batch.events.push(event(
                &run_id,
                run.event_seq,
                EventKind::RunStarted,
                None,
                0,
                now,
                Some(serde_json::json!({ "queued_ms": now.saturating_sub(rec.created_ms) })),
            ));
            p.publish
                .push(event_msg(&self.subjects, p.batch.events.last()));
            let actions = run.state.start(now);
            self.apply(&mut run, actions, now, &mut p);
            self.pace(&mut p).await?;
            match self.store.commit(p.batch).await {
                Ok(_) => {}
                Err(kora_store::Error::Conflict { detail, .. }) => {
                    self.metrics.ledger_conflicts.inc();
                    debug!(%run_id, %detail, "queued run not started: taken or no slot");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            started += 1;
            self.metrics.runs_started.inc();
            self.metrics.tasks_dispatched.add(p.task_keys.len() as u64);
            info!(%run_id, waited_ms = now.saturating_sub(rec.created_ms), "queued run started");
            if !p.finished.contains(&run_id) {
                self.runs.insert(run_id, run);
            }
            let job = Published {
                publish: p.publish,
                task_keys: p.task_keys,
            };
            if self.outbox.send(job).await.is_err() {
                warn!("the outbox publisher has stopped; the sweeper will send these tasks");
            }
        }
        Ok(started)
    }

    /// Ends runs whose deadline passed: due ones this coordinator admitted, and (`sweep`)
    /// every overdue run in the ledger. Each gets a deadline message on the ledger's cancel
    /// subject, handled in a batch like an operator's cancel (one per run: its message id).
    async fn end_overdue_runs(&mut self, sweep: bool) -> Result<(), Error> {
        let now = now_ms();
        let mut due = Vec::new();
        while let Some(std::cmp::Reverse((d, _))) = self.deadlines.peek() {
            if *d > now {
                break;
            }
            if let Some(std::cmp::Reverse((d, id))) = self.deadlines.pop() {
                due.push((id, d));
            }
        }
        if sweep {
            due.extend(self.store.overdue_runs(now, 256).await?);
        }
        for (run_id, d) in due {
            let msg = wire::Cancel {
                v: WIRE_VERSION,
                run_id: run_id.clone(),
                by: "deadline".into(),
                deadline_ms: Some(d),
            };
            let payload =
                wire::encode(&msg).map_err(|e| kora_broker::Error::Other(e.to_string()))?;
            self.broker
                .publish(
                    Outbound::new(self.subjects.ledger_cancel(), payload)
                        .msg_id(format!("deadline:{run_id}")),
                )
                .await?;
        }
        Ok(())
    }

    /// Gives the attempts of rate-limited queues their start times: reserves them on each
    /// queue's rate (in the ledger, so every coordinator shares it), dates their rows when
    /// they may start, and holds back the tasks not due yet. Held tasks are sent from the
    /// timer heap when due, or by the outbox sweeper after a crash (their rows are dated).
    async fn pace(&mut self, p: &mut Pending) -> Result<(), Error> {
        if p.paced.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        // One reservation per queue and earliest start: a batch's first dispatches share one.
        let mut groups: std::collections::BTreeMap<(String, u64), Vec<Paced>> = Default::default();
        for item in std::mem::take(&mut p.paced) {
            groups
                .entry((item.queue.clone(), item.not_before))
                .or_default()
                .push(item);
        }
        let mut held: HashSet<usize> = HashSet::default();
        for ((queue, not_before), items) in groups {
            let Some(limit) = self.cfg.rate_limits.get(&queue).copied() else {
                continue;
            };
            let interval = limit.interval_ms();
            let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
            let begin = self
                .store
                .reserve_rate(&queue, interval, n, not_before as f64)
                .await?;
            let tolerance = f64::from(limit.burst.max(1) - 1) * interval;
            for (i, item) in items.into_iter().enumerate() {
                let at = (begin + i as f64 * interval - tolerance)
                    .max(not_before as f64)
                    .ceil() as u64;
                if let Some(row) = p.batch.new_attempts.get_mut(item.row) {
                    row.at_ms = at;
                }
                let (run_id, node, iteration, attempt) = item.retry;
                match item.publish {
                    Some(idx) if at > now => {
                        held.insert(idx);
                        self.metrics.tasks_paced.inc();
                        self.retries
                            .push(std::cmp::Reverse((at, run_id, node, iteration, attempt)));
                    }
                    Some(_) => {}
                    None => {
                        if at > not_before {
                            self.metrics.tasks_paced.inc();
                        }
                        self.retries
                            .push(std::cmp::Reverse((at, run_id, node, iteration, attempt)));
                    }
                }
            }
        }
        if !held.is_empty() {
            let mut moved = vec![None; p.publish.len()];
            for (i, m) in std::mem::take(&mut p.publish).into_iter().enumerate() {
                if !held.contains(&i) {
                    moved[i] = Some(p.publish.len());
                    p.publish.push(m);
                }
            }
            p.task_keys = std::mem::take(&mut p.task_keys)
                .into_iter()
                .filter_map(|(i, k)| moved.get(i).copied().flatten().map(|j| (j, k)))
                .collect();
        }
        Ok(())
    }

    /// Records a failed attempt that will be retried, and the next attempt, due after the
    /// policy's delay. The planner is not told: the node stays running.
    #[allow(clippy::too_many_arguments)]
    fn schedule_retry(
        &mut self,
        run: &mut ActiveRun,
        node: usize,
        r: &NodeResult,
        error: Option<String>,
        error_type: Option<String>,
        policy: &kora_model::RetryPolicy,
        now: u64,
        p: &mut Pending,
    ) {
        let next = r.attempt + 1;
        let delay = retry_delay(policy, next);
        let due = now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.metrics.results_recorded.inc();
        self.metrics.tasks_retried.inc();
        p.expect(run);
        run.outcomes += 1;
        p.batch.outcomes.push(AttemptUpdate {
            run_id: r.run_id.clone(),
            node_id: r.node_id.clone(),
            iteration: r.iteration,
            attempt: r.attempt,
            status: AttemptStatus::Failed,
            output: None,
            error: error.clone(),
            error_type: error_type.clone(),
            worker_id: Some(r.worker_id.clone()),
            at_ms: now,
            dead_letter: None,
        });
        let wf = Arc::clone(run.state.workflow());
        // The next attempt's row is written now, dated when it is due: the outbox sweeper
        // re-sends it if this coordinator dies before sending it.
        p.batch.new_attempts.push(NewAttempt {
            run_id: r.run_id.clone(),
            node_id: r.node_id.clone(),
            iteration: r.iteration,
            attempt: next,
            node_type: wf.spec.nodes[node].node_type.clone(),
            status: AttemptStatus::Dispatched,
            at_ms: due,
        });
        run.attempts.insert((node, r.iteration), next);
        run.event_seq += 1;
        let detail = serde_json::json!({
            "error": error,
            "error_type": error_type,
            "next_attempt": next,
            "delay_ms": due - now,
        });
        let mut e = event(
            &r.run_id,
            run.event_seq,
            EventKind::NodeRetrying,
            Some(&r.node_id),
            r.attempt,
            now,
            Some(detail),
        );
        e.iteration = r.iteration;
        p.batch.events.push(e);
        p.publish
            .push(event_msg(&self.subjects, p.batch.events.last()));
        p.touched.push(r.run_id.clone());
        info!(run_id = %r.run_id, node_id = %r.node_id, attempt = r.attempt, next_attempt = next, delay_ms = due - now, "node attempt failed; retry scheduled");
        let queue = queue_of(&wf.spec.nodes[node]);
        let retry = (r.run_id.clone(), node, r.iteration, next);
        if self.cfg.rate_limits.contains_key(queue) {
            p.paced.push(Paced {
                queue: queue.to_string(),
                publish: None,
                row: p.batch.new_attempts.len() - 1,
                not_before: due,
                retry,
            });
        } else {
            let (run_id, node, iteration, attempt) = retry;
            self.retries
                .push(std::cmp::Reverse((due, run_id, node, iteration, attempt)));
        }
    }

    /// Sends the retries whose delay has passed (each still current: the run may have ended or
    /// moved on meanwhile), through the outbox publisher.
    async fn send_due_retries(&mut self) -> Result<(), Error> {
        let now = now_ms();
        let mut job = Published {
            publish: Vec::new(),
            task_keys: Vec::new(),
        };
        while let Some(std::cmp::Reverse((due, ..))) = self.retries.peek() {
            if *due > now {
                break;
            }
            let Some(std::cmp::Reverse((_, run_id, node, iteration, attempt))) = self.retries.pop()
            else {
                break;
            };
            if !self.runs.contains_key(&run_id) {
                match self.rebuild(&run_id).await? {
                    Some(run) => {
                        self.runs.insert(run_id.clone(), run);
                    }
                    None => continue,
                }
            }
            let Some(run) = self.runs.get(&run_id) else {
                continue;
            };
            if run.accepts(node, iteration, attempt).is_err() {
                continue;
            }
            let it = iteration;
            let Some(inputs) = run.inputs_of(node) else {
                continue;
            };
            let wf = Arc::clone(run.state.workflow());
            let spec = &wf.spec.nodes[node];
            match self.task_message(&run_id, spec, it, attempt, inputs, wf.spec.priority) {
                Ok(msg) => {
                    job.task_keys.push((
                        job.publish.len(),
                        AttemptKey {
                            run_id: run_id.clone(),
                            node_id: spec.id.clone(),
                            iteration: it,
                            attempt,
                        },
                    ));
                    job.publish.push(msg);
                    self.metrics.tasks_dispatched.inc();
                }
                Err((kind, e)) => {
                    warn!(%run_id, node_id = %spec.id, kind, error = %e, "cannot send a retry")
                }
            }
        }
        if !job.publish.is_empty() && self.outbox.send(job).await.is_err() {
            warn!("the outbox publisher has stopped; the sweeper will re-send these retries");
        }
        Ok(())
    }

    /// Rebuilds a run's planner state from the ledger by replaying its outcomes in order.
    async fn rebuild(&self, run_id: &str) -> Result<Option<ActiveRun>, Error> {
        let Some(rec) = self.store.run(run_id).await? else {
            return Ok(None);
        };
        if rec.status.is_final() {
            return Ok(None);
        }
        let Some(spec) = rec.spec else {
            return Ok(None);
        };
        let Ok((compiled, _)) =
            kora_model::compile(&spec, self.catalog.as_ref(), Some(&rec.params))
        else {
            return Ok(None);
        };
        let mut state = RunState::new(compiled, &rec.params).keep_leaf_outputs(false);
        state.start(rec.created_ms);
        let mut recorded = 0;
        let rows = self.store.attempts(run_id).await?;
        // The latest attempt of each (node, iteration): earlier failed ones were retried.
        let mut attempts: HashMap<(usize, u32), u32> = HashMap::new();
        // The operator's overrides of the latest replay of each (node, iteration) still apply
        // to the attempts after it (its retries).
        let mut overrides: HashMap<(usize, u32), (u32, Map)> = HashMap::new();
        for a in &rows {
            if let Some(&node) = state.workflow().index.get(&a.node_id) {
                let e = attempts.entry((node, a.iteration)).or_insert(1);
                *e = (*e).max(a.attempt);
                if let Some(o) = &a.overrides {
                    let slot = overrides
                        .entry((node, a.iteration))
                        .or_insert((0, Map::new()));
                    if a.attempt >= slot.0 {
                        *slot = (a.attempt, o.clone());
                    }
                }
            }
        }
        for a in rows {
            if a.seq.is_none() {
                continue;
            }
            recorded += 1;
            let Some(&node) = state.workflow().index.get(&a.node_id) else {
                continue;
            };
            if attempts
                .get(&(node, a.iteration))
                .is_some_and(|&latest| latest > a.attempt)
            {
                continue;
            }
            let outcome = match a.status {
                AttemptStatus::Succeeded => Outcome::Success(
                    a.output
                        .and_then(|o| o.as_object().cloned())
                        .unwrap_or_default(),
                ),
                AttemptStatus::Failed => Outcome::Failure {
                    error: a.error.unwrap_or_default(),
                    error_type: a.error_type.unwrap_or_default(),
                },
                _ => continue,
            };
            let _ = state.on_result(
                node,
                a.iteration,
                outcome,
                a.finished_ms.unwrap_or(rec.created_ms),
            );
        }
        let event_seq = rec.event_seq;
        info!(%run_id, "run state rebuilt from the ledger");
        let group = spec
            .concurrency_group(&rec.params)
            .ok()
            .flatten()
            .map(|(g, _)| g);
        Ok(Some(ActiveRun {
            group,
            parent: rec.parent.clone(),
            state,
            run_id: run_id.to_string(),
            event_seq,
            outcomes: recorded,
            attempts,
            overrides: overrides.into_iter().map(|(k, (_, o))| (k, o)).collect(),
        }))
    }

    /// The task message for one attempt, or why it cannot be sent.
    #[allow(clippy::too_many_arguments)]
    fn task_message(
        &self,
        run_id: &str,
        spec: &NodeSpec,
        iteration: u32,
        attempt: u32,
        inputs: Map,
        priority: kora_model::Priority,
    ) -> Result<Outbound, (&'static str, String)> {
        let task_id = NodeTask::make_id(run_id, &spec.id, iteration, attempt);
        if spec.node_type == WORKFLOW_NODE {
            return self.child_request(&task_id, spec, &inputs);
        }
        let task = NodeTask {
            v: WIRE_VERSION,
            task_id: task_id.clone(),
            run_id: run_id.to_string(),
            node_id: spec.id.clone(),
            node_type: spec.node_type.clone(),
            iteration,
            attempt,
            config: spec.config.clone(),
            inputs,
            timeout_ms: spec
                .timeout_secs
                .map(|t| Duration::from_secs_f64(t).as_millis())
                .and_then(|ms| u64::try_from(ms).ok()),
        };
        match wire::encode(&task) {
            Ok(bytes) if bytes.len() <= self.cfg.max_task_bytes => {
                let queue = queue_of(spec);
                let subject = match priority {
                    kora_model::Priority::High => self.subjects.task_high(queue),
                    kora_model::Priority::Normal => self.subjects.task(queue),
                };
                Ok(Outbound::new(subject, bytes).msg_id(task_id))
            }
            Ok(bytes) => Err((
                "TaskTooLarge",
                format!(
                    "the node's inputs encode to {} bytes, over the {}-byte message limit; pass large data by reference (a file or a table) instead",
                    bytes.len(),
                    self.cfg.max_task_bytes
                ),
            )),
            Err(e) => Err(("EncodeError", format!("cannot encode the node's task: {e}"))),
        }
    }

    /// A WorkflowNode's attempt is a child run: the request that starts it (its run id derives
    /// from the attempt, so a re-send is the same child), or why it cannot start.
    fn child_request(
        &self,
        task_id: &str,
        spec: &NodeSpec,
        inputs: &Map,
    ) -> Result<Outbound, (&'static str, String)> {
        let input = kora_model::semantics::prepare_input(&spec.config, inputs);
        let bad = |m: String| ("ChildWorkflowError", format!("node '{}': {m}", spec.id));
        let Some(doc) = input.get("workflow").filter(|v| v.is_object()) else {
            return Err(bad(
                "'workflow' must be a workflow (a map, in any shape Kora loads)".into(),
            ));
        };
        let (workflow, _) = kora_model::load::from_value(doc).map_err(|errs| {
            bad(format!(
                "its workflow does not load: {}",
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let mut params = match input.get("parameters") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        match input.get("input_mapping") {
            // {input: "node.param"}: an input goes to one parameter of one child node.
            Some(Value::Object(mapping)) => {
                for (name, target) in mapping {
                    let Some((node, param)) = target.as_str().and_then(|t| t.split_once('.'))
                    else {
                        return Err(bad(format!(
                            "input_mapping.{name} must be \"node.parameter\""
                        )));
                    };
                    if let Some(v) = input.get(name) {
                        let slot = params
                            .entry(node.to_string())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(m) = slot {
                            m.insert(param.to_string(), v.clone());
                        }
                    }
                }
            }
            // Without a mapping, the node's other inputs are the child's workflow-level
            // parameters.
            _ => {
                for (k, v) in inputs {
                    if !matches!(k.as_str(), "workflow" | "parameters" | "input_mapping") {
                        params.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        if let Err(problems) = kora_model::compile(&workflow, self.catalog.as_ref(), Some(&params))
        {
            return Err(bad(format!(
                "its workflow is not valid: {}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let child = uuid::Uuid::new_v5(&CHILD_NAMESPACE, task_id.as_bytes()).to_string();
        let req = wire::RunRequest {
            v: WIRE_VERSION,
            run_id: child.clone(),
            idempotency_key: None,
            workflow,
            params,
            submitted_at_ms: now_ms(),
            parent: Some(task_id.to_string()),
        };
        let bytes = wire::encode(&req).map_err(|e| ("EncodeError", e.to_string()))?;
        if bytes.len() > self.cfg.max_task_bytes {
            return Err((
                "TaskTooLarge",
                format!(
                    "node '{}': the child run's request encodes to {} bytes, over the {}-byte limit",
                    spec.id,
                    bytes.len(),
                    self.cfg.max_task_bytes
                ),
            ));
        }
        Ok(Outbound::new(self.subjects.run_submit(), bytes).msg_id(format!("run:{child}")))
    }

    /// Tells each ended child run's parent attempt the outcome (a NodeResult on the ledger
    /// subject, deduplicated by its message id), then marks the child reported.
    async fn report_children(&self, children: Vec<String>) -> Result<(), Error> {
        let mut records = Vec::new();
        for id in children {
            if let Some(r) = self.store.run(&id).await? {
                records.push(r);
            }
        }
        self.tell_parents(records).await
    }

    /// The sweep's part: child runs whose parent was never told (a crash in between).
    async fn report_unreported_children(&self) -> Result<(), Error> {
        let cutoff = now_ms()
            .saturating_sub(u64::try_from(self.cfg.outbox_grace.as_millis()).unwrap_or(u64::MAX));
        let records = self.store.unreported_children(cutoff, 256).await?;
        self.tell_parents(records).await
    }

    async fn tell_parents(&self, children: Vec<kora_store::RunRecord>) -> Result<(), Error> {
        let mut told = Vec::new();
        for child in children {
            let (Some(parent), true) = (child.parent.as_deref(), child.status.is_final()) else {
                continue;
            };
            let Some(key) = kora_store::parse_dead_letter_id(parent) else {
                continue;
            };
            let ids: Vec<String> = child
                .spec
                .as_ref()
                .map(|s| s.nodes.iter().map(|n| n.id.clone()).collect())
                .unwrap_or_default();
            let outcome = if child.status == RunStatus::Succeeded {
                let results = self.store.results(&child.run_id, &ids).await?;
                let mut output = Map::new();
                output.insert("results".into(), Value::Object(results));
                output.insert("run_id".into(), Value::String(child.run_id.clone()));
                output.insert("status".into(), Value::String("succeeded".into()));
                TaskOutcome::Success { output }
            } else {
                TaskOutcome::Failure {
                    error: format!(
                        "child run {} {}: {}",
                        child.run_id,
                        child.status.as_str(),
                        child.error.as_deref().unwrap_or("no error recorded")
                    ),
                    error_type: "ChildWorkflowFailed".into(),
                    retryable: false,
                }
            };
            let now = now_ms();
            let result = NodeResult {
                v: WIRE_VERSION,
                task_id: parent.to_string(),
                run_id: key.run_id.clone(),
                node_id: key.node_id.clone(),
                iteration: key.iteration,
                attempt: key.attempt,
                outcome,
                worker_id: "coordinator".into(),
                started_at_ms: child.created_ms,
                finished_at_ms: now,
                audit: Vec::new(),
            };
            let payload =
                wire::encode(&result).map_err(|e| kora_broker::Error::Other(e.to_string()))?;
            self.broker
                .publish(
                    Outbound::new(self.subjects.ledger_result(), payload)
                        .msg_id(format!("child:{}", child.run_id)),
                )
                .await?;
            info!(run_id = %key.run_id, node_id = %key.node_id, child = %child.run_id, status = child.status.as_str(), "child run ended; parent told");
            told.push(child.run_id);
        }
        self.store.mark_children_reported(&told, now_ms()).await?;
        Ok(())
    }

    /// The outbox sweeper: re-sends tasks the ledger says were dispatched but whose publish
    /// was never confirmed (a crash between commit and publish). Re-sending is idempotent: the
    /// task id is the message id, and a duplicate result is fenced.
    async fn sweep(&self) -> Result<usize, Error> {
        let cutoff = now_ms()
            .saturating_sub(u64::try_from(self.cfg.outbox_grace.as_millis()).unwrap_or(u64::MAX));
        let keys = self.store.unpublished(cutoff, 1000).await?;
        if keys.is_empty() {
            return Ok(0);
        }
        let mut by_run: std::collections::BTreeMap<String, Vec<AttemptKey>> = Default::default();
        for k in keys {
            by_run.entry(k.run_id.clone()).or_default().push(k);
        }
        let mut sent = Vec::new();
        for (run_id, keys) in by_run {
            let Some(run) = self.rebuild(&run_id).await? else {
                continue;
            };
            let wf = Arc::clone(run.state.workflow());
            let mut msgs = Vec::new();
            let mut msg_keys = Vec::new();
            for k in keys {
                let Some(&node) = wf.index.get(&k.node_id) else {
                    continue;
                };
                if run.accepts(node, k.iteration, k.attempt).is_err() {
                    continue;
                }
                let Some(inputs) = run.inputs_of(node) else {
                    continue;
                };
                if let Ok(msg) = self.task_message(
                    &run_id,
                    &wf.spec.nodes[node],
                    k.iteration,
                    k.attempt,
                    inputs,
                    wf.spec.priority,
                ) {
                    msgs.push(msg);
                    msg_keys.push(k);
                }
            }
            for (k, r) in msg_keys
                .into_iter()
                .zip(self.broker.publish_many(msgs).await)
            {
                if r.is_ok() {
                    sent.push(k);
                }
            }
        }
        if !sent.is_empty() {
            warn!(
                tasks = sent.len(),
                "re-published tasks whose publish was lost between commit and publish"
            );
            self.metrics.tasks_republished.add(sent.len() as u64);
            self.store.mark_published(&sent, now_ms()).await?;
        }
        Ok(sent.len())
    }

    /// Turns planner actions into ledger writes and messages.
    fn apply(&self, run: &mut ActiveRun, actions: Vec<Action>, now: u64, p: &mut Pending) {
        let wf = Arc::clone(run.state.workflow());
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Dispatch {
                    node,
                    iteration,
                    inputs,
                } => {
                    let spec_idx = wf.index[&wf.ids[node]];
                    let spec = &wf.spec.nodes[spec_idx];
                    // A node that already has attempts (its run restarted from a node
                    // upstream of it) takes the next number; the old ones stay, superseded.
                    let attempt = match run.attempts.get(&(spec_idx, iteration)) {
                        Some(&a) => {
                            run.attempts.insert((spec_idx, iteration), a + 1);
                            a + 1
                        }
                        None => 1,
                    };
                    let task_id = NodeTask::make_id(&run.run_id, &spec.id, iteration, attempt);
                    p.batch.new_attempts.push(NewAttempt {
                        run_id: run.run_id.clone(),
                        node_id: spec.id.clone(),
                        iteration,
                        attempt,
                        node_type: spec.node_type.clone(),
                        status: AttemptStatus::Dispatched,
                        at_ms: now,
                    });
                    let _ = task_id;
                    let undeliverable = match self.task_message(
                        &run.run_id,
                        spec,
                        iteration,
                        attempt,
                        inputs,
                        wf.spec.priority,
                    ) {
                        Ok(msg) => {
                            let queue = queue_of(spec);
                            if self.cfg.rate_limits.contains_key(queue) {
                                p.paced.push(Paced {
                                    queue: queue.to_string(),
                                    publish: Some(p.publish.len()),
                                    row: p.batch.new_attempts.len() - 1,
                                    not_before: now,
                                    retry: (
                                        run.run_id.clone(),
                                        wf.index[&spec.id],
                                        iteration,
                                        attempt,
                                    ),
                                });
                            }
                            p.task_keys.push((
                                p.publish.len(),
                                AttemptKey {
                                    run_id: run.run_id.clone(),
                                    node_id: spec.id.clone(),
                                    iteration,
                                    attempt,
                                },
                            ));
                            p.publish.push(msg);
                            None
                        }
                        Err(e) => Some(e),
                    };
                    // A task that cannot be sent fails its node, by Kailash's failure rules.
                    if let Some((error_type, error)) = undeliverable {
                        warn!(run_id = %run.run_id, node_id = %spec.id, %error, "node cannot be dispatched");
                        p.expect(run);
                        run.outcomes += 1;
                        p.batch.outcomes.push(AttemptUpdate {
                            run_id: run.run_id.clone(),
                            node_id: spec.id.clone(),
                            iteration,
                            attempt,
                            status: AttemptStatus::Failed,
                            output: None,
                            error: Some(error.clone()),
                            error_type: Some(error_type.into()),
                            worker_id: None,
                            at_ms: now,
                            // Its inputs are what is too large to keep: replay with overrides.
                            dead_letter: Some((error_type.to_string(), Map::new())),
                        });
                        run.event_seq += 1;
                        p.batch.events.push(event(
                            &run.run_id,
                            run.event_seq,
                            EventKind::NodeFailed,
                            Some(&spec.id),
                            attempt,
                            now,
                            Some(serde_json::json!({ "error": error })),
                        ));
                        p.publish
                            .push(event_msg(&self.subjects, p.batch.events.last()));
                        let failure = Outcome::Failure {
                            error,
                            error_type: error_type.into(),
                        };
                        if let Ok(more) = run.state.on_result(node, iteration, failure, now) {
                            queue.extend(more);
                        }
                    }
                }
                Action::Skip { node, iteration } => {
                    let id = &wf.ids[node];
                    let spec_idx = wf.index[id];
                    let attempt = match run.attempts.get(&(spec_idx, iteration)) {
                        Some(&a) => {
                            run.attempts.insert((spec_idx, iteration), a + 1);
                            a + 1
                        }
                        None => 0,
                    };
                    p.batch.new_attempts.push(NewAttempt {
                        run_id: run.run_id.clone(),
                        node_id: id.clone(),
                        iteration,
                        attempt,
                        node_type: wf.spec.nodes[node].node_type.clone(),
                        status: AttemptStatus::Skipped,
                        at_ms: now,
                    });
                    run.event_seq += 1;
                    p.batch.events.push(event(
                        &run.run_id,
                        run.event_seq,
                        EventKind::NodeSkipped,
                        Some(id),
                        0,
                        now,
                        None,
                    ));
                    p.publish
                        .push(event_msg(&self.subjects, p.batch.events.last()));
                }
                Action::CycleIteration {
                    group,
                    completed,
                    done,
                    reason,
                } => {
                    run.event_seq += 1;
                    let detail = serde_json::json!({"cycle": wf.groups[group].id, "completed": completed, "done": done, "reason": reason});
                    p.batch.events.push(event(
                        &run.run_id,
                        run.event_seq,
                        EventKind::CycleIteration,
                        None,
                        0,
                        now,
                        Some(detail),
                    ));
                    p.publish
                        .push(event_msg(&self.subjects, p.batch.events.last()));
                }
                Action::Finish(outcome) => {
                    let (status, kind, error, error_node) = match &outcome {
                        RunOutcome::Succeeded => {
                            (RunStatus::Succeeded, EventKind::RunSucceeded, None, None)
                        }
                        RunOutcome::Failed { node, error } => (
                            RunStatus::Failed,
                            EventKind::RunFailed,
                            Some(error.clone()),
                            node.clone(),
                        ),
                    };
                    if status == RunStatus::Succeeded {
                        self.metrics.runs_succeeded.inc();
                        info!(run_id = %run.run_id, "run succeeded");
                    } else {
                        self.metrics.runs_failed.inc();
                        warn!(run_id = %run.run_id, error = error.as_deref().unwrap_or(""), "run failed");
                    }
                    p.batch.run_updates.push(RunUpdate {
                        run_id: run.run_id.clone(),
                        status,
                        error: error.clone(),
                        error_node: error_node.clone(),
                        at_ms: now,
                    });
                    run.event_seq += 1;
                    let detail = error.map(|e| serde_json::json!({"error": e, "node": error_node}));
                    p.batch.events.push(event(
                        &run.run_id,
                        run.event_seq,
                        kind,
                        None,
                        0,
                        now,
                        detail,
                    ));
                    p.publish
                        .push(event_msg(&self.subjects, p.batch.events.last()));
                    p.finished.push(run.run_id.clone());
                    if let Some(g) = &run.group {
                        p.freed.push(g.clone());
                    }
                    if status == RunStatus::Failed {
                        self.cancel_children(run, "it failed", p);
                    }
                    if run.parent.is_some() {
                        p.children.push(run.run_id.clone());
                    }
                }
            }
        }
    }
}

/// The node type whose attempts are child runs.
const WORKFLOW_NODE: &str = "WorkflowNode";

/// Namespace of child run ids (UUIDv5 of the parent attempt's task id).
const CHILD_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b6f_7261_0000_4000_8000_6368_696c_6421);

/// The worker queue a node's tasks go to: its config's `queue`, else the default one.
fn queue_of(spec: &NodeSpec) -> &str {
    spec.config
        .get("queue")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_QUEUE)
}

/// A crash hook for tests: when `KORA_FAILPOINT` names this point (and `armed`), the process
/// aborts here, as a `kill -9` would stop it.
fn failpoint(name: &str, armed: bool) {
    if armed && std::env::var("KORA_FAILPOINT").is_ok_and(|v| v == name) {
        error!(failpoint = name, "failpoint hit: aborting");
        std::process::abort();
    }
}

fn event(
    run_id: &str,
    seq: u64,
    kind: EventKind,
    node: Option<&str>,
    attempt: u32,
    at_ms: u64,
    detail: Option<Value>,
) -> RunEvent {
    RunEvent {
        v: WIRE_VERSION,
        event_id: format!("{run_id}:{seq}"),
        run_id: run_id.to_string(),
        seq,
        kind,
        node_id: node.map(String::from),
        iteration: 0,
        attempt,
        at_ms,
        detail,
    }
}

fn event_msg(subjects: &Subjects, e: Option<&RunEvent>) -> Outbound {
    let Some(e) = e else {
        return Outbound::new(subjects.event("none", "node", "none"), Vec::new());
    };
    let payload = wire::encode(e).unwrap_or_default();
    Outbound::new(
        subjects.event(&e.run_id, e.kind.level(), e.kind.as_str()),
        payload,
    )
    .msg_id(format!("event:{}", e.event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: bool) -> kora_model::RetryPolicy {
        kora_model::RetryPolicy {
            max_attempts: 10,
            initial_delay_ms: 100,
            max_delay_ms: 1_000,
            multiplier: 3.0,
            jitter,
            retry_permanent: false,
        }
    }

    #[test]
    fn retry_delays_grow_by_the_multiplier_up_to_the_cap() {
        let p = policy(false);
        let ms: Vec<u128> = (2..=6).map(|a| retry_delay(&p, a).as_millis()).collect();
        assert_eq!(ms, [100, 300, 900, 1_000, 1_000]);
    }

    #[test]
    fn jitter_stays_between_the_delay_and_twice_it() {
        let p = policy(true);
        for _ in 0..200 {
            let d = retry_delay(&p, 3).as_millis();
            assert!((300..600).contains(&d), "{d}");
        }
    }

    #[test]
    fn only_retryable_errors_are_retried_unless_asked() {
        let mut p = policy(false);
        p.max_attempts = 3;
        assert!(p.retries(1, true) && p.retries(2, true));
        assert!(!p.retries(3, true), "the last attempt is final");
        assert!(!p.retries(1, false));
        p.retry_permanent = true;
        assert!(p.retries(1, false));
    }
}

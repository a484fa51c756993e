//! The worker: executes node tasks. Stateless: any number run side by side on one durable
//! consumer per queue, and a killed worker costs one redelivery.
//!
//! Owns: pulling tasks, preparing each node's input (config overlaid by runtime inputs,
//! templates resolved), running the node from the [`kora_nodes::Registry`], heartbeating long
//! tasks (in-progress acks), publishing the [`NodeResult`] and only then acking the task.
//!
//! Must not: keep state between tasks, write the ledger, or decide what runs next.

mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kora_broker::topology::dead_letter;
use kora_broker::{Broker, Delivery, Outbound};
use kora_model::subjects::Subjects;
use kora_model::wire::{self, NodeResult, NodeTask, TaskOutcome, WIRE_VERSION};
use kora_model::{error_type, now_ms, semantics};
use kora_nodes::{NodeContext, Registry};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};

pub use metrics::WorkerMetrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] kora_broker::Error),
}

/// `[worker]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This worker's name in results and logs (set by the process, not configured).
    #[serde(skip)]
    pub worker_id: String,
    /// The queue this worker serves (a node's `queue` config picks its queue).
    pub queue: String,
    /// Tasks run at once by this worker.
    pub concurrency: usize,
    /// Interval of in-progress acks for a running task; at most half the task ack wait.
    #[serde(with = "kora_model::duration")]
    pub heartbeat: Duration,
    #[serde(with = "kora_model::duration")]
    pub fetch_wait: Duration,
    /// How long in-flight tasks may take to finish after shutdown is requested; after that
    /// they are handed back (nak) for another worker.
    #[serde(with = "kora_model::duration")]
    pub drain_grace: Duration,
    /// Largest result message; a larger output fails its node with `OutputTooLarge`. Set
    /// from the ledger stream's message limit, not configured.
    #[serde(skip)]
    pub max_result_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            worker_id: format!("worker-{}", std::process::id()),
            queue: kora_model::subjects::DEFAULT_QUEUE.into(),
            concurrency: 16,
            heartbeat: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(500),
            drain_grace: Duration::from_secs(30),
            max_result_bytes: (8 << 20) - (64 << 10),
        }
    }
}

impl Config {
    /// `task_ack_wait`: how long the task stream lets a task go unacknowledged.
    pub fn validate(&self, task_ack_wait: Duration) -> Result<(), String> {
        if self.queue.is_empty()
            || !self
                .queue
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "worker.queue {:?}: use letters, digits, '_' or '-'",
                self.queue
            ));
        }
        if !(1..=100_000).contains(&self.concurrency) {
            return Err(format!(
                "worker.concurrency must be between 1 and 100000 (it is {})",
                self.concurrency
            ));
        }
        if self.heartbeat.is_zero() || self.heartbeat * 2 > task_ack_wait {
            return Err(format!(
                "worker.heartbeat ({}) must be more than 0 and at most half of tasks.ack_wait ({}), or live tasks are redelivered",
                kora_model::duration::format(self.heartbeat),
                kora_model::duration::format(task_ack_wait)
            ));
        }
        if self.fetch_wait.is_zero() || self.fetch_wait > Duration::from_secs(60) {
            return Err("worker.fetch_wait must be more than 0 and at most 60s".into());
        }
        Ok(())
    }
}

/// Runs the worker until `shutdown` is cancelled, then drains.
pub async fn run(
    cfg: Config,
    broker: Arc<dyn Broker>,
    subjects: Subjects,
    registry: Arc<Registry>,
    metrics: Arc<WorkerMetrics>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // Never more tasks requested than this worker has slots for.
    let consumer = broker
        .consumer_buffered(
            &subjects.stream_tasks(),
            &Subjects::consumer_workers(&cfg.queue),
            cfg.concurrency.max(1),
        )
        .await?;
    // High-priority tasks of the same queue, taken first.
    let urgent = broker
        .consumer_buffered(
            &subjects.stream_tasks(),
            &Subjects::consumer_workers_high(&cfg.queue),
            cfg.concurrency.max(1),
        )
        .await?;
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let capacity = i64::try_from(cfg.concurrency.max(1)).unwrap_or(i64::MAX);
    metrics.slots_move(&cfg.queue, "", "free", capacity);
    // The queue's series exist from the start (at zero), so a rate sees the first tasks.
    metrics.serve_queue(&cfg.queue);
    let tracker = TaskTracker::new();
    let abort = CancellationToken::new();
    // Cancelled runs: the coordinator's notices stop their tasks here.
    let runs = Arc::new(RunTokens::default());
    let notices = broker.listen(&subjects.cancel_notices()).await?;
    let listener = tokio::spawn(listen_for_cancels(
        notices,
        Arc::clone(&runs),
        shutdown.clone(),
    ));
    // Its status every few seconds, for the dashboard's busy slots.
    let started_ms = kora_model::now_ms();
    // Tasks running now (a slot held while fetching is not busy).
    let running = Arc::new(AtomicU32::new(0));
    let reporter = tokio::spawn(report_status(
        Arc::clone(&broker),
        subjects.worker_status(),
        status_of(&cfg, started_ms),
        Arc::clone(&running),
        shutdown.clone(),
    ));
    let cfg = Arc::new(cfg);
    // Finished tasks go to one publisher, which publishes their results pipelined and then acks
    // the tasks: a result is always stored before its task is acked.
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Finished>(cfg.concurrency.max(1) * 2);
    let publisher = tokio::spawn(publish_results(
        Arc::clone(&broker),
        done_rx,
        Arc::clone(&metrics),
    ));
    let shared = Arc::new(Shared {
        broker: Arc::clone(&broker),
        subjects: subjects.clone(),
        registry: Arc::clone(&registry),
        cfg: Arc::clone(&cfg),
        abort: abort.clone(),
        runs: Arc::clone(&runs),
        metrics: Arc::clone(&metrics),
    });
    let mut backoff = Duration::from_millis(50);
    loop {
        // Fetch only what there is room for, so a busy worker does not hoard tasks.
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let room = slots.available_permits() + 1;
        // Waiting high-priority tasks first; then normal ones, waiting briefly so a
        // high-priority task that arrives meanwhile is not kept behind them for long.
        let batch = match urgent.fetch(room, Duration::ZERO).await {
            Ok(b) if !b.is_empty() => Ok(b),
            _ => tokio::select! {
                () = shutdown.cancelled() => break,
                b = consumer.fetch(room, cfg.fetch_wait.min(Duration::from_millis(100))) => b,
            },
        };
        let batch = match batch {
            Ok(b) => {
                backoff = Duration::from_millis(50);
                b
            }
            Err(e) => {
                warn!(worker = %cfg.worker_id, error = %e, "cannot fetch tasks; retrying");
                drop(first);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut first = Some(first);
        for d in batch {
            let permit = match first.take() {
                Some(p) => p,
                None => match Arc::clone(&slots).acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (shared, tx) = (Arc::clone(&shared), done_tx.clone());
            metrics.slots_move(&cfg.queue, "free", "busy", 1);
            running.fetch_add(1, Ordering::Relaxed);
            let running = Arc::clone(&running);
            tracker.spawn(async move {
                let finished = handle(d, &shared).await;
                running.fetch_sub(1, Ordering::Relaxed);
                shared
                    .metrics
                    .slots_move(&shared.cfg.queue, "busy", "free", 1);
                drop(permit);
                if let Some(f) = finished {
                    // The publisher outlives every task; if it has stopped, the unacked task is
                    // simply redelivered.
                    let _ = tx.send(f).await;
                }
            });
        }
    }
    tracker.close();
    if tokio::time::timeout(cfg.drain_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(worker = %cfg.worker_id, "drain grace elapsed; handing unfinished tasks back");
        abort.cancel();
        tracker.wait().await;
    }
    drop(done_tx);
    let _ = publisher.await;
    listener.abort();
    if !shutdown.is_cancelled() {
        reporter.abort();
    }
    let _ = reporter.await;
    metrics.slots_move(&cfg.queue, "free", "", capacity);
    broker.flush().await?;
    Ok(())
}

/// A task whose node has run: its result message, and the delivery to ack once it is stored.
struct Finished {
    delivery: Delivery,
    result: Outbound,
    task_id: String,
}

/// Publishes finished tasks' results in pipelined batches, then acks (or hands back) each task.
async fn publish_results(
    broker: Arc<dyn Broker>,
    mut rx: tokio::sync::mpsc::Receiver<Finished>,
    metrics: Arc<WorkerMetrics>,
) {
    let mut buf = Vec::with_capacity(256);
    while rx.recv_many(&mut buf, 256).await > 0 {
        let msgs: Vec<Outbound> = buf
            .iter_mut()
            .map(|f| std::mem::replace(&mut f.result, Outbound::new(String::new(), Vec::new())))
            .collect();
        let began = Instant::now();
        let acks = broker.publish_many(msgs).await;
        metrics.published(began.elapsed().as_secs_f64());
        for (f, published) in buf.drain(..).zip(acks) {
            match published {
                Ok(_) => {
                    if let Err(e) = f.delivery.ack().await {
                        warn!(task_id = %f.task_id, error = %e, "ack failed; the task may run again");
                    }
                }
                Err(e) => {
                    warn!(task_id = %f.task_id, error = %e, "cannot publish the result; handing the task back");
                    let _ = f.delivery.nak(Some(Duration::from_secs(1))).await;
                }
            }
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A token per run with tasks on this worker, cancelled when the run is.
#[derive(Default)]
struct RunTokens(std::sync::Mutex<std::collections::HashMap<String, (CancellationToken, usize)>>);

impl RunTokens {
    fn enter(&self, run_id: &str) -> CancellationToken {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = g
            .entry(run_id.to_string())
            .or_insert_with(|| (CancellationToken::new(), 0));
        e.1 += 1;
        e.0.clone()
    }
    fn leave(&self, run_id: &str) {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = g.get_mut(run_id) {
            e.1 -= 1;
            if e.1 == 0 {
                g.remove(run_id);
            }
        }
    }
    fn cancel(&self, run_id: &str) {
        let g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, _)) = g.get(run_id) {
            t.cancel();
        }
    }
}

/// The status this worker reports, busy slots and time filled in when sent.
fn status_of(cfg: &Config, started_ms: u64) -> kora_model::wire::WorkerStatus {
    kora_model::wire::WorkerStatus {
        v: kora_model::wire::WIRE_VERSION,
        worker_id: cfg.worker_id.clone(),
        queue: cfg.queue.clone(),
        slots: u32::try_from(cfg.concurrency.max(1)).unwrap_or(u32::MAX),
        busy: 0,
        started_ms,
        at_ms: started_ms,
        stopping: false,
    }
}

/// Publishes the worker's status every [`WorkerStatus::INTERVAL`] until `shutdown`, then once
/// more marked `stopping`. Best effort: a status that cannot be sent is the next one's job.
///
/// [`WorkerStatus::INTERVAL`]: kora_model::wire::WorkerStatus::INTERVAL
async fn report_status(
    broker: Arc<dyn Broker>,
    subject: String,
    mut status: kora_model::wire::WorkerStatus,
    running: Arc<AtomicU32>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(kora_model::wire::WorkerStatus::INTERVAL);
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        status.busy = running.load(Ordering::Relaxed).min(status.slots);
        status.at_ms = kora_model::now_ms();
        status.stopping = stopping;
        match serde_json::to_vec(&status) {
            Ok(body) => {
                if let Err(e) = broker.notify(&subject, body).await {
                    debug!(worker = %status.worker_id, error = %e, "cannot publish the worker's status");
                }
            }
            Err(e) => debug!(error = %e, "cannot encode the worker's status"),
        }
        if stopping {
            return;
        }
    }
}

async fn listen_for_cancels(
    mut notices: futures::stream::BoxStream<'static, Vec<u8>>,
    runs: Arc<RunTokens>,
    shutdown: CancellationToken,
) {
    use futures::StreamExt;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            n = notices.next() => match n {
                Some(run_id) => {
                    let run_id = String::from_utf8_lossy(&run_id).to_string();
                    debug!(%run_id, "run cancelled: stopping its tasks here");
                    runs.cancel(&run_id);
                }
                None => return,
            },
        }
    }
}

/// The attempt's spans (when the process exports traces): `kora.node <id>` from the task's
/// dispatch to its end, under the run's root span the task's `traceparent` names, with
/// `kora.queue_wait` and `kora.execute` in it. Returns the node span's context.
fn trace_attempt(
    d: &Delivery,
    r: &NodeResult,
    node_type: &str,
    cfg: &Config,
) -> Option<kora_model::trace::TraceParent> {
    use kora_broker::trace::{SpanSpec, at_ms, parent_of, span};
    if !kora_broker::trace::enabled() {
        return None;
    }
    let dispatched = d.info.published_ms.min(r.started_at_ms);
    let error = match &r.outcome {
        TaskOutcome::Failure { error, .. } => Some(error.clone()),
        TaskOutcome::Success { .. } => None,
    };
    let node = span(SpanSpec {
        error: error.clone(),
        ..SpanSpec::new(
            format!("kora.node {}", r.node_id),
            at_ms(dispatched),
            at_ms(r.finished_at_ms),
        )
        // A task from a coordinator that does not trace carries no header: the run's root
        // span is derived from its id all the same.
        .parent(
            parent_of(&d.headers)
                .or_else(|| Some(kora_model::trace::TraceParent::of_run(&r.run_id))),
        )
        .attr("kora.run_id", r.run_id.clone())
        .attr("kora.node_id", r.node_id.clone())
        .attr("kora.node_type", node_type.to_string())
        .attr("kora.queue", cfg.queue.clone())
        .attr("kora.attempt", i64::from(r.attempt))
        .attr("kora.iteration", i64::from(r.iteration))
        .attr("kora.delivery", i64::from(d.info.delivered))
        .attr("kora.worker_id", cfg.worker_id.clone())
    })?;
    span(
        SpanSpec::new("kora.queue_wait", at_ms(dispatched), at_ms(r.started_at_ms))
            .parent(Some(node)),
    );
    span(SpanSpec {
        error,
        ..SpanSpec::new(
            "kora.execute",
            at_ms(r.started_at_ms),
            at_ms(r.finished_at_ms),
        )
        .parent(Some(node))
    });
    Some(node)
}

/// What every task of a worker loop shares.
struct Shared {
    broker: Arc<dyn Broker>,
    subjects: Subjects,
    registry: Arc<Registry>,
    cfg: Arc<Config>,
    /// Cancelled when the drain grace is over: running tasks are handed back.
    abort: CancellationToken,
    runs: Arc<RunTokens>,
    metrics: Arc<WorkerMetrics>,
}

async fn handle(d: Delivery, shared: &Shared) -> Option<Finished> {
    let Shared {
        broker,
        subjects,
        metrics,
        ..
    } = shared;
    let broker = broker.as_ref();
    let task = match wire::decode::<NodeTask>(&d.payload) {
        Ok(t) => t,
        Err(e) => {
            metrics.poison_tasks.inc();
            warn!(subject = %d.subject, error = %e, "dead-lettering an undecodable task");
            if let Err(e) = dead_letter(broker, subjects, "task", &d, &e.to_string()).await {
                warn!(error = %e, "cannot dead-letter; the task will be redelivered");
            }
            return None;
        }
    };
    // Every log line of the task carries its run, node, attempt and trace.
    let span = tracing::info_span!(
        "task",
        run_id = %task.run_id,
        node_id = %task.node_id,
        attempt = task.attempt,
        trace_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record(
            "trace_id",
            tracing::field::display(kora_model::trace::run_trace_hex(&task.run_id)),
        );
    }
    execute(d, task, shared).instrument(span).await
}

/// Runs a decoded task: its node, within its limits, heartbeating; the result to publish.
async fn execute(d: Delivery, task: NodeTask, shared: &Shared) -> Option<Finished> {
    let Shared {
        subjects,
        registry,
        cfg,
        abort,
        runs,
        metrics,
        ..
    } = shared;
    let started = now_ms();
    let began = Instant::now();
    // A node type this worker lacks is one label, not one per name a task could carry.
    let node_type = if registry.get(&task.node_type).is_some() {
        task.node_type.as_str()
    } else {
        "unknown"
    };
    if d.info.delivered == 1 {
        metrics.started(
            &cfg.queue,
            started.saturating_sub(d.info.published_ms) as f64 / 1000.0,
        );
    }
    let mut audit = Vec::new();
    let outcome = match registry.get(&task.node_type) {
        None => TaskOutcome::Failure {
            error: format!(
                "node type '{}' is not available on worker {}",
                task.node_type, cfg.worker_id
            ),
            error_type: error_type::UNKNOWN_NODE_TYPE.into(),
            retryable: false,
            retry_after_ms: None,
        },
        Some(node) => 'node: {
            let mut input = semantics::prepare_input(&task.config, &task.inputs);
            semantics::drop_unset_optionals(&mut input, node.info());
            // Secret references become values here, and only here.
            let secrets =
                match kora_nodes::secrets::resolve(&mut input, &kora_nodes::secrets::EnvSecrets) {
                    Ok(s) => s,
                    Err(e) => {
                        break 'node TaskOutcome::Failure {
                            retryable: e.is_retryable(),
                            error_type: e.error_type().to_string(),
                            error: format!("node '{}': {e}", task.node_id),
                            retry_after_ms: None,
                        };
                    }
                };
            let ctx = NodeContext {
                run_id: task.run_id.clone(),
                node_id: task.node_id.clone(),
                attempt: task.attempt,
                ..NodeContext::default()
            };
            let limit = task.timeout_ms.map(Duration::from_millis);
            let timed = async {
                match limit {
                    None => node.run(&ctx, input).await,
                    // Dropping the node's future stops it (a Python interpreter is killed).
                    Some(limit) => match tokio::time::timeout(limit, node.run(&ctx, input)).await {
                        Ok(r) => r,
                        Err(_) => Err(kora_nodes::NodeError::retryable(
                            error_type::TIMEOUT,
                            format!(
                                "node '{}' did not finish within its timeout of {:.1}s and was stopped",
                                task.node_id,
                                limit.as_secs_f64()
                            ),
                        )),
                    },
                }
            };
            let mut fut = std::pin::pin!(timed);
            // Most nodes finish at once; only arm the heartbeat timer for those that do not.
            let result = match futures::poll!(fut.as_mut()) {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => {
                    // Only a node still running can be stopped by its run's cancellation.
                    let cancelled = runs.enter(&task.run_id);
                    let _leave = scopeguard(|| runs.leave(&task.run_id));
                    let mut beat = tokio::time::interval_at(
                        tokio::time::Instant::now() + cfg.heartbeat,
                        cfg.heartbeat,
                    );
                    loop {
                        tokio::select! {
                            r = &mut fut => break r,
                            _ = beat.tick() => {
                                if let Err(e) = d.progress().await {
                                    warn!(run_id = %task.run_id, node_id = %task.node_id, error = %e, "heartbeat failed");
                                }
                            }
                            () = abort.cancelled() => {
                                metrics.attempt(node_type, &cfg.queue, "handed_back");
                                let _ = d.nak(None).await;
                                return None;
                            }
                            () = cancelled.cancelled() => {
                                // The run was cancelled: stop, and drop the task for good.
                                warn!(run_id = %task.run_id, node_id = %task.node_id, "task stopped: its run was cancelled");
                                metrics.attempt(node_type, &cfg.queue, "cancelled");
                                let _ = d.ack().await;
                                return None;
                            }
                        }
                    }
                }
            };
            // No secret value leaves the worker: not in the output, an error or an audit entry.
            audit = ctx.take_audit();
            if !secrets.is_empty() {
                for a in &mut audit {
                    kora_nodes::secrets::mask(a, &secrets);
                }
            }
            match result {
                Ok(output) if secrets.is_empty() => TaskOutcome::Success { output },
                Ok(output) => {
                    let mut v = kora_model::Value::Object(output);
                    kora_nodes::secrets::mask(&mut v, &secrets);
                    let output = match v {
                        kora_model::Value::Object(m) => m,
                        _ => kora_model::Map::new(),
                    };
                    TaskOutcome::Success { output }
                }
                Err(e) => TaskOutcome::Failure {
                    retryable: e.is_retryable(),
                    error_type: e.error_type().to_string(),
                    error: kora_nodes::secrets::mask_text(&e.to_string(), &secrets),
                    retry_after_ms: e
                        .wait_hint()
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                },
            }
        }
    };
    metrics.ran(node_type, &cfg.queue, began.elapsed().as_secs_f64());
    if let TaskOutcome::Failure {
        error,
        error_type: kind,
        ..
    } = &outcome
    {
        let timed_out = kind == error_type::TIMEOUT;
        metrics.attempt(
            node_type,
            &cfg.queue,
            if timed_out { "timed_out" } else { "failed" },
        );
        warn!(run_id = %task.run_id, node_id = %task.node_id, attempt = task.attempt, trace_id = %kora_model::trace::run_trace_hex(&task.run_id), %error, "node failed");
    } else {
        metrics.attempt(node_type, &cfg.queue, "succeeded");
        debug!(run_id = %task.run_id, node_id = %task.node_id, attempt = task.attempt, trace_id = %kora_model::trace::run_trace_hex(&task.run_id), "node succeeded");
    }
    let mut result = NodeResult {
        v: WIRE_VERSION,
        task_id: task.task_id.clone(),
        run_id: task.run_id,
        node_id: task.node_id,
        iteration: task.iteration,
        attempt: task.attempt,
        outcome,
        worker_id: cfg.worker_id.clone(),
        started_at_ms: started,
        finished_at_ms: now_ms(),
        audit,
    };
    let mut encoded = wire::encode(&result);
    if let Ok(bytes) = &encoded
        && bytes.len() > cfg.max_result_bytes
    {
        let error = format!(
            "the node's output encodes to {} bytes, over the {}-byte message limit; write large data to a file or a table and output a reference",
            bytes.len(),
            cfg.max_result_bytes
        );
        warn!(run_id = %result.run_id, node_id = %result.node_id, %error, "result too large");
        result.outcome = TaskOutcome::Failure {
            error,
            error_type: error_type::OUTPUT_TOO_LARGE.into(),
            retryable: false,
            retry_after_ms: None,
        };
        encoded = wire::encode(&result);
    }
    let payload = match encoded {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot encode a result");
            let _ = d.nak(Some(Duration::from_secs(1))).await;
            return None;
        }
    };
    // The result is stored before the task is acked: a crash in between re-runs the task, and
    // the coordinator ignores the second result.
    let traced = trace_attempt(&d, &result, &task.node_type, cfg);
    let task_id = result.task_id;
    let mut msg = Outbound::new(subjects.ledger_result_from(&cfg.queue), payload)
        .msg_id(kora_model::msg_id::result(&task_id));
    if let Some(t) = traced {
        // The coordinator's recording span goes under this attempt's.
        msg = msg.header(kora_model::trace::TRACEPARENT, t.header());
    }
    Some(Finished {
        delivery: d,
        result: msg,
        task_id,
    })
}

//! Kora's streams and durable consumers, provisioned idempotently at start-up by every role.
//! All names come from [`kora_model::subjects::Subjects`], so installations sharing one server
//! are kept apart by their prefix.

use std::time::Duration;

use kora_model::subjects::Subjects;

use crate::{Broker, ConsumerConfig, Delivery, Outbound, Result, Retention, StreamConfig};

/// A node's execution limit when neither it nor its queue sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// `[tasks]`: how the task stream delivers to workers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How long a worker may hold a task without acking or heartbeating.
    #[serde(with = "kora_model::duration")]
    pub ack_wait: Duration,
    /// Deliveries of one task (crashes, timeouts) before it is given up as `worker_lost`.
    pub max_deliver: u32,
    /// Execution limit of a node that sets no `timeout_secs`: past it the worker stops the node
    /// and the attempt fails with a retryable `TimeoutError`. `0s` sets none.
    #[serde(with = "kora_model::duration")]
    pub default_timeout: Duration,
    /// The same per queue (`[tasks.timeouts] reports = "2h"`), over `default_timeout`.
    #[serde(with = "kora_model::duration::map")]
    pub timeouts: std::collections::BTreeMap<String, Duration>,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            default_timeout: DEFAULT_TIMEOUT,
            timeouts: std::collections::BTreeMap::new(),
        }
    }
}

/// `[control]`: how the run-request and ledger streams deliver to schedulers and coordinators.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// How long a scheduler or coordinator may hold a run request or ledger message before
    /// it is redelivered (to another instance): the recovery time after one of them crashes.
    /// Must exceed the longest ledger write (database.acquire_timeout and more).
    #[serde(with = "kora_model::duration")]
    pub ack_wait: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            ack_wait: Duration::from_secs(30),
        }
    }
}

impl TasksConfig {
    /// `default_timeout`, or `None` when it is `0s`.
    pub fn default_limit(&self) -> Option<Duration> {
        (!self.default_timeout.is_zero()).then_some(self.default_timeout)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.ack_wait < Duration::from_secs(1) {
            return Err(format!(
                "tasks.ack_wait must be at least 1s (it is {})",
                kora_model::duration::format(self.ack_wait)
            ));
        }
        if self.max_deliver == 0 {
            return Err("tasks.max_deliver must be at least 1".into());
        }
        for (queue, t) in &self.timeouts {
            if t.is_zero() {
                return Err(format!(
                    "tasks.timeouts.{queue} must be more than 0s (leave the queue out to use tasks.default_timeout)"
                ));
            }
        }
        Ok(())
    }
}

impl ControlConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.ack_wait < Duration::from_secs(1) {
            return Err(format!(
                "control.ack_wait must be at least 1s (it is {})",
                kora_model::duration::format(self.ack_wait)
            ));
        }
        Ok(())
    }
}

impl TopologyConfig {
    /// The topology `kora serve` provisions from its configuration sections.
    pub fn of(
        nats: &crate::nats::NatsConfig,
        tasks: &TasksConfig,
        control: &ControlConfig,
    ) -> Self {
        TopologyConfig {
            task_ack_wait: tasks.ack_wait,
            task_max_deliver: tasks.max_deliver,
            control_ack_wait: control.ack_wait,
            replicas: nats.replicas,
            ..TopologyConfig::default()
        }
    }
}

/// Delivery settings for the task queues.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    /// How long a worker may hold a task without acking or reporting progress.
    pub task_ack_wait: Duration,
    /// Deliveries of one task before it is given up (crashes and timeouts, not node errors).
    pub task_max_deliver: u32,
    /// How long the scheduler and coordinator may hold a run request or ledger message before
    /// another instance gets it: the recovery time after one of them crashes.
    pub control_ack_wait: Duration,
    /// How long run events are kept.
    pub events_max_age: Duration,
    /// How many bytes of run events are kept, the oldest removed first (none: no limit but
    /// their age). Embedded mode bounds them: the ledger holds every event anyway.
    pub events_max_bytes: Option<u64>,
    /// Window within which a re-published message id is a no-op.
    pub duplicate_window: Duration,
    /// Largest message accepted on any Kora stream.
    pub max_msg_size: usize,
    /// Copies of every stream on a clustered server (1, or 3 to survive losing a node).
    pub replicas: usize,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            task_ack_wait: Duration::from_secs(30),
            task_max_deliver: 5,
            control_ack_wait: Duration::from_secs(30),
            events_max_age: Duration::from_secs(7 * 24 * 3600),
            events_max_bytes: None,
            duplicate_window: Duration::from_secs(600),
            max_msg_size: 8 << 20,
            replicas: 1,
        }
    }
}

fn stream(
    name: String,
    subjects: Vec<String>,
    retention: Retention,
    cfg: &TopologyConfig,
) -> StreamConfig {
    StreamConfig {
        duplicate_window: cfg.duplicate_window,
        max_msg_size: Some(cfg.max_msg_size),
        replicas: cfg.replicas,
        ..StreamConfig::new(name, subjects, retention)
    }
}

/// Creates or updates every stream and the shared consumers. Safe to call from every process.
pub async fn provision(
    b: &dyn Broker,
    s: &Subjects,
    queues: &[&str],
    cfg: &TopologyConfig,
) -> Result<()> {
    provision_streams(b, s, cfg).await?;
    provision_consumers(b, s, queues, cfg).await
}

/// Checks that each `(stream, durable consumer)` a process takes messages from exists, without
/// changing anything: what a role whose NATS user may not manage streams does instead of
/// [`provision`]. The error names the first one missing and what to run.
pub async fn verify(b: &dyn Broker, consumers: &[(String, String)]) -> Result<()> {
    for (stream, durable) in consumers {
        b.consumer_exists(stream, durable).await.map_err(|e| {
            crate::Error::Other(format!(
                "consumer {durable} on stream {stream}: {e}; with nats.provision = false the streams and consumers must exist already: run `kora setup` with a NATS user that may manage them (docs/security.md)"
            ))
        })?;
    }
    Ok(())
}

/// Creates or updates Kora's streams (not consumers). A submitter calls this so a request is
/// stored even when no role has started yet.
pub async fn provision_streams(b: &dyn Broker, s: &Subjects, cfg: &TopologyConfig) -> Result<()> {
    b.ensure_stream(&stream(
        s.stream_runs(),
        vec![s.run_submit()],
        Retention::WorkQueue,
        cfg,
    ))
    .await?;
    b.ensure_stream(&stream(
        s.stream_ledger(),
        vec![s.ledger_all()],
        Retention::WorkQueue,
        cfg,
    ))
    .await?;
    b.ensure_stream(&stream(
        s.stream_tasks(),
        vec![s.task_all()],
        Retention::WorkQueue,
        cfg,
    ))
    .await?;
    let mut events = stream(
        s.stream_events(),
        vec![s.event_all()],
        Retention::Limits,
        cfg,
    );
    events.max_age = Some(cfg.events_max_age);
    events.max_bytes = cfg.events_max_bytes;
    b.ensure_stream(&events).await?;
    b.ensure_stream(&stream(
        s.stream_dlq(),
        vec![s.dlq_all()],
        Retention::Limits,
        cfg,
    ))
    .await?;
    let mut advisories = stream(
        s.stream_advisories(),
        vec![crate::max_deliveries_advisory(&s.stream_tasks(), "*")],
        Retention::WorkQueue,
        cfg,
    );
    advisories.max_age = Some(cfg.events_max_age);
    b.ensure_stream(&advisories).await
}

/// Creates the roles' durable consumers; an existing consumer keeps its settings.
pub async fn provision_consumers(
    b: &dyn Broker,
    s: &Subjects,
    queues: &[&str],
    cfg: &TopologyConfig,
) -> Result<()> {
    let ledger_like = |name: &str| ConsumerConfig {
        ack_wait: cfg.control_ack_wait,
        max_deliver: 0,
        ..ConsumerConfig::new(name)
    };
    b.ensure_consumer(&s.stream_runs(), &ledger_like(Subjects::CONSUMER_SCHEDULER))
        .await?;
    b.ensure_consumer(
        &s.stream_ledger(),
        &ledger_like(Subjects::CONSUMER_COORDINATOR),
    )
    .await?;
    b.ensure_consumer(
        &s.stream_advisories(),
        &ledger_like(Subjects::CONSUMER_ADVISORIES),
    )
    .await?;
    for q in queues {
        for (subject, durable) in [
            (s.task(q), Subjects::consumer_workers(q)),
            (s.task_high(q), Subjects::consumer_workers_high(q)),
        ] {
            let c = ConsumerConfig {
                filter_subject: Some(subject),
                ack_wait: cfg.task_ack_wait,
                max_deliver: cfg.task_max_deliver,
                ..ConsumerConfig::new(durable)
            };
            b.ensure_consumer(&s.stream_tasks(), &c).await?;
        }
    }
    Ok(())
}

/// Header names on dead-lettered messages.
pub const HDR_REASON: &str = "Kora-Reason";
pub const HDR_ORIG_SUBJECT: &str = "Kora-Orig-Subject";
pub const HDR_ORIG_SEQ: &str = "Kora-Orig-Seq";
pub const HDR_DELIVERIES: &str = "Kora-Deliveries";

/// Copies a message a role cannot use to the dead-letter stream with the reason, then
/// terminates it so it is never delivered again. Poison never stops a role.
pub async fn dead_letter(
    b: &dyn Broker,
    s: &Subjects,
    source: &str,
    d: &Delivery,
    reason: &str,
) -> Result<()> {
    let msg = Outbound::new(s.dlq(source), d.payload.clone())
        .msg_id(kora_model::msg_id::poison(
            &d.subject,
            d.info.stream_sequence,
        ))
        .header(HDR_REASON, reason.replace(['\r', '\n'], " "))
        .header(HDR_ORIG_SUBJECT, d.subject.clone())
        .header(HDR_ORIG_SEQ, d.info.stream_sequence.to_string())
        .header(HDR_DELIVERIES, d.info.delivered.to_string());
    b.publish(msg).await?;
    d.term(reason).await
}

/// Publishes a run request on `<p>.run.submit`: the one way runs enter Kora (`kora submit`,
/// the gateway, triggers). The same `run_id` published twice is one run: the message id makes
/// a second publish within the duplicate window a no-op, and the coordinator ignores a run it
/// already has.
pub async fn submit_run(
    b: &dyn Broker,
    s: &Subjects,
    req: &kora_model::wire::RunRequest,
) -> Result<()> {
    submit_run_traced(b, s, req, None).await
}

/// [`submit_run`] with the submitter's trace context in the `traceparent` header.
pub async fn submit_run_traced(
    b: &dyn Broker,
    s: &Subjects,
    req: &kora_model::wire::RunRequest,
    trace: Option<kora_model::trace::TraceParent>,
) -> Result<()> {
    let payload = kora_model::wire::encode(req).map_err(|e| crate::Error::Other(e.to_string()))?;
    let mut msg =
        Outbound::new(s.run_submit(), payload).msg_id(kora_model::msg_id::run(&req.run_id));
    if let Some(t) = trace {
        msg = msg.header(kora_model::trace::TRACEPARENT, t.header());
    }
    b.publish(msg).await?;
    Ok(())
}

/// Creates (or updates) the work-queue stream that captures a subject trigger's `subject`, and
/// the consumer schedulers share on it, so messages published while no scheduler runs wait.
pub async fn provision_trigger(
    b: &dyn Broker,
    s: &Subjects,
    name: &str,
    subject: &str,
) -> Result<()> {
    let stream = s.stream_trigger(name);
    b.ensure_stream(&StreamConfig::new(
        stream.clone(),
        vec![subject.to_string()],
        Retention::WorkQueue,
    ))
    .await
    .map_err(|e| {
        crate::Error::Other(format!(
            "cannot capture subject {subject:?} for trigger {name}: {e} (a subject another stream captures cannot be used)"
        ))
    })?;
    b.ensure_consumer(
        &stream,
        &ConsumerConfig {
            ack_wait: Duration::from_secs(30),
            ..ConsumerConfig::new(Subjects::CONSUMER_TRIGGER)
        },
    )
    .await
}

/// What waits on one task queue ([`queue_backlog`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct QueueBacklog {
    pub queue: String,
    /// Tasks no worker has taken yet.
    pub waiting: u64,
    /// Tasks taken by a worker and not yet acknowledged.
    pub running: u64,
    /// When the oldest waiting task was published (ms since the epoch).
    pub oldest_waiting_ms: Option<u64>,
    /// Whether a worker ever bound the queue's consumer (one that never did serves nothing).
    pub bound: bool,
}

/// The task queues holding tasks (plus `known` ones, reported at zero when empty), in name
/// order, at most `limit`: the task stream's messages per subject, split into waiting and
/// running by the queue's worker consumers (normal and high priority), and the publish time
/// of the oldest task no worker has taken.
pub async fn queue_backlog(
    b: &dyn Broker,
    s: &Subjects,
    known: &[String],
    limit: usize,
) -> Result<Vec<QueueBacklog>> {
    let stream = s.stream_tasks();
    let prefix = s.task("");
    let held = b.subjects(&stream, &format!("{prefix}>"), limit).await?;
    let mut queues: std::collections::BTreeMap<String, (u64, u64)> =
        known.iter().map(|q| (q.clone(), (0, u64::MAX))).collect();
    for h in held {
        let Some(queue) = h
            .subject
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        let e = queues.entry(queue.to_string()).or_insert((0, u64::MAX));
        e.0 += h.messages;
        e.1 = e.1.min(h.oldest_ms);
    }
    let mut out = Vec::with_capacity(queues.len().min(limit));
    for (queue, (stored, oldest_held)) in queues.into_iter().take(limit) {
        let mut q = QueueBacklog {
            queue,
            ..QueueBacklog::default()
        };
        for durable in [
            Subjects::consumer_workers(&q.queue),
            Subjects::consumer_workers_high(&q.queue),
        ] {
            match b.consumer_info(&stream, &durable).await {
                Ok(info) => {
                    q.bound = true;
                    q.running += info.num_ack_pending;
                    if let Some(t) = info.oldest_pending_ms {
                        q.oldest_waiting_ms = Some(q.oldest_waiting_ms.map_or(t, |o| o.min(t)));
                    }
                }
                Err(crate::Error::ConsumerNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !q.bound && stored > 0 {
            // No worker ever bound this queue: everything on it waits.
            q.oldest_waiting_ms = Some(oldest_held);
        }
        q.running = q.running.min(stored);
        q.waiting = stored - q.running;
        if q.waiting == 0 {
            q.oldest_waiting_ms = None;
        }
        out.push(q);
    }
    Ok(out)
}

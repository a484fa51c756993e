//! `kora serve`: scheduler, coordinator and worker roles as a long-running process on NATS
//! JetStream and PostgreSQL. Any number of processes may run any combination of roles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kora_broker::Broker;
use kora_broker::nats::{JetStreamBroker, NatsConfig};
use kora_broker::topology::{TopologyConfig, provision};
use kora_coordinator::Metrics;
use kora_model::subjects::Subjects;
use kora_nodes::{NodesConfig, Registry};
use kora_store::Store;
use kora_store::pg::{PgConfig, PgStore};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything `kora serve` reads, layered: these defaults < `--config` file (TOML) <
/// `KORA_SECTION__KEY` environment variables < flags (`KORA_NATS_URL`, `KORA_DATABASE_URL`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub nats: NatsSection,
    pub database: DatabaseSection,
    pub worker: WorkerSection,
    pub tasks: TasksSection,
    pub control: ControlSection,
    pub metrics: MetricsSection,
    /// Per-queue settings, `[queues.<name>]`: today, rate limits (read by coordinators; give
    /// every coordinator the same).
    pub queues: std::collections::BTreeMap<String, QueueSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// At most this many tasks a second are sent to the queue, across every coordinator.
    pub rate_per_sec: f64,
    /// Tasks that may be sent at once after the queue was idle.
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl ServeConfig {
    /// The coordinator's rate limits from `[queues.*]`.
    pub fn rate_limits(&self) -> std::collections::BTreeMap<String, kora_coordinator::RateLimit> {
        self.queues
            .iter()
            .map(|(q, s)| {
                (
                    q.clone(),
                    kora_coordinator::RateLimit {
                        per_sec: s.rate_per_sec,
                        burst: s.burst,
                    },
                )
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address for `GET /metrics` (Prometheus text) and `GET /healthz`, e.g. `0.0.0.0:9464`;
    /// empty (the default) serves nothing.
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// How long a scheduler or coordinator may hold a run request or ledger message before it
    /// is redelivered (to another instance): the recovery time after one of them crashes.
    /// Must exceed the longest ledger write (database.acquire_timeout_secs and more).
    pub ack_wait_secs: f64,
    /// A submission whose idempotency key names a run younger than this is that run; past
    /// it, the key is free again and makes a new run. Read by coordinators.
    pub idempotency_window_secs: f64,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            ack_wait_secs: 30.0,
            idempotency_window_secs: 86_400.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    /// Server URLs, comma-separated.
    pub url: String,
    /// Installation prefix of every subject, stream and consumer.
    pub prefix: String,
    /// Copies of each stream on a NATS cluster: 1, or 3 to survive losing a server (see
    /// docs/durability.md for what each costs). Applied when a stream is created or updated.
    pub replicas: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    pub url: String,
    pub max_connections: u32,
    /// How long a ledger write waits for a connection (PostgreSQL down or restarting) before
    /// the batch fails and is retried with backoff.
    pub acquire_timeout_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    pub queue: String,
    pub concurrency: usize,
    pub heartbeat_secs: f64,
    pub drain_grace_secs: f64,
    /// File nodes read only below this directory.
    pub data_root: PathBuf,
    pub python_workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TasksSection {
    /// How long a worker may hold a task without acking or heartbeating.
    pub ack_wait_secs: f64,
    /// Deliveries of one task (crashes, timeouts) before it is given up.
    pub max_deliver: u32,
}

impl Default for NatsSection {
    fn default() -> Self {
        NatsSection {
            url: "nats://127.0.0.1:4222".into(),
            prefix: kora_model::subjects::DEFAULT_PREFIX.into(),
            replicas: 1,
        }
    }
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: "postgres://127.0.0.1:5432/kora".into(),
            max_connections: 8,
            acquire_timeout_secs: 10.0,
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            queue: kora_model::subjects::DEFAULT_QUEUE.into(),
            concurrency: 16,
            heartbeat_secs: 10.0,
            drain_grace_secs: 30.0,
            data_root: PathBuf::from("."),
            python_workers: 2,
        }
    }
}

impl Default for TasksSection {
    fn default() -> Self {
        TasksSection {
            ack_wait_secs: 30.0,
            max_deliver: 5,
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        Subjects::new(&self.nats.prefix).map_err(anyhow::Error::msg)?;
        if self.worker.concurrency == 0 {
            bail!("worker.concurrency must be at least 1");
        }
        if !matches!(self.nats.replicas, 1..=5) {
            bail!(
                "nats.replicas must be between 1 and 5 (it is {}); use 3 on a three-server cluster",
                self.nats.replicas
            );
        }
        if !self.control.ack_wait_secs.is_finite() || self.control.ack_wait_secs < 1.0 {
            bail!(
                "control.ack_wait_secs must be at least 1 (it is {})",
                self.control.ack_wait_secs
            );
        }
        if !self.database.acquire_timeout_secs.is_finite()
            || self.database.acquire_timeout_secs <= 0.0
        {
            bail!(
                "database.acquire_timeout_secs must be more than 0 (it is {})",
                self.database.acquire_timeout_secs
            );
        }
        if !(self.control.idempotency_window_secs.is_finite()
            && self.control.idempotency_window_secs >= 0.0
            && self.control.idempotency_window_secs <= 10.0 * 365.0 * 86_400.0)
        {
            bail!(
                "control.idempotency_window_secs must be between 0 and ten years (it is {})",
                self.control.idempotency_window_secs
            );
        }
        for (q, s) in &self.queues {
            if !(s.rate_per_sec.is_finite() && s.rate_per_sec > 0.0 && s.rate_per_sec <= 1e6) {
                bail!(
                    "queues.{q}.rate_per_sec must be more than 0 and at most 1000000 (it is {})",
                    s.rate_per_sec
                );
            }
            if s.burst == 0 {
                bail!("queues.{q}.burst must be at least 1");
            }
        }
        if self.worker.heartbeat_secs * 2.0 > self.tasks.ack_wait_secs {
            bail!(
                "worker.heartbeat_secs ({}) must be at most half of tasks.ack_wait_secs ({}), or live tasks are redelivered",
                self.worker.heartbeat_secs,
                self.tasks.ack_wait_secs
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Scheduler,
    Coordinator,
    Worker,
}

/// Parses `scheduler,coordinator,worker` (any combination, `all` for every role).
pub fn parse_roles(s: &str) -> anyhow::Result<Vec<Role>> {
    let mut out = Vec::new();
    for r in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match r {
            "scheduler" => out.push(Role::Scheduler),
            "coordinator" => out.push(Role::Coordinator),
            "worker" => out.push(Role::Worker),
            "all" => out.extend([Role::Scheduler, Role::Coordinator, Role::Worker]),
            other => bail!("unknown role {other:?}: use scheduler, coordinator, worker or all"),
        }
    }
    if out.is_empty() {
        bail!("no role given: --role scheduler,coordinator,worker");
    }
    out.dedup();
    Ok(out)
}

pub async fn connect_broker(cfg: &ServeConfig, name: &str) -> anyhow::Result<Arc<dyn Broker>> {
    let b = JetStreamBroker::connect(&NatsConfig {
        url: cfg.nats.url.clone(),
        name: name.into(),
        ..NatsConfig::default()
    })
    .await
    .with_context(|| format!("cannot connect to NATS at {}", cfg.nats.url))?;
    Ok(Arc::new(b))
}

pub async fn connect_store(cfg: &ServeConfig) -> anyhow::Result<Arc<dyn Store>> {
    let s = PgStore::connect(&PgConfig {
        url: cfg.database.url.clone(),
        max_connections: cfg.database.max_connections,
        acquire_timeout: std::time::Duration::from_secs_f64(
            cfg.database.acquire_timeout_secs.clamp(0.1, 3600.0),
        ),
        ..PgConfig::default()
    })
    .await
    .with_context(|| {
        format!(
            "cannot open the ledger at {} (set KORA_DATABASE_URL)",
            cfg.database.url
        )
    })?;
    Ok(Arc::new(s))
}

/// Runs the roles until `shutdown` is cancelled, then drains them.
pub async fn serve(
    cfg: ServeConfig,
    roles: &[Role],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(cfg, roles, shutdown, Registry::empty()).await
}

/// [`serve`] with custom node types beside the built-in ones (a worker binary of your own:
/// `examples/custom-node`). Serve the scheduler role from it too, so runs using them validate.
pub async fn serve_with(
    cfg: ServeConfig,
    roles: &[Role],
    shutdown: CancellationToken,
    extra: Registry,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let subjects = Subjects::new(&cfg.nats.prefix).map_err(anyhow::Error::msg)?;
    let name = format!("kora-{}", std::process::id());
    let broker = connect_broker(&cfg, &name).await?;
    let topo = TopologyConfig {
        task_ack_wait: Duration::from_secs_f64(cfg.tasks.ack_wait_secs),
        task_max_deliver: cfg.tasks.max_deliver,
        control_ack_wait: Duration::from_secs_f64(cfg.control.ack_wait_secs),
        replicas: cfg.nats.replicas,
        ..TopologyConfig::default()
    };
    provision(
        broker.as_ref(),
        &subjects,
        &[cfg.worker.queue.as_str()],
        &topo,
    )
    .await
    .context("cannot provision Kora's streams and consumers")?;
    let nodes = NodesConfig {
        data_root: cfg.worker.data_root.clone(),
        python_workers: cfg.worker.python_workers,
        ..NodesConfig::default()
    };
    let mut registry = Registry::builtin(&nodes);
    registry.extend(&extra);
    let registry = Arc::new(registry);
    let catalog: Arc<dyn kora_model::Catalog + Send + Sync> = registry.clone();
    let tracker = TaskTracker::new();
    let metrics = Arc::new(Metrics::default());
    if !cfg.metrics.addr.is_empty() {
        let listener = crate::http::bind(&cfg.metrics.addr).await?;
        tracing::info!(addr = %cfg.metrics.addr, "serving /metrics and /healthz");
        tracker.spawn(crate::http::serve(
            listener,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    // One ledger pool for the process, opened by the first role that needs it.
    let mut ledger: Option<Arc<dyn Store>> = None;
    for role in roles {
        match role {
            Role::Scheduler => {
                // Triggers start runs by submitting them: they live with the scheduler role.
                let store = match &ledger {
                    Some(s) => Arc::clone(s),
                    None => {
                        let s = connect_store(&cfg).await?;
                        ledger = Some(Arc::clone(&s));
                        s
                    }
                };
                tracker.spawn(crate::triggers::run(
                    Arc::clone(&broker),
                    store,
                    subjects.clone(),
                    shutdown.clone(),
                ));
                tracker.spawn(log_exit(
                    "scheduler",
                    kora_scheduler::run(
                        kora_scheduler::Config::default(),
                        Arc::clone(&broker),
                        subjects.clone(),
                        Arc::clone(&catalog),
                        shutdown.clone(),
                    ),
                ));
            }
            Role::Coordinator => {
                let store = match &ledger {
                    Some(s) => Arc::clone(s),
                    None => {
                        let s = connect_store(&cfg).await?;
                        ledger = Some(Arc::clone(&s));
                        s
                    }
                };
                tracker.spawn(log_exit(
                    "coordinator",
                    kora_coordinator::run(
                        kora_coordinator::Config {
                            rate_limits: cfg.rate_limits(),
                            idempotency_window: Duration::from_secs_f64(
                                cfg.control.idempotency_window_secs,
                            ),
                            ..kora_coordinator::Config::default()
                        },
                        Arc::clone(&broker),
                        store,
                        subjects.clone(),
                        Arc::clone(&catalog),
                        Arc::clone(&metrics),
                        shutdown.clone(),
                    ),
                ));
            }
            Role::Worker => {
                let wcfg = kora_worker::Config {
                    worker_id: name.clone(),
                    queue: cfg.worker.queue.clone(),
                    concurrency: cfg.worker.concurrency,
                    heartbeat: Duration::from_secs_f64(cfg.worker.heartbeat_secs),
                    drain_grace: Duration::from_secs_f64(cfg.worker.drain_grace_secs),
                    ..kora_worker::Config::default()
                };
                tracker.spawn(log_exit(
                    "worker",
                    kora_worker::run(
                        wcfg,
                        Arc::clone(&broker),
                        subjects.clone(),
                        Arc::clone(&registry),
                        shutdown.clone(),
                    ),
                ));
            }
        }
    }
    tracing::info!(?roles, prefix = %cfg.nats.prefix, nats = %cfg.nats.url, "kora serving");
    tracker.close();
    tracker.wait().await;
    broker.flush().await.ok();
    tracing::info!("kora stopped");
    Ok(())
}

/// Logs a role that stopped with an error (a role that returns is otherwise silent).
pub(crate) async fn log_exit<E: std::fmt::Display>(
    role: &'static str,
    f: impl std::future::Future<Output = Result<(), E>>,
) {
    if let Err(e) = f.await {
        tracing::error!(role, error = %e, "role stopped with an error");
    }
}

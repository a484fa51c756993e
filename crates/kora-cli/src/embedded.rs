//! The whole engine in one process: the same roles as a distributed deployment, wired by
//! [`kora_server::start`], joined by the in-memory broker, with a memory or SQLite ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kora_broker::Broker;
use kora_broker::memory::MemoryBroker;
use kora_broker::topology::{TopologyConfig, provision};
use kora_coordinator::{Metrics, RateLimit};
use kora_model::subjects::{DEFAULT_QUEUE, Subjects};
use kora_model::{Map, WorkflowSpec};
use kora_nodes::{NodesConfig, Registry};
use kora_server::{Deps, Health, Role, RoleSettings, Supervisor};
use kora_store::Store;
use tokio_util::sync::CancellationToken;

use kora_client::runs as client;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `memory` or `sqlite:PATH`.
    pub store: String,
    pub nodes: NodesConfig,
    /// Worker loops; each runs up to `concurrency` tasks at once.
    pub workers: usize,
    pub concurrency: usize,
    /// Largest message on any stream; a node whose inputs or output would exceed it (less a
    /// small margin) fails with `TaskTooLarge` or `OutputTooLarge`.
    pub max_message_bytes: usize,
    /// Task rate limits by queue name.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// `[tasks]`: the execution limit of a node that sets none (`default_timeout`, and per
    /// queue `timeouts`).
    pub tasks: kora_broker::topology::TasksConfig,
    /// Input limits run requests are checked against.
    pub limits: kora_model::Limits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: "memory".into(),
            nodes: NodesConfig::default(),
            workers: 1,
            concurrency: 64,
            max_message_bytes: 8 << 20,
            rate_limits: BTreeMap::new(),
            tasks: kora_broker::topology::TasksConfig::default(),
            limits: kora_model::Limits::default(),
        }
    }
}

pub use kora_client::RunReport;

pub struct Engine {
    pub broker: Arc<dyn Broker>,
    pub subjects: Subjects,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    roles: Supervisor,
}

/// The run events the embedded broker keeps.
const EMBEDDED_EVENTS_BYTES: u64 = 8 << 20;

impl Engine {
    pub async fn start(cfg: EngineConfig) -> anyhow::Result<Self> {
        let store = kora_store::open(&cfg.store)
            .await
            .with_context(|| format!("cannot open the ledger {}", cfg.store))?;
        Self::start_with(cfg, store, Registry::empty()).await
    }

    /// Starts with a given ledger and the built-in nodes configured by `cfg.nodes`, plus any
    /// custom nodes already in `extra`.
    pub async fn start_with(
        cfg: EngineConfig,
        store: Arc<dyn Store>,
        extra: Registry,
    ) -> anyhow::Result<Self> {
        let mut registry = Registry::builtin(&cfg.nodes);
        registry.extend(&extra);
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        let subjects = Subjects::default();
        // Embedded runs are short: an unacked task comes back quickly after a worker panic.
        // Its events are for waiting on runs as they happen; the ledger keeps them all, so
        // the broker keeps only the newest (a 100,000-node run publishes ~20 MiB of them).
        let topo = TopologyConfig {
            task_ack_wait: Duration::from_secs(60),
            events_max_bytes: Some(EMBEDDED_EVENTS_BYTES),
            max_msg_size: cfg.max_message_bytes,
            ..TopologyConfig::default()
        };
        provision(broker.as_ref(), &subjects, &[DEFAULT_QUEUE], &topo).await?;
        let payload_limit = kora_server::payload_limit(cfg.max_message_bytes);
        let settings = RoleSettings {
            scheduler: kora_scheduler::Config {
                limits: cfg.limits.clone(),
                ..kora_scheduler::Config::default()
            },
            coordinator: kora_coordinator::Config {
                max_task_bytes: payload_limit,
                rate_limits: cfg.rate_limits.clone(),
                default_timeout: cfg.tasks.default_limit(),
                queue_timeouts: cfg.tasks.timeouts.clone(),
                // No /metrics in one process: nothing to sample for.
                sample_interval: Duration::ZERO,
                ..kora_coordinator::Config::default()
            },
            worker: kora_worker::Config {
                worker_id: "embedded".into(),
                concurrency: cfg.concurrency,
                drain_grace: Duration::from_secs(5),
                max_result_bytes: payload_limit,
                ..kora_worker::Config::default()
            },
            worker_loops: cfg.workers.max(1),
            gateway: None,
        };
        let deps = Deps {
            broker: Arc::clone(&broker),
            subjects: subjects.clone(),
            ledger: Some(Arc::clone(&store)),
            registry: Arc::new(registry),
            metrics: Arc::new(Metrics::default()),
            worker_metrics: Arc::default(),
            scheduler_metrics: Arc::default(),
            alerts: None,
            triggers: false,
            exported: None,
        };
        let shutdown = CancellationToken::new();
        let roles = kora_server::start(
            &Role::ENGINE,
            &settings,
            &deps,
            &shutdown,
            Arc::new(Health::default()),
        )?;
        Ok(Engine {
            broker,
            subjects,
            store,
            registry: deps.registry,
            metrics: deps.metrics,
            shutdown,
            roles,
        })
    }

    /// Submits a run and waits for it to finish.
    pub async fn run(&self, workflow: WorkflowSpec, params: Map) -> anyhow::Result<RunReport> {
        let run_id = uuid::Uuid::now_v7().to_string();
        self.run_with_id(workflow, params, run_id).await
    }

    pub async fn run_with_id(
        &self,
        workflow: WorkflowSpec,
        params: Map,
        run_id: String,
    ) -> anyhow::Result<RunReport> {
        let ids: Vec<String> = workflow.nodes.iter().map(|n| n.id.clone()).collect();
        let may_amend = kora_model::exits::may_amend(&workflow);
        let from = client::events_position(self.broker.as_ref(), &self.subjects).await?;
        let submission = client::Submission {
            run_id: run_id.clone(),
            ..client::Submission::new(workflow, params)
        };
        client::submit(self.broker.as_ref(), &self.subjects, submission).await?;
        let ending = client::wait(&self.broker, &self.subjects, &run_id, from, None).await?;
        Ok(RunReport::build(self.store.as_ref(), run_id, &ids, may_amend, ending).await?)
    }

    /// Stops the roles (they drain) and waits for them; a role that failed meanwhile is the
    /// error.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        Ok(self.roles.wait().await?)
    }
}

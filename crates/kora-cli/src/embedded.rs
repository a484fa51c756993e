//! The whole engine in one process: the same role code as a distributed deployment, joined by
//! the in-memory broker, with a memory or SQLite ledger.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kora_broker::Broker;
use kora_broker::memory::MemoryBroker;
use kora_broker::topology::{TopologyConfig, provision};
use kora_coordinator::Metrics;
use kora_model::subjects::{DEFAULT_QUEUE, Subjects};
use kora_model::{Map, WorkflowSpec};
use kora_nodes::{NodesConfig, Registry};
use kora_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client;

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
    pub rate_limits: std::collections::BTreeMap<String, kora_coordinator::RateLimit>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            store: "memory".into(),
            nodes: NodesConfig::default(),
            workers: 1,
            concurrency: 64,
            max_message_bytes: 8 << 20,
            rate_limits: Default::default(),
        }
    }
}

pub use crate::client::RunReport;

pub struct Engine {
    pub broker: Arc<dyn Broker>,
    pub subjects: Subjects,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

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
        let registry = Arc::new(registry);
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        let subjects = Subjects::default();
        // Embedded runs are short: an unacked task comes back quickly after a worker panic.
        let topo = TopologyConfig {
            task_ack_wait: Duration::from_secs(60),
            max_msg_size: cfg.max_message_bytes,
            ..TopologyConfig::default()
        };
        // Headroom for subject, headers and the wire envelope.
        let payload_limit = cfg
            .max_message_bytes
            .saturating_sub((cfg.max_message_bytes / 64).min(64 << 10));
        provision(broker.as_ref(), &subjects, &[DEFAULT_QUEUE], &topo).await?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Arc::new(Metrics::default());
        let catalog: Arc<dyn kora_model::Catalog + Send + Sync> = registry.clone();
        let sched_cfg = kora_scheduler::Config::default();
        tracker.spawn(crate::serve::log_exit(
            "scheduler",
            kora_scheduler::run(
                sched_cfg,
                Arc::clone(&broker),
                subjects.clone(),
                Arc::clone(&catalog),
                shutdown.clone(),
            ),
        ));
        tracker.spawn(crate::serve::log_exit(
            "coordinator",
            kora_coordinator::run(
                kora_coordinator::Config {
                    max_task_bytes: payload_limit,
                    rate_limits: cfg.rate_limits.clone(),
                    ..kora_coordinator::Config::default()
                },
                Arc::clone(&broker),
                Arc::clone(&store),
                subjects.clone(),
                catalog,
                Arc::clone(&metrics),
                shutdown.clone(),
            ),
        ));
        for i in 0..cfg.workers.max(1) {
            let wcfg = kora_worker::Config {
                worker_id: format!("embedded-{i}"),
                concurrency: cfg.concurrency,
                drain_grace: Duration::from_secs(5),
                max_result_bytes: payload_limit,
                ..kora_worker::Config::default()
            };
            tracker.spawn(crate::serve::log_exit(
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
        Ok(Engine {
            broker,
            subjects,
            store,
            registry,
            metrics,
            shutdown,
            tracker,
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
        let from = client::events_position(self.broker.as_ref(), &self.subjects).await?;
        client::submit(
            self.broker.as_ref(),
            &self.subjects,
            workflow,
            params,
            None,
            run_id.clone(),
        )
        .await?;
        let ending = client::wait(&self.broker, &self.subjects, &run_id, from, None).await?;
        RunReport::build(self.store.as_ref(), run_id, &ids, ending).await
    }

    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

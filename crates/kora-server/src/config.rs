//! Everything `kora serve` reads: one section per owner, each crate's own `Config` with its own
//! checks, layered by `kora_runtime::config` (defaults < `--config` TOML file <
//! `KORA_SECTION__KEY` environment variables < flags).

use std::collections::BTreeMap;
use std::path::Path;

use kora_broker::nats::NatsConfig;
use kora_broker::topology::{ControlConfig, TasksConfig, TopologyConfig};
use kora_coordinator::RateLimit;
use kora_nodes::NodesConfig;
use kora_store::pg::PgConfig;
use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `development` (the default) or `production`: in production `kora serve` runs the
    /// deployment checks (`kora check`) at start-up and refuses to start while one fails.
    pub environment: crate::check::Environment,
    /// Failed checks to start despite, each logged (`[checks] allow = ["stream-replicas"]`).
    pub checks: crate::check::ChecksConfig,
    /// The configuration file this was read from (set by [`ServerConfig::load`]).
    #[serde(skip)]
    pub source_file: Option<std::path::PathBuf>,
    /// The NATS connection and the installation on it (`kora_broker`).
    pub nats: NatsConfig,
    /// The ledger's PostgreSQL (`kora_store`).
    pub database: PgConfig,
    /// How the task stream delivers to workers (`kora_broker`).
    pub tasks: TasksConfig,
    /// How the run-request and ledger streams deliver (`kora_broker`).
    pub control: ControlConfig,
    pub scheduler: kora_scheduler::Config,
    pub coordinator: kora_coordinator::Config,
    pub worker: kora_worker::Config,
    /// Settings of the built-in nodes (`kora_nodes`).
    pub nodes: NodesConfig,
    /// Per-queue rate limits, `[queues.<name>]`, read by coordinators (give every coordinator
    /// the same).
    pub queues: BTreeMap<String, RateLimit>,
    pub metrics: MetricsConfig,
    /// What coordinators watch for: stuck runs, anomalies, backlogs (`kora_coordinator`).
    pub monitoring: kora_coordinator::MonitoringConfig,
    /// Where their alerts go (`crate::alerts`).
    pub alerts: crate::alerts::AlertsConfig,
    /// Where spans go (`kora_runtime::telemetry`; read from the environment at start-up).
    pub tracing: kora_runtime::telemetry::TracingConfig,
    /// The HTTP API (`kora_gateway`).
    pub gateway: kora_gateway::GatewayConfig,
    /// Input limits (`kora_model`): checked by schedulers and gateways (give every role the
    /// same).
    pub limits: kora_model::Limits,
}

/// `[metrics]`: the operator endpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address for `GET /metrics` (Prometheus text) and `GET /healthz`, e.g. `0.0.0.0:9464`;
    /// empty (the default) serves nothing.
    pub addr: String,
}

/// Keys an earlier release read, and where they went.
pub const MOVED: &[(&str, &str)] = &[
    (
        "control.idempotency_window_secs",
        "coordinator.idempotency_window",
    ),
    (
        "control.idempotency_window",
        "coordinator.idempotency_window",
    ),
    ("worker.data_root", "nodes.data_root"),
    ("worker.python_workers", "nodes.python_workers"),
    ("worker.heartbeat_secs", "worker.heartbeat"),
    ("worker.drain_grace_secs", "worker.drain_grace"),
    ("tasks.ack_wait_secs", "tasks.ack_wait"),
    ("tasks.default_timeout_secs", "tasks.default_timeout"),
    ("control.ack_wait_secs", "control.ack_wait"),
    ("database.acquire_timeout_secs", "database.acquire_timeout"),
];

impl ServerConfig {
    /// Layers the sources, then checks every section.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: serde_json::Value,
    ) -> Result<ServerConfig, Error> {
        let mut cfg: ServerConfig = kora_runtime::config::Loader::new("KORA", env)
            .file(file)
            .flags(flags)
            .moved(MOVED)
            .load()
            .map_err(|e| Error::Config(e.to_string()))?;
        cfg.source_file = file.map(Path::to_path_buf);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every section's own checks, and the ones between sections.
    pub fn validate(&self) -> Result<(), Error> {
        let checks = [
            self.nats.validate(),
            self.database.validate(),
            self.tasks.validate(),
            self.control.validate(),
            self.scheduler.validate(),
            self.coordinator.validate(),
            self.monitoring.validate(),
            self.alerts.validate(),
            self.worker.validate(self.tasks.ack_wait),
            self.nodes.validate(),
            self.gateway.validate(),
            self.limits.validate(),
            self.checks.validate(),
        ];
        for c in checks {
            c.map_err(Error::Config)?;
        }
        for (queue, limit) in &self.queues {
            limit.validate(queue).map_err(Error::Config)?;
        }
        Ok(())
    }

    /// The streams and consumers this configuration provisions.
    pub fn topology(&self) -> TopologyConfig {
        TopologyConfig::of(&self.nats, &self.tasks, &self.control)
    }

    /// What the roles of a process named `name` run with.
    pub fn roles(&self, name: &str) -> crate::RoleSettings {
        let topo = self.topology();
        let payload_limit = crate::payload_limit(topo.max_msg_size);
        crate::RoleSettings {
            scheduler: kora_scheduler::Config {
                limits: self.limits.clone(),
                ..self.scheduler.clone()
            },
            coordinator: kora_coordinator::Config {
                rate_limits: self.queues.clone(),
                default_timeout: self.tasks.default_limit(),
                queue_timeouts: self.tasks.timeouts.clone(),
                max_task_bytes: payload_limit,
                monitoring: self.monitoring.clone(),
                ..self.coordinator.clone()
            },
            worker: kora_worker::Config {
                worker_id: name.to_string(),
                max_result_bytes: payload_limit,
                ..self.worker.clone()
            },
            worker_loops: 1,
            gateway: Some(kora_gateway::GatewayConfig {
                input_limits: self.limits.clone(),
                stuck_after_secs: self.monitoring.stuck_after_secs,
                retry_loop_attempts: self.monitoring.retry_loop_attempts,
                ..self.gateway.clone()
            }),
        }
    }
}

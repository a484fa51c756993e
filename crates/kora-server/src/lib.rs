//! Wires Kora's roles, once: [`start`] runs the scheduler, coordinator and workers a process
//! serves on a broker and a ledger it is given, under one [`supervise::Supervisor`]; `kora run`
//! calls it with the in-memory broker and an embedded ledger, and [`serve`] (`kora serve`)
//! with NATS JetStream and PostgreSQL, its configuration ([`config::ServerConfig`]), health and
//! the operator endpoint ([`http`]).
//!
//! Owns: which role gets which settings, connecting to the services, the process's metrics
//! registry, each role's health, and ending the process when a role fails (after the others
//! drained).
//!
//! Must not: implement engine logic. Roles talk only through the broker and the ledger, as
//! separate processes would.

pub mod alerts;
pub mod check;
pub mod config;
pub mod health;
pub mod http;
pub mod metered;
pub mod ready;
pub mod roles;
pub mod supervise;

use std::sync::Arc;

use kora_broker::Broker;
use kora_broker::nats::JetStreamBroker;
use kora_broker::topology::provision;
use kora_coordinator::Metrics;
use kora_model::subjects::Subjects;
use kora_nodes::Registry;
use kora_store::Store;
use kora_store::pg::PgStore;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio_util::sync::CancellationToken;

pub use config::ServerConfig;
pub use health::Health;
pub use roles::{Role, parse_roles};
pub use supervise::Supervisor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to NATS at {url}: {source}")]
    Nats {
        url: String,
        source: kora_broker::Error,
    },
    #[error("cannot provision Kora's streams and consumers: {0}")]
    Provision(kora_broker::Error),
    #[error("cannot open the ledger at {url} (set KORA_DATABASE_URL): {source}")]
    Ledger {
        url: String,
        source: kora_store::Error,
    },
    #[error(
        "refusing to start in production: {0}\nfix each (kora check lists them), or name a check in checks.allow to start despite it"
    )]
    Checks(String),
    #[error("role {role} failed: {error}")]
    RoleFailed { role: String, error: String },
    #[error(transparent)]
    Broker(#[from] kora_broker::Error),
}

/// What the roles of one process run with.
#[derive(Debug, Clone, Default)]
pub struct RoleSettings {
    pub scheduler: kora_scheduler::Config,
    pub coordinator: kora_coordinator::Config,
    pub worker: kora_worker::Config,
    /// Worker loops in this process (each runs up to `worker.concurrency` tasks).
    pub worker_loops: usize,
    /// The gateway's settings, for a process serving it.
    pub gateway: Option<kora_gateway::GatewayConfig>,
}

/// What the roles share: the broker, the ledger (the coordinator writes it; the scheduler
/// reads triggers from it), the node types, and the coordinator's metrics.
#[derive(Clone)]
pub struct Deps {
    pub broker: Arc<dyn Broker>,
    pub subjects: Subjects,
    pub ledger: Option<Arc<dyn Store>>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub worker_metrics: Arc<kora_worker::WorkerMetrics>,
    pub scheduler_metrics: Arc<kora_scheduler::SchedulerMetrics>,
    /// Where the coordinator's monitor sends alerts (`[alerts]`); none for `kora run`.
    pub alerts: Option<Arc<dyn kora_coordinator::AlertSink>>,
    /// Whether schedulers follow the ledger's triggers (`kora serve`; not `kora run`).
    pub triggers: bool,
    /// The process's exported metrics (the gateway serves them on `/metrics` and adds its
    /// own): `kora serve`'s, none for `kora run`.
    pub exported: Option<Exported>,
}

/// The metrics a served process exports.
#[derive(Clone)]
pub struct Exported {
    pub registry: Arc<MetricsRegistry>,
    pub gateway: Arc<kora_gateway::GatewayMetrics>,
}

/// Starts `roles` under a supervisor whose roles stop when `shutdown` is cancelled.
pub fn start(
    roles: &[Role],
    settings: &RoleSettings,
    deps: &Deps,
    shutdown: &CancellationToken,
    health: Arc<Health>,
) -> Result<Supervisor, Error> {
    let sup = Supervisor::new(shutdown, health);
    let catalog: Arc<dyn kora_model::Catalog + Send + Sync> = deps.registry.clone();
    for role in roles {
        match role {
            Role::Scheduler => sup.spawn(
                role.as_str(),
                kora_scheduler::run(
                    settings.scheduler.clone(),
                    Arc::clone(&deps.broker),
                    deps.subjects.clone(),
                    Arc::clone(&catalog),
                    deps.ledger.clone().filter(|_| deps.triggers),
                    Arc::clone(&deps.scheduler_metrics),
                    sup.token(),
                ),
            ),
            Role::Coordinator => {
                let Some(ledger) = &deps.ledger else {
                    return Err(Error::Config(
                        "the coordinator role needs the ledger".into(),
                    ));
                };
                sup.spawn(
                    role.as_str(),
                    kora_coordinator::run(
                        settings.coordinator.clone(),
                        Arc::clone(&deps.broker),
                        Arc::clone(ledger),
                        deps.subjects.clone(),
                        Arc::clone(&catalog),
                        Arc::clone(&deps.metrics),
                        deps.alerts.clone(),
                        sup.token(),
                    ),
                );
            }
            Role::Worker => {
                let loops = settings.worker_loops.max(1);
                for i in 0..loops {
                    let mut cfg = settings.worker.clone();
                    let name = if loops == 1 {
                        "worker".to_string()
                    } else {
                        cfg.worker_id = format!("{}-{i}", cfg.worker_id);
                        format!("worker-{i}")
                    };
                    sup.spawn(
                        &name,
                        kora_worker::run(
                            cfg,
                            Arc::clone(&deps.broker),
                            deps.subjects.clone(),
                            Arc::clone(&deps.registry),
                            Arc::clone(&deps.worker_metrics),
                            sup.token(),
                        ),
                    );
                }
            }
            Role::Gateway => {
                let (Some(cfg), Some(ledger)) = (&settings.gateway, &deps.ledger) else {
                    return Err(Error::Config(
                        "the gateway role needs its settings and the ledger".into(),
                    ));
                };
                let gw = kora_gateway::Deps {
                    store: Arc::clone(ledger),
                    broker: Arc::clone(&deps.broker),
                    subjects: deps.subjects.clone(),
                    catalog: Arc::clone(&catalog),
                    registry: deps.exported.as_ref().map(|e| Arc::clone(&e.registry)),
                    metrics: deps.exported.as_ref().map_or_else(
                        || Arc::new(kora_gateway::GatewayMetrics::unregistered()),
                        |e| Arc::clone(&e.gateway),
                    ),
                };
                sup.spawn(
                    role.as_str(),
                    kora_gateway::run(cfg.clone(), gw, sup.token()),
                );
            }
        }
    }
    Ok(sup)
}

/// The payload a message may carry under a stream limit of `max_msg_size`: headroom for the
/// subject, headers and the wire envelope.
pub fn payload_limit(max_msg_size: usize) -> usize {
    max_msg_size.saturating_sub((max_msg_size / 64).min(64 << 10))
}

/// `kora serve`: runs `roles` on NATS JetStream and PostgreSQL until `shutdown` is cancelled
/// (then drains) or a role fails (then the others drain and its failure is returned). `extra`
/// holds node types beside the built-in ones (a worker binary of your own).
pub async fn serve(
    cfg: ServerConfig,
    roles: &[Role],
    extra: Registry,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    cfg.validate()?;
    if cfg.environment == check::Environment::Production {
        let findings = Box::pin(check::run(&cfg, roles)).await;
        for f in findings
            .iter()
            .filter(|f| f.status == check::Status::Allowed)
        {
            tracing::warn!(check = f.check, detail = %f.detail, "starting despite a failed deployment check (checks.allow)");
        }
        let failed: Vec<String> = findings
            .iter()
            .filter(|f| f.status == check::Status::Failed)
            .map(|f| format!("{}: {} (fix: {})", f.check, f.detail, f.fix))
            .collect();
        if !failed.is_empty() {
            return Err(Error::Checks(failed.join("; ")));
        }
    }
    if !cfg.tracing.otlp_endpoint.is_empty() && !kora_broker::trace::enabled() {
        tracing::warn!(
            "tracing.otlp_endpoint is set but this process exports no spans: `kora serve` installs the exporter itself; a binary of your own calls kora_runtime::telemetry::export_to (or sets KORA_TRACING__OTLP_ENDPOINT)"
        );
    }
    let subjects = cfg.nats.subjects();
    let name = format!("kora-{}", std::process::id());
    let nats = kora_broker::nats::NatsConfig {
        name: name.clone(),
        ..cfg.nats.clone()
    };
    let nats_broker: Arc<dyn Broker> = Arc::new(JetStreamBroker::connect(&nats).await.map_err(
        |source| Error::Nats {
            url: kora_broker::nats_auth::redact_url(&cfg.nats.url),
            source,
        },
    )?);
    let mut metrics_registry = MetricsRegistry::with_prefix("kora");
    let broker: Arc<dyn Broker> = Arc::new(metered::Metered::new(
        nats_broker,
        &cfg.nats.prefix,
        Arc::new(metered::PublishMetrics::registered(&mut metrics_registry)),
    ));
    if cfg.nats.provision {
        provision(
            broker.as_ref(),
            &subjects,
            &[cfg.worker.queue.as_str()],
            &cfg.topology(),
        )
        .await
        .map_err(Error::Provision)?;
    } else {
        let consumers: Vec<(String, String)> = roles
            .iter()
            .flat_map(|r| r.consumers(&subjects, &cfg.worker.queue))
            .collect();
        kora_broker::topology::verify(broker.as_ref(), &consumers)
            .await
            .map_err(Error::Provision)?;
    }
    let mut registry = Registry::builtin(&cfg.nodes);
    registry.extend(&extra);
    let registry = Arc::new(registry);
    if roles.contains(&Role::Gateway) {
        cfg.gateway.validate_for_serving().map_err(Error::Config)?;
    }
    let metrics = Arc::new(Metrics::registered(&mut metrics_registry));
    let worker_metrics = Arc::new(kora_worker::WorkerMetrics::registered(
        &mut metrics_registry,
        &registry,
    ));
    let scheduler_metrics = Arc::new(kora_scheduler::SchedulerMetrics::registered(
        &mut metrics_registry,
    ));
    let gateway_metrics = Arc::new(kora_gateway::GatewayMetrics::registered(
        &mut metrics_registry,
    ));
    let metrics_registry = Arc::new(metrics_registry);
    let ledger: Option<Arc<dyn Store>> = if roles
        .iter()
        .any(|r| matches!(r, Role::Coordinator | Role::Scheduler | Role::Gateway))
    {
        let ledger_error = |source| Error::Ledger {
            url: kora_store::pg::redact(&cfg.database.url),
            source,
        };
        if let Some(name) = PgStore::create_database_if_missing(&cfg.database)
            .await
            .map_err(ledger_error)?
        {
            tracing::info!(database = %name, "created the ledger database, which did not exist");
        }
        let store = PgStore::connect(&cfg.database)
            .await
            .map_err(ledger_error)?;
        Some(Arc::new(store))
    } else {
        None
    };
    let alerts = cfg.alerts.sink(&registry);
    let deps = Deps {
        broker: Arc::clone(&broker),
        subjects,
        ledger,
        registry,
        metrics,
        worker_metrics,
        scheduler_metrics,
        alerts,
        triggers: true,
        exported: Some(Exported {
            registry: Arc::clone(&metrics_registry),
            gateway: gateway_metrics,
        }),
    };
    let health = Arc::new(Health::default());
    let listener = if cfg.metrics.addr.is_empty() {
        None
    } else {
        Some(http::bind(&cfg.metrics.addr).await?)
    };
    let sup = start(
        roles,
        &cfg.roles(&name),
        &deps,
        &shutdown,
        Arc::clone(&health),
    )?;
    // The endpoint stays up while the roles drain, so /healthz reports them until the end.
    let http_stop = CancellationToken::new();
    let endpoint = listener.map(|listener| {
        tracing::info!(addr = %cfg.metrics.addr, "serving /metrics and /healthz");
        let ready = ready::Readiness::new(
            Arc::clone(&broker),
            deps.ledger.clone(),
            &deps.subjects,
            roles,
            &cfg.worker.queue,
        );
        let router = http::router(
            Arc::clone(&metrics_registry),
            Arc::clone(&health),
            Some(Arc::new(ready)),
        );
        tokio::spawn(http::serve(listener, router, http_stop.clone()))
    });
    let roles_text: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    tracing::info!(roles = %roles_text.join(","), prefix = %cfg.nats.prefix, nats = %cfg.nats.url, "kora serving");
    let done = sup.wait().await;
    broker.flush().await.ok();
    http_stop.cancel();
    if let Some(endpoint) = endpoint
        && let Ok(Err(e)) = endpoint.await
    {
        tracing::warn!(error = %e, "the /metrics endpoint failed");
    }
    tracing::info!("kora stopped");
    done
}

//! `kora serve`: roles as a long-running process on NATS JetStream and PostgreSQL.

use std::path::PathBuf;
use std::process::ExitCode;

use kora_nodes::Registry;

use crate::args::Conn;
use crate::render::note;

pub(crate) struct Args {
    pub(crate) role: String,
    pub(crate) conn: Conn,
    pub(crate) queue: Option<String>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) data_root: Option<PathBuf>,
    pub(crate) metrics_addr: Option<String>,
}

pub(crate) async fn serve(a: Args) -> anyhow::Result<ExitCode> {
    let roles = kora_server::parse_roles(&a.role)?;
    let mut extra = serde_json::json!({});
    if let Some(q) = a.queue {
        extra["worker"]["queue"] = q.into();
    }
    if let Some(c) = a.concurrency {
        extra["worker"]["concurrency"] = c.into();
    }
    if let Some(d) = a.data_root {
        extra["nodes"]["data_root"] = d.display().to_string().into();
    }
    if let Some(addr) = a.metrics_addr {
        extra["metrics"]["addr"] = addr.into();
    }
    let cfg = a.conn.load(extra)?;
    // An endpoint from the configuration file (the environment's was set up at start).
    let telemetry = (!cfg.tracing.otlp_endpoint.is_empty() && !kora_broker::trace::enabled())
        .then(|| {
            kora_runtime::telemetry::export_to(
                &cfg.tracing.otlp_endpoint,
                &format!("kora-{}", a.role),
            )
        })
        .filter(kora_runtime::telemetry::Telemetry::exporting);
    if telemetry.is_some() {
        kora_broker::trace::enable();
    }
    let code = Box::pin(run(cfg, &roles)).await;
    // Flushing joins the exporter's blocking HTTP client: off the runtime's threads.
    if let Some(t) = telemetry {
        let _ = tokio::task::spawn_blocking(move || drop(t)).await;
    }
    code
}

async fn run(
    cfg: kora_server::ServerConfig,
    roles: &[kora_server::Role],
) -> anyhow::Result<ExitCode> {
    let token = tokio_util::sync::CancellationToken::new();
    let second = kora_runtime::shutdown::install(token.clone());
    tokio::select! {
        r = kora_server::serve(cfg, roles, Registry::empty(), token) => match r {
            Ok(()) => Ok(ExitCode::SUCCESS),
            // The other roles drained; the process ends with the failure.
            Err(e @ kora_server::Error::RoleFailed { .. }) => {
                note(&format!("error: {e}"));
                Ok(ExitCode::from(crate::EXIT_FAILED))
            }
            Err(e) => Err(e.into()),
        },
        _ = second => {
            note("second signal: stopping without draining");
            Ok(ExitCode::from(130))
        }
    }
}

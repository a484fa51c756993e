//! `kora run`: a workflow in this process, results printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kora_cli::embedded::{Engine, EngineConfig};
use kora_cli::input;
use kora_model::Severity;
use kora_nodes::{NodesConfig, Registry};

use super::{exit_of, print_report};
use crate::args::Format;
use crate::render::note;

pub(crate) struct Args {
    pub(crate) file: PathBuf,
    pub(crate) params: Option<String>,
    pub(crate) store: String,
    pub(crate) data_root: Option<PathBuf>,
    pub(crate) python_workers: usize,
    pub(crate) timeout: Option<Duration>,
}

pub(crate) async fn run(a: Args, format: Format) -> anyhow::Result<ExitCode> {
    let local = kora_cli::settings::Local::from_env()?;
    let (spec, _) = input::load_workflow(&a.file, &local.limits)?;
    let params = input::load_params(a.params.as_deref(), &local.limits)?;
    let root = a.data_root.unwrap_or_else(|| {
        a.file
            .parent()
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let nodes = NodesConfig {
        data_root: root,
        python_workers: a.python_workers,
        ..NodesConfig::default()
    };
    nodes.validate().map_err(anyhow::Error::msg)?;
    let registry = Registry::builtin(&nodes);
    let problems = kora_model::validate_within(&spec, &registry, Some(&params), &local.limits);
    let errors: Vec<_> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        note(&format!(
            "error: {} has {} problem(s):",
            a.file.display(),
            errors.len()
        ));
        for p in errors {
            note(&format!("  - {p}"));
        }
        note(&format!(
            "(run `kora validate {}` for details, `kora nodes` for node types)",
            a.file.display()
        ));
        return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
    }
    let engine = Engine::start(EngineConfig {
        store: a.store,
        nodes,
        tasks: local.tasks.clone(),
        limits: local.limits.clone(),
        ..EngineConfig::default()
    })
    .await?;
    let run = engine.run(spec, params);
    let report = match a.timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(r) => r?,
            Err(_) => {
                note(&format!(
                    "error: the run did not finish within {}",
                    kora_model::duration::format(t)
                ));
                engine.shutdown().await?;
                return Ok(ExitCode::from(crate::EXIT_FAILED));
            }
        },
        None => run.await?,
    };
    engine.shutdown().await?;
    print_report(&report, format)?;
    Ok(exit_of(&report.status))
}

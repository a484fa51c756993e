//! `kora`: run Kailash-style workflows, embedded in one process or on a fleet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kora_cli::embedded::{Engine, EngineConfig};
use kora_cli::{input, output};
use kora_model::{Catalog, Severity};
use kora_nodes::{NodesConfig, Registry};

/// Exit code for a run that finished but failed.
const EXIT_RUN_FAILED: u8 = 1;
/// Exit code for unusable input: a missing file, a malformed or invalid workflow, bad flags.
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "kora",
    version,
    about = "Kora runs Kailash-style workflows: a graph of nodes (id, type, config) joined by connections.",
    long_about = "Kora runs Kailash-style workflows: a graph of nodes (id, type, config) joined by \
connections (source, output path, target, input).\n\n\
It reads workflows in every shape Kailash writes (Workflow.to_dict, WorkflowBuilder.from_dict, \
export_workflow) and Kora's own, as JSON or YAML.\n\n\
Start here:\n  kora run examples/customer-routing/workflow.yaml\n  kora validate my-workflow.json\n  kora nodes",
    after_help = "Exit codes: 0 success, 1 the run failed, 2 unusable input.\nLogs go to stderr; set KORA_LOG=info (or debug) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Json,
    Table,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow in this process and print its results.
    ///
    /// The whole engine (scheduler, coordinator, workers) runs embedded with an in-memory
    /// broker; nothing else needs to be installed. The results are Kailash's shape:
    /// {node_id: output}, with null for skipped nodes and {"error", "error_type", "failed": true}
    /// for a failed leaf.
    #[command(
        after_help = "Examples:\n  kora run examples/customer-routing/workflow.yaml\n  kora run wf.json --params '{\"fetch\": {\"limit\": 10}}' --format table\n  kora run wf.json --params params.yaml --store sqlite:runs.db"
    )]
    Run {
        /// The workflow file (JSON or YAML, any Kailash shape).
        file: PathBuf,
        /// Runtime parameters: inline JSON or a JSON/YAML file. Node-scoped entries look like
        /// {"node_id": {"param": value}}; other top-level keys are workflow-level.
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Where the run ledger lives: memory, or sqlite:PATH to keep it.
        #[arg(long, default_value = "memory", value_name = "memory|sqlite:PATH")]
        store: String,
        /// File nodes read only below this directory [default: the workflow file's directory].
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
        /// Python interpreters kept warm for PythonCodeNode.
        #[arg(long, default_value_t = 2)]
        python_workers: usize,
        /// Give up waiting after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Check a workflow and report every problem, each naming its node and field.
    #[command(
        after_help = "Examples:\n  kora validate wf.json\n  kora validate wf.yaml --params params.json --format json"
    )]
    Validate {
        file: PathBuf,
        /// Parameters the run will get (they can satisfy required inputs and redacted secrets).
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List the node types this build can run, with their parameters and outputs.
    Nodes {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    kora_runtime::telemetry::init(level, false);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run {
            file,
            params,
            format,
            store,
            data_root,
            python_workers,
            timeout,
        } => {
            let (spec, _) = input::load_workflow(&file)?;
            let params = input::load_params(params.as_deref())?;
            let root = data_root.unwrap_or_else(|| {
                file.parent()
                    .map(PathBuf::from)
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("."))
            });
            let nodes = NodesConfig {
                data_root: root,
                python_workers,
                ..NodesConfig::default()
            };
            let registry = Registry::builtin(&nodes);
            let problems = kora_model::validate(&spec, &registry, Some(&params));
            let errors: Vec<_> = problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .collect();
            if !errors.is_empty() {
                eprintln!("error: {} has {} problem(s):", file.display(), errors.len());
                for p in errors {
                    eprintln!("  - {p}");
                }
                eprintln!(
                    "(run `kora validate {}` for details, `kora nodes` for node types)",
                    file.display()
                );
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
            let engine = Engine::start(EngineConfig {
                store,
                nodes,
                ..EngineConfig::default()
            })
            .await?;
            let run = engine.run(spec, params);
            let report = match timeout {
                Some(t) => match tokio::time::timeout(Duration::from_secs_f64(t), run).await {
                    Ok(r) => r?,
                    Err(_) => {
                        eprintln!("error: the run did not finish within {t}s");
                        engine.shutdown().await;
                        return Ok(ExitCode::from(EXIT_RUN_FAILED));
                    }
                },
                None => run.await?,
            };
            engine.shutdown().await;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => {
                    println!("run {}  {}", report.run_id, report.status);
                    if let Some(e) = &report.error {
                        println!(
                            "error: {}",
                            e.get("error")
                                .and_then(|v| v.as_str())
                                .unwrap_or(&e.to_string())
                        );
                    }
                    print!("{}", output::results_table(&report.results, 100));
                }
            }
            Ok(if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUN_FAILED)
            })
        }
        Command::Validate {
            file,
            params,
            format,
        } => {
            let (spec, shape) = input::load_workflow(&file)?;
            let params = params
                .as_deref()
                .map(|p| input::load_params(Some(p)))
                .transpose()?;
            let registry = Registry::builtin(&NodesConfig::default());
            let problems = kora_model::validate(&spec, &registry, params.as_ref());
            let errors = problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .count();
            if format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "file": file.display().to_string(), "shape": shape.to_string(), "valid": errors == 0,
                        "nodes": spec.nodes.len(), "connections": spec.connections.len(), "problems": problems,
                    }))?
                );
            } else {
                for p in &problems {
                    println!("{p}");
                }
                if errors == 0 {
                    println!(
                        "ok: {} ({} format): {} nodes, {} connections, {} warning(s)",
                        file.display(),
                        shape,
                        spec.nodes.len(),
                        spec.connections.len(),
                        problems.len()
                    );
                } else {
                    println!("{} error(s) in {}", errors, file.display());
                }
            }
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_BAD_INPUT)
            })
        }
        Command::Nodes { format } => {
            let registry = Registry::builtin(&NodesConfig::default());
            let infos = registry.infos();
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&infos)?);
            } else {
                for name in registry.type_names() {
                    let Some(t) = registry.node_type(name) else {
                        continue;
                    };
                    println!("{}\n  {}", t.name, t.description);
                    for p in &t.params {
                        let req = if p.required { " (required)" } else { "" };
                        let alias = if p.aliases.is_empty() {
                            String::new()
                        } else {
                            format!(" [alias: {}]", p.aliases.join(", "))
                        };
                        println!("    in  {}{req}{alias}: {}", p.name, p.description);
                    }
                    let more = if t.open_outputs { " (and others)" } else { "" };
                    println!("    out {}{more}\n", t.outputs.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

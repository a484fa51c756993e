//! `kora`: run Kailash-style workflows, embedded in one process or on a fleet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kora_cli::embedded::{Engine, EngineConfig};
use kora_cli::{client, input, output, serve};
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
    /// Run Kora's roles as a long-lived process on NATS JetStream and PostgreSQL.
    ///
    /// Any number of processes may run any combination of roles against the same NATS
    /// server and database. Configuration is layered: built-in defaults < --config FILE (TOML)
    /// < KORA_SECTION__KEY environment variables (e.g. KORA_WORKER__CONCURRENCY=32) < flags
    /// (which also read KORA_NATS_URL, KORA_DATABASE_URL, KORA_PREFIX). SIGTERM or Ctrl-C
    /// drains (workers finish or hand back their tasks); a second signal stops at once.
    #[command(
        after_help = "Examples:\n  kora serve --role all\n  kora serve --role scheduler,coordinator --database-url postgres://127.0.0.1/kora\n  KORA_NATS_URL=nats://n1:4222,nats://n2:4222 kora serve --role worker --concurrency 32"
    )]
    Serve {
        /// Roles to run: scheduler, coordinator, worker (comma-separated), or all.
        #[arg(long, default_value = "all")]
        role: String,
        #[command(flatten)]
        conn: Conn,
        /// Worker queue to serve.
        #[arg(long)]
        queue: Option<String>,
        /// Tasks a worker runs at once.
        #[arg(long)]
        concurrency: Option<usize>,
        /// File nodes read only below this directory.
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
        /// Serve GET /metrics (Prometheus text) and /healthz on this address, e.g. 0.0.0.0:9464.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
        /// Log JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Submit a workflow run to a Kora deployment; with --wait, print its results like `kora run`.
    #[command(
        after_help = "Examples:\n  kora submit wf.json --wait\n  kora submit wf.yaml --params '{\"fetch\": {\"limit\": 10}}' --idempotency-key order-42"
    )]
    Submit {
        file: PathBuf,
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        /// Submitting again with the same key is the same run (its run id derives from the key).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Wait for the run to finish and print its results (reads the ledger: needs the database URL).
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Inspect runs in the ledger.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// A run's status, error and node results.
    Show {
        run_id: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Recent runs, newest first.
    List {
        /// Only runs in this state: running, succeeded, failed or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Where the deployment is.
#[derive(clap::Args, Clone)]
struct Conn {
    /// TOML configuration file (see `kora serve --help` for the layering).
    #[arg(long, value_name = "FILE", env = "KORA_CONFIG")]
    config: Option<PathBuf>,
    /// NATS server URL(s), comma-separated.
    #[arg(long, value_name = "URL", env = "KORA_NATS_URL")]
    nats_url: Option<String>,
    /// PostgreSQL URL of the run ledger.
    #[arg(long, value_name = "URL", env = "KORA_DATABASE_URL")]
    database_url: Option<String>,
    /// Installation prefix of subjects and streams (installations sharing a server differ here).
    #[arg(long, env = "KORA_PREFIX")]
    prefix: Option<String>,
}

impl Conn {
    fn load(&self, extra: serde_json::Value) -> anyhow::Result<serve::ServeConfig> {
        let mut flags = serde_json::json!({});
        if let Some(u) = &self.nats_url {
            flags["nats"]["url"] = u.clone().into();
        }
        if let Some(p) = &self.prefix {
            flags["nats"]["prefix"] = p.clone().into();
        }
        if let Some(u) = &self.database_url {
            flags["database"]["url"] = u.clone().into();
        }
        merge(&mut flags, extra);
        let cfg: serve::ServeConfig =
            kora_runtime::config::load(self.config.as_deref(), "KORA", std::env::vars(), flags)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            match a.get_mut(&k) {
                Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                _ => {
                    a.insert(k, v);
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let serving = matches!(cli.command, Command::Serve { .. });
    let log_json = matches!(cli.command, Command::Serve { log_json: true, .. });
    kora_runtime::telemetry::init(
        if serving && cli.verbose == 0 {
            "info"
        } else {
            level
        },
        log_json,
    );
    // A server uses every core; one-shot commands need one thread.
    let mut builder = if serving {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
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

/// Namespace of run ids derived from idempotency keys (UUIDv5).
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b6f_7261_0000_4000_8000_6964_656d_706f);

fn print_report(report: &kora_cli::embedded::RunReport, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(report)?),
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
    Ok(())
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
            print_report(&report, format)?;
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
        Command::Serve {
            role,
            conn,
            queue,
            concurrency,
            data_root,
            metrics_addr,
            log_json: _,
        } => {
            let roles = serve::parse_roles(&role)?;
            let mut extra = serde_json::json!({});
            if let Some(q) = queue {
                extra["worker"]["queue"] = q.into();
            }
            if let Some(c) = concurrency {
                extra["worker"]["concurrency"] = c.into();
            }
            if let Some(d) = data_root {
                extra["worker"]["data_root"] = d.display().to_string().into();
            }
            if let Some(a) = metrics_addr {
                extra["metrics"]["addr"] = a.into();
            }
            let cfg = conn.load(extra)?;
            let token = tokio_util::sync::CancellationToken::new();
            let second = kora_runtime::shutdown::install(token.clone());
            tokio::select! {
                r = serve::serve(cfg, &roles, token) => r.map(|()| ExitCode::SUCCESS),
                _ = second => {
                    eprintln!("second signal: stopping without draining");
                    Ok(ExitCode::from(130))
                }
            }
        }
        Command::Submit {
            file,
            params,
            idempotency_key,
            wait,
            timeout,
            format,
            conn,
        } => {
            let (spec, _) = input::load_workflow(&file)?;
            let params = input::load_params(params.as_deref())?;
            let cfg = conn.load(serde_json::json!({}))?;
            let subjects = kora_model::subjects::Subjects::new(&cfg.nats.prefix)
                .map_err(anyhow::Error::msg)?;
            let broker = serve::connect_broker(&cfg, "kora-submit").await?;
            // Store the request even if no role has started yet.
            kora_broker::topology::provision_streams(
                broker.as_ref(),
                &subjects,
                &kora_broker::topology::TopologyConfig::default(),
            )
            .await?;
            // A key always maps to the same run id, so a resubmission is deduplicated.
            let run_id = match &idempotency_key {
                Some(k) => uuid::Uuid::new_v5(&KEY_NAMESPACE, k.as_bytes()).to_string(),
                None => uuid::Uuid::now_v7().to_string(),
            };
            let ids: Vec<String> = spec.nodes.iter().map(|n| n.id.clone()).collect();
            let from = client::events_position(broker.as_ref(), &subjects).await?;
            client::submit(
                broker.as_ref(),
                &subjects,
                spec,
                params,
                idempotency_key,
                run_id.clone(),
            )
            .await?;
            if !wait {
                println!("{}", serde_json::json!({ "run_id": run_id }));
                broker.flush().await.ok();
                return Ok(ExitCode::SUCCESS);
            }
            let ending = client::wait(
                &broker,
                &subjects,
                &run_id,
                from,
                timeout.map(Duration::from_secs_f64),
            )
            .await?;
            let store = serve::connect_store(&cfg).await?;
            let report =
                kora_cli::client::RunReport::build(store.as_ref(), run_id, &ids, ending).await?;
            print_report(&report, format)?;
            Ok(match report.status.as_str() {
                "succeeded" => ExitCode::SUCCESS,
                "rejected" => ExitCode::from(EXIT_BAD_INPUT),
                _ => ExitCode::from(EXIT_RUN_FAILED),
            })
        }
        Command::Runs {
            command:
                RunsCommand::Show {
                    run_id,
                    format,
                    conn,
                },
        } => {
            let cfg = conn.load(serde_json::json!({}))?;
            let store = serve::connect_store(&cfg).await?;
            let Some(rec) = store.run(&run_id).await? else {
                eprintln!(
                    "error: no run {run_id} in the ledger at {}",
                    cfg.database.url
                );
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            };
            let ids: Vec<String> = rec
                .spec
                .as_ref()
                .map(|s| s.nodes.iter().map(|n| n.id.clone()).collect())
                .unwrap_or_default();
            let results = store.results(&run_id, &ids).await?;
            let attempts = store.attempts(&run_id).await?;
            if format == Format::Json {
                let attempts: Vec<serde_json::Value> = attempts
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "node_id": a.node_id, "iteration": a.iteration, "attempt": a.attempt,
                            "status": a.status.as_str(), "error": a.error, "error_type": a.error_type,
                            "worker_id": a.worker_id, "dispatched_ms": a.dispatched_ms,
                            "finished_ms": a.finished_ms,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "run_id": rec.run_id, "status": rec.status.as_str(), "workflow": rec.workflow_name,
                        "error": rec.error, "error_node": rec.error_node, "created_ms": rec.created_ms,
                        "finished_ms": rec.finished_ms, "results": results, "attempts": attempts,
                    }))?
                );
            } else {
                println!(
                    "run {}  {}  workflow {:?}",
                    rec.run_id,
                    rec.status.as_str(),
                    rec.workflow_name
                );
                if let Some(e) = &rec.error {
                    println!("error: {e}");
                }
                print!("{}", output::results_table(&results, 100));
                // Every attempt of the nodes that failed or were retried, with its error.
                let notable: Vec<&kora_store::AttemptRecord> = attempts
                    .iter()
                    .filter(|a| a.attempt > 1 || a.status == kora_store::AttemptStatus::Failed)
                    .collect();
                if !notable.is_empty() {
                    println!("attempts that failed or were retried:");
                    for a in notable {
                        println!(
                            "  {} (iteration {}) attempt {}: {}{}",
                            a.node_id,
                            a.iteration,
                            a.attempt,
                            a.status.as_str(),
                            a.error
                                .as_ref()
                                .map(|e| format!(" - {e}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs {
            command:
                RunsCommand::List {
                    status,
                    limit,
                    format,
                    conn,
                },
        } => {
            let cfg = conn.load(serde_json::json!({}))?;
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(kora_store::RunStatus::parse(s).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown status {s:?}: use running, succeeded, failed or rejected"
                    )
                })?),
            };
            let store = serve::connect_store(&cfg).await?;
            let runs = store.runs(&kora_store::RunFilter { status, limit }).await?;
            if format == Format::Json {
                let rows: Vec<_> = runs.iter().map(|r| serde_json::json!({"run_id": r.run_id, "status": r.status.as_str(), "workflow": r.workflow_name, "created_ms": r.created_ms, "finished_ms": r.finished_ms})).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<38}  {:<10}  WORKFLOW", "RUN", "STATUS");
                for r in &runs {
                    println!(
                        "{:<38}  {:<10}  {}",
                        r.run_id,
                        r.status.as_str(),
                        r.workflow_name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
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

//! `kora`: run Kailash-style workflows, embedded in one process or on a fleet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
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
    #[command(
        after_help = "docs/nodes.md is this list as Markdown: kora nodes --markdown > docs/nodes.md"
    )]
    Nodes {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Print the node reference as Markdown (what docs/nodes.md holds).
        #[arg(long)]
        markdown: bool,
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
        /// `high`: workers take this run's tasks before waiting `normal` ones.
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
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
    /// Triggers: messages on a NATS subject start runs of a registered workflow.
    #[command(
        after_help = "Examples:\n  kora triggers add orders --subject shop.orders --workflow order.yaml\n  nats pub shop.orders '{\"order_id\": 42}'      # starts a run; the message is its parameters\n  kora triggers list\n  kora triggers pause orders                       # messages wait...\n  kora triggers resume orders                      # ...and run now\n\nMessages published while no Kora process runs are kept and processed when one starts.\nEach message starts exactly one run, however many schedulers run."
    )]
    Triggers {
        #[command(subcommand)]
        command: TriggersCommand,
    },
    /// Dead letters: node attempts that failed for good (no retry left, or a permanent error).
    #[command(
        after_help = "Examples:\n  kora dlq list --since 1h --reason permanent_error\n  kora dlq show RUN:fetch:0:1\n  kora dlq replay RUN:fetch:0:1 --set limit=10\n  kora dlq replay --all --workflow orders\n  kora dlq purge --since 30d\n\nA replay runs the node again with the inputs it had, overridden by --set/--input-file, and\nresumes its run from there: nodes that completed keep their outputs and do not run again.\nEvery replay is recorded (who, when, which new attempt): `kora dlq list --any-state`."
    )]
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The audit log: entries AuditLogNode recorded, written to the ledger with their node's
    /// outcome (once, however often a result is delivered).
    #[command(
        after_help = "Examples:\n  kora audit --since 1h\n  kora audit --run RUN_ID --event-type data_export --format json"
    )]
    Audit {
        /// Only this run's entries.
        #[arg(long)]
        run: Option<String>,
        /// Only entries of this event_type.
        #[arg(long)]
        event_type: Option<String>,
        /// Only entries at or after this: 30m, 12h, 7d, or epoch milliseconds.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PriorityArg {
    Normal,
    High,
}

#[derive(Subcommand)]
enum TriggersCommand {
    /// Register (or replace) a trigger.
    Add {
        name: String,
        /// The NATS subject whose messages start runs (wildcards allowed).
        #[arg(long, required_unless_present = "cron", conflicts_with = "cron")]
        subject: Option<String>,
        /// Or a cron schedule: "*/5 * * * *" (minute hour day month weekday), or with a
        /// leading seconds field. One run per tick, however many schedulers run.
        #[arg(long, value_name = "SCHEDULE")]
        cron: Option<String>,
        /// The workflow to run.
        #[arg(long, value_name = "FILE")]
        workflow: PathBuf,
        /// Parameters of every run (a message's JSON object keys go over them).
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Registered triggers.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop starting runs; messages wait.
    Pause {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Start runs again, first for the messages that waited.
    Resume {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Which dead letters a dlq command acts on.
#[derive(clap::Args, Clone)]
struct DlqFilterArgs {
    /// Only this workflow (its name).
    #[arg(long)]
    workflow: Option<String>,
    /// Only this reason: permanent_error, retries_exhausted, TaskTooLarge, ...
    #[arg(long)]
    reason: Option<String>,
    /// Only those failed since: 30m, 12h, 7d, or epoch milliseconds.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only this run's.
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
}

impl DlqFilterArgs {
    fn filter(&self) -> anyhow::Result<kora_store::DeadLetterFilter> {
        Ok(kora_store::DeadLetterFilter {
            workflow: self.workflow.clone(),
            reason: self.reason.clone(),
            since_ms: self
                .since
                .as_deref()
                .map(|s| kora_cli::control::parse_since(s, kora_model::now_ms()))
                .transpose()?,
            run_id: self.run.clone(),
            ..Default::default()
        })
    }
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Open dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Include replayed and purged ones (with who replayed them, and when).
        #[arg(long)]
        any_state: bool,
        /// List messages a role could not use (undecodable, unknown run or node) instead.
        #[arg(long)]
        poison: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// One dead letter: its inputs, error, and every attempt of its node.
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a dead-lettered node again (with changed inputs) and resume its run from there.
    Replay {
        /// The dead letter to replay; or use --all with filters.
        id: Option<String>,
        /// Replay every open dead letter the filters select.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Override an input of the replayed node: key=value (JSON, or else a string).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Override inputs from a JSON object in a file.
        #[arg(long, value_name = "FILE")]
        input_file: Option<PathBuf>,
        /// How long to wait for the coordinator to apply each replay (the request is kept and
        /// applied later if none answers in time): 15s, 2m, ...
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        conn: Conn,
    },
    /// Close dead letters without replaying them (their attempts stay in the ledger).
    Purge {
        /// The dead letter to purge; or use --all with filters.
        id: Option<String>,
        #[arg(long)]
        all: bool,
        /// Remove this poison message (its sequence in `kora dlq list --poison`).
        #[arg(long, value_name = "SEQ")]
        poison: Option<u64>,
        #[command(flatten)]
        filter: DlqFilterArgs,
        #[command(flatten)]
        conn: Conn,
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
    /// Resume a failed run from where it failed: its dead-lettered nodes run again (as they
    /// were; use `kora dlq replay --set` to change their inputs), completed nodes are kept.
    /// With --from NODE, restart a run that ended (failed, succeeded or cancelled) from that
    /// node: it and every node downstream of it run again; the others keep their outputs.
    #[command(
        after_help = "Examples:\n  kora runs retry RUN_ID\n  kora runs retry RUN_ID --from enrich\n  kora runs retry RUN_ID --from enrich --set limit=10\n\nThe old attempts stay in the ledger (`kora runs show`), superseded by the new ones; who\nrestarted the run and when is recorded on the node's previous attempt."
    )]
    Retry {
        run_id: String,
        /// Restart from this node (and re-run everything downstream of it).
        #[arg(long, value_name = "NODE")]
        from: Option<String>,
        /// With --from: override an input of that node, key=value (JSON, or else a string).
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "from")]
        sets: Vec<String>,
        /// With --from: override its inputs from a JSON object in a file.
        #[arg(long, value_name = "FILE", requires = "from")]
        input_file: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a running run: nothing more is dispatched, its running tasks are stopped, their
    /// late results are ignored, and the run is recorded `cancelled` (with who asked).
    Cancel {
        run_id: String,
        /// How long to wait for the coordinator to record it.
        #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
        timeout: f64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Recent runs, newest first.
    List {
        /// Only runs in this state: queued, running, succeeded, failed, cancelled or rejected.
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
    // Crash tests name failpoints in FAILPOINTS; only builds with the feature have any.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
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
        Command::Dlq { command } => dlq(command).await,
        Command::Audit {
            run,
            event_type,
            since,
            limit,
            format,
            conn,
        } => {
            let cfg = conn.load(serde_json::json!({}))?;
            let store = serve::connect_store(&cfg).await?;
            let since_ms = since
                .as_deref()
                .map(|s| kora_cli::control::parse_since(s, kora_model::now_ms()))
                .transpose()?;
            let entries = store
                .audit_log(&kora_store::AuditFilter {
                    run_id: run,
                    event_type,
                    since_ms,
                    limit,
                })
                .await?;
            if format == Format::Json {
                let rows: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|a| {
                        serde_json::json!({"run_id": a.run_id, "node_id": a.node_id, "attempt": a.attempt,
                            "at_ms": a.at_ms, "entry": a.entry})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for a in &entries {
                    let e = &a.entry;
                    println!(
                        "{}  {}  {}  {}  {}  run {} node {}",
                        ms_text(Some(a.at_ms)),
                        e["log_level"].as_str().unwrap_or("info"),
                        e["event_type"].as_str().unwrap_or_default(),
                        e["user_id"].as_str().unwrap_or("-"),
                        e["message"].as_str().unwrap_or_default(),
                        a.run_id,
                        a.node_id
                    );
                }
                println!(
                    "{} entr{}",
                    entries.len(),
                    if entries.len() == 1 { "y" } else { "ies" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Triggers { command } => triggers(command).await,
        Command::Runs {
            command:
                RunsCommand::Retry {
                    run_id,
                    from,
                    sets,
                    input_file,
                    conn,
                },
        } => {
            let control =
                kora_cli::control::Control::connect(&conn.load(serde_json::json!({}))?).await?;
            if let Some(node) = from {
                let inputs = kora_cli::control::overrides(&sets, input_file.as_deref())?;
                let out = control
                    .restart_from(&run_id, &node, inputs, &kora_cli::control::actor())
                    .await?;
                println!(
                    "run {} restarts from {} (attempt {}); the nodes downstream of it run again",
                    out.run_id, out.node_id, out.attempt
                );
                return Ok(ExitCode::SUCCESS);
            }
            for out in control
                .retry_run(&run_id, &kora_cli::control::actor())
                .await?
            {
                println!(
                    "run {} resumes with {} attempt {}",
                    out.run_id, out.node_id, out.attempt
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs {
            command:
                RunsCommand::Cancel {
                    run_id,
                    timeout,
                    conn,
                },
        } => {
            let control =
                kora_cli::control::Control::connect(&conn.load(serde_json::json!({}))?).await?;
            let status = control
                .cancel(
                    &run_id,
                    &kora_cli::control::actor(),
                    Duration::from_secs_f64(timeout.max(0.0)),
                )
                .await?;
            match status {
                kora_store::RunStatus::Cancelled => {
                    println!("run {run_id} cancelled");
                    Ok(ExitCode::SUCCESS)
                }
                kora_store::RunStatus::Running | kora_store::RunStatus::Queued => {
                    eprintln!(
                        "error: run {run_id} is not cancelled yet after {timeout}s: is a coordinator running? The request is kept and applies when one starts."
                    );
                    Ok(ExitCode::from(1))
                }
                other => {
                    println!("run {run_id} had already ended: {}", other.as_str());
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
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
            priority,
            wait,
            timeout,
            format,
            conn,
        } => {
            let (mut spec, _) = input::load_workflow(&file)?;
            if let Some(p) = priority {
                spec.priority = match p {
                    PriorityArg::Normal => kora_model::Priority::Normal,
                    PriorityArg::High => kora_model::Priority::High,
                };
            }
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
            // A keyed submission gets its own run id too: the coordinator decides whether the
            // key names a run inside the idempotency window (then this id becomes an alias of
            // that run, and we report that run) or not.
            let run_id = uuid::Uuid::now_v7().to_string();
            let keyed = idempotency_key.is_some();
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
                if !keyed {
                    println!("{}", serde_json::json!({ "run_id": run_id }));
                    broker.flush().await.ok();
                    return Ok(ExitCode::SUCCESS);
                }
                let limit = Duration::from_secs_f64(timeout.unwrap_or(30.0).max(0.0));
                match client::admission(&broker, &subjects, &run_id, from, limit).await? {
                    Some(e) => match client::follow(&e) {
                        Some(existing) => println!(
                            "{}",
                            serde_json::json!({ "run_id": existing, "deduplicated": true })
                        ),
                        None => println!("{}", serde_json::json!({ "run_id": run_id })),
                    },
                    None => {
                        eprintln!(
                            "warning: no coordinator took the submission in within {}s; it is stored and is taken in when one runs (if its key names a recent run, that run stands for it)",
                            limit.as_secs_f64()
                        );
                        println!("{}", serde_json::json!({ "run_id": run_id }));
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let limit = timeout.map(Duration::from_secs_f64);
            let mut ending = client::wait(&broker, &subjects, &run_id, from, limit).await?;
            let store = serve::connect_store(&cfg).await?;
            let mut run_id = run_id;
            if let Some(existing) = client::follow(&ending) {
                eprintln!(
                    "note: the idempotency key names run {existing}, submitted within the idempotency window: reporting that run"
                );
                let rec = store
                    .run(&existing)
                    .await?
                    .with_context(|| format!("run {existing} is not in the ledger"))?;
                ending = if rec.status.is_final() {
                    kora_cli::client::RunReport::ending_of(&rec)
                } else {
                    client::wait(&broker, &subjects, &existing, from, limit).await?
                };
                run_id = existing;
            }
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
            // A submission deduplicated by its idempotency key stands for an earlier run.
            let run_id = match store.alias_of(&run_id).await? {
                Some(real) => {
                    eprintln!(
                        "note: {run_id} was deduplicated by its idempotency key onto run {real}"
                    );
                    real
                }
                None => run_id,
            };
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
            // What happened to the run as a whole: queued, started, cancelled, restarted (who).
            let history: Vec<serde_json::Value> = store
                .events(&run_id)
                .await?
                .into_iter()
                .filter(|e| {
                    use kora_model::wire::EventKind as K;
                    matches!(
                        e.kind,
                        K::RunQueued | K::RunStarted | K::RunCancelled | K::RunRestarted
                    )
                })
                .map(|e| {
                    serde_json::json!({
                        "event": e.kind.as_str(), "at_ms": e.at_ms, "node_id": e.node_id,
                        "detail": e.detail,
                    })
                })
                .collect();
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
                        "history": history,
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
                for h in &history {
                    let by = h["detail"]["by"].as_str().map(|b| format!(" by {b}"));
                    let node = h["node_id"].as_str().map(|n| format!(" from {n}"));
                    println!(
                        "{} at {}{}{}",
                        h["event"].as_str().unwrap_or_default(),
                        ms_text(h["at_ms"].as_u64()),
                        node.unwrap_or_default(),
                        by.unwrap_or_default()
                    );
                }
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
                        "unknown status {s:?}: use queued, running, succeeded, failed, cancelled or rejected"
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
                        if r.workflow_name.is_empty() {
                            &r.workflow_id
                        } else {
                            &r.workflow_name
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Nodes { format, markdown } => {
            let registry = Registry::builtin(&NodesConfig::default());
            let infos = registry.infos();
            if markdown {
                print!("{}", kora_nodes::docs::markdown(&registry));
            } else if format == Format::Json {
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
                        let default = p
                            .default
                            .map(|d| format!(", default {d}"))
                            .unwrap_or_default();
                        println!(
                            "    in  {}{req}{alias} ({}{default}): {}",
                            p.name,
                            p.kind.describe(),
                            p.description
                        );
                    }
                    let more = if t.open_outputs { " (and others)" } else { "" };
                    println!("    out {}{more}\n", t.outputs.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ms_text(ms: Option<u64>) -> String {
    ms.and_then(|m| chrono::DateTime::from_timestamp_millis(i64::try_from(m).ok()?))
        .map_or_else(
            || "-".into(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

fn dead_letter_json(d: &kora_store::DeadLetterRecord) -> serde_json::Value {
    let a = &d.attempt;
    let info = a.dead_letter.as_ref();
    serde_json::json!({
        "id": d.id, "workflow": d.workflow_name, "run_id": a.run_id, "run_status": d.run_status.as_str(),
        "node_id": a.node_id, "node_type": a.node_type, "iteration": a.iteration, "attempt": a.attempt,
        "reason": info.map(|i| i.reason.clone()), "state": info.map(|i| i.state.clone()),
        "error": a.error, "error_type": a.error_type, "failed_ms": a.finished_ms,
        "inputs": info.and_then(|i| i.inputs.clone()),
        "replayed_ms": info.and_then(|i| i.replayed_ms), "replayed_by": info.and_then(|i| i.replayed_by.clone()),
        "replay_attempt": info.and_then(|i| i.replay_attempt),
    })
}

async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    use kora_cli::control::{Control, actor, overrides};
    match command {
        DlqCommand::List {
            filter,
            any_state,
            poison,
            limit,
            format,
            conn,
        } => {
            let control = Control::connect(&conn.load(serde_json::json!({}))?).await?;
            if poison {
                let list = control.poison(limit).await?;
                if format == Format::Json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if list.is_empty() {
                    println!("no poison messages");
                } else {
                    for m in &list {
                        println!(
                            "{}  {}  {}  {}  {} bytes  {}",
                            m.sequence,
                            ms_text(Some(m.received_ms)),
                            m.source,
                            m.original_subject,
                            m.bytes,
                            m.reason
                        );
                    }
                    eprintln!(
                        "{} poison message(s); `kora dlq purge --poison SEQ` removes one",
                        list.len()
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut f = filter.filter()?;
            f.any_state = any_state;
            f.limit = limit;
            let list = control.dead_letters(&f).await?;
            if format == Format::Json {
                let rows: Vec<_> = list.iter().map(dead_letter_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if list.is_empty() {
                println!("no dead letters match");
            } else {
                for d in &list {
                    let info = d.attempt.dead_letter.as_ref();
                    let state = info.map_or("", |i| i.state.as_str());
                    let replayed = info
                        .and_then(|i| i.replayed_by.as_ref().map(|b| (b, i.replayed_ms)))
                        .map(|(b, at)| format!("  replayed by {b} at {}", ms_text(at)))
                        .unwrap_or_default();
                    println!(
                        "{}  {}  {}  {}  {}  {}{replayed}",
                        d.id,
                        ms_text(d.attempt.finished_ms),
                        if d.workflow_name.is_empty() {
                            "-"
                        } else {
                            &d.workflow_name
                        },
                        info.map_or("", |i| i.reason.as_str()),
                        state,
                        d.attempt
                            .error
                            .as_deref()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                    );
                }
                eprintln!("{} dead letter(s)", list.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, format, conn } => {
            let control = Control::connect(&conn.load(serde_json::json!({}))?).await?;
            let Some((d, attempts)) = control.dead_letter(&id).await? else {
                eprintln!("error: no dead letter {id} (`kora dlq list --any-state` lists them)");
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            };
            let tries: Vec<serde_json::Value> = attempts
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "attempt": a.attempt, "status": a.status.as_str(), "error": a.error,
                        "error_type": a.error_type, "worker_id": a.worker_id,
                        "dispatched_ms": a.dispatched_ms, "finished_ms": a.finished_ms,
                        "overrides": a.overrides,
                    })
                })
                .collect();
            let mut v = dead_letter_json(&d);
            v["attempts"] = serde_json::Value::Array(tries);
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("dead letter {}", d.id);
                println!(
                    "  workflow {:?}, run {} ({})",
                    d.workflow_name,
                    d.attempt.run_id,
                    d.run_status.as_str()
                );
                println!(
                    "  node {} ({}), iteration {}, attempt {}",
                    d.attempt.node_id, d.attempt.node_type, d.attempt.iteration, d.attempt.attempt
                );
                println!(
                    "  reason {}, state {}",
                    v["reason"].as_str().unwrap_or(""),
                    v["state"].as_str().unwrap_or("")
                );
                println!(
                    "  error ({}) {}",
                    d.attempt.error_type.as_deref().unwrap_or("?"),
                    d.attempt.error.as_deref().unwrap_or("")
                );
                println!("  inputs {}", serde_json::to_string(&v["inputs"])?);
                if let Some(by) = v["replayed_by"].as_str() {
                    println!(
                        "  replayed by {by} at {} as attempt {}",
                        ms_text(v["replayed_ms"].as_u64()),
                        v["replay_attempt"]
                    );
                }
                println!("  attempts of this node:");
                for a in &attempts {
                    println!(
                        "    {}  {}  {}{}{}",
                        a.attempt,
                        a.status.as_str(),
                        ms_text(a.finished_ms.or(Some(a.dispatched_ms))),
                        a.error
                            .as_ref()
                            .map(|e| format!("  {e}"))
                            .unwrap_or_default(),
                        a.overrides
                            .as_ref()
                            .map(|o| format!(
                                "  overrides {}",
                                serde_json::Value::Object(o.clone())
                            ))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            id,
            all,
            filter,
            sets,
            input_file,
            timeout,
            conn,
        } => {
            let control = Control::connect(&conn.load(serde_json::json!({}))?)
                .await?
                .with_wait(timeout);
            let inputs = overrides(&sets, input_file.as_deref())?;
            let who = actor();
            let ids: Vec<String> = match (id, all) {
                (Some(id), false) => vec![id],
                (None, true) => control
                    .dead_letters(&filter.filter()?)
                    .await?
                    .into_iter()
                    .map(|d| d.id)
                    .collect(),
                _ => anyhow::bail!("name one dead letter ID, or use --all with filters (not both)"),
            };
            let total = ids.len();
            let mut failed = 0;
            for (i, id) in ids.iter().enumerate() {
                match control.replay(id, inputs.clone(), &who).await {
                    Ok(out) => {
                        println!(
                            "replayed {id}: run {} resumes with {} attempt {}{}",
                            out.run_id,
                            out.node_id,
                            out.attempt,
                            if out.redispatched.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " (and {} in-flight node(s) sent again)",
                                    out.redispatched.len()
                                )
                            }
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {e:#}");
                    }
                }
                if total > 1 {
                    let width = 30;
                    let done = (i + 1) * width / total;
                    eprintln!(
                        "[{}{}] {}/{total}",
                        "#".repeat(done),
                        "-".repeat(width - done),
                        i + 1
                    );
                }
            }
            if total == 0 {
                println!("no dead letters match");
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DlqCommand::Purge {
            id,
            all,
            poison,
            filter,
            conn,
        } => {
            let control = Control::connect(&conn.load(serde_json::json!({}))?).await?;
            if let Some(seq) = poison {
                if control.purge_poison(seq).await? {
                    println!("removed poison message {seq}");
                    return Ok(ExitCode::SUCCESS);
                }
                eprintln!("error: no poison message {seq} (`kora dlq list --poison`)");
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
            let mut f = filter.filter()?;
            match (id, all) {
                (Some(id), false) => {
                    let key = kora_store::parse_dead_letter_id(&id)
                        .with_context(|| format!("{id:?} is not a dead-letter id"))?;
                    f.run_id = Some(key.run_id);
                    f.id = Some(id.clone());
                    let purged = control.purge(&f, &actor()).await?;
                    anyhow::ensure!(
                        purged == 1,
                        "no open dead letter {id} (`kora dlq list --any-state --run RUN`)"
                    );
                    println!("purged {id}");
                }
                (None, true) => {
                    let purged = control.purge(&f, &actor()).await?;
                    println!("purged {purged} dead letter(s)");
                }
                _ => anyhow::bail!("name one dead letter ID, or use --all with filters (not both)"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn triggers(command: TriggersCommand) -> anyhow::Result<ExitCode> {
    use kora_cli::control::Control;
    match command {
        TriggersCommand::Add {
            name,
            subject,
            cron,
            workflow,
            params,
            conn,
        } => {
            let source = match (subject, cron) {
                (Some(s), None) => kora_cli::control::TriggerSource::Subject(s),
                (None, Some(c)) => kora_cli::control::TriggerSource::Cron(c),
                _ => anyhow::bail!("give --subject or --cron"),
            };
            let what = match &source {
                kora_cli::control::TriggerSource::Subject(s) => format!("messages on {s}"),
                kora_cli::control::TriggerSource::Cron(c) => format!("ticks of {c:?}"),
            };
            let (spec, _) = input::load_workflow(&workflow)?;
            let registry = Registry::builtin(&NodesConfig::default());
            let problems: Vec<String> = kora_model::validate(&spec, &registry, None)
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .map(ToString::to_string)
                .collect();
            if !problems.is_empty() {
                eprintln!("error: {} is not a usable workflow:", workflow.display());
                for p in problems {
                    eprintln!("  - {p}");
                }
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
            let params = input::load_params(params.as_deref())?;
            let control = Control::connect(&conn.load(serde_json::json!({}))?).await?;
            control.add_trigger(&name, source, spec, params).await?;
            println!(
                "trigger {name}: {what} start runs of {}",
                workflow.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::List { format, conn } => {
            let control = Control::connect(&conn.load(serde_json::json!({}))?).await?;
            let list = control.triggers().await?;
            if format == Format::Json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name, "subject": t.subject, "schedule": t.schedule, "workflow": t.spec.name,
                            "paused": t.paused, "params": t.params,
                            "created_ms": t.created_ms, "updated_ms": t.updated_ms,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if list.is_empty() {
                println!("no triggers (`kora triggers add --help`)");
            } else {
                for t in &list {
                    println!(
                        "{}  {}  {}  {}",
                        t.name,
                        t.schedule
                            .as_ref()
                            .map_or_else(|| t.subject.clone(), |c| format!("cron {c:?}")),
                        if t.spec.name.is_empty() {
                            "-"
                        } else {
                            &t.spec.name
                        },
                        if t.paused { "paused" } else { "active" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::Pause { name, conn } => {
            let control = Control::connect(&conn.load(serde_json::json!({}))?).await?;
            control.set_trigger_paused(&name, true).await?;
            println!("trigger {name} paused: its messages wait until it is resumed");
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::Resume { name, conn } => {
            let control = Control::connect(&conn.load(serde_json::json!({}))?).await?;
            control.set_trigger_paused(&name, false).await?;
            println!("trigger {name} resumed");
            Ok(ExitCode::SUCCESS)
        }
    }
}
